"""A citizen confirms a booking as a citizen does: reads the confirmation mail in the
mailbox (the SMTP server's inbox, or, without SMTP, the outbox row as it would be sent)
and follows its link: opens the page, presses the button."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from typing import TYPE_CHECKING

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.models import MailMessage
from cloud.gym.models import Reservation
from cloud.gym.views import ReservationView
from cloud.services import Services
from tests.support.smtp import Inbox

if TYPE_CHECKING:
    from cloud.gym.confirmations import Confirmed

CONFIRM_LINK = re.compile(r"https?://[^\s/]+(?P<path>/r/(?P<id>[^/\s?]+)/confirm)\?t=(?P<t>\S+)")


@dataclass(frozen=True)
class ConfirmLink:
    """The link of one confirmation mail."""

    path: str
    reservation_id: str
    token: str

    @property
    def url(self) -> str:
        return f"{self.path}?t={self.token}"


def _links(bodies: list[str], reservation_id: str | None) -> list[ConfirmLink]:
    found = [
        ConfirmLink(m["path"], m["id"], m["t"])
        for body in bodies
        if (m := CONFIRM_LINK.search(body)) is not None
    ]
    return [link for link in found if reservation_id in (None, link.reservation_id)]


def link_in_outbox(
    sessions: sessionmaker[Session], email: str, reservation_id: str | None = None
) -> ConfirmLink:
    """The newest confirmation link mailed to ``email`` (for ``reservation_id``), from the
    outbox as the recipient gets it."""
    with sessions() as session:
        bodies = session.scalars(
            select(MailMessage.body).where(MailMessage.to == email).order_by(MailMessage.id.desc())
        ).all()
    links = _links(list(bodies), reservation_id)
    assert links, f"no confirmation mail to {email} in the outbox"
    return links[0]


def link_in_inbox(inbox: Inbox, email: str, reservation_id: str | None = None) -> ConfirmLink:
    """The newest confirmation link the SMTP server accepted for ``email``."""
    mails: list[Message] = [m for m in inbox.messages if m["To"] == email]
    bodies = [str(m.get_payload(decode=True), "utf-8") for m in reversed(mails)]
    links = _links(bodies, reservation_id)
    assert links, f"no confirmation mail to {email} reached the SMTP server"
    return links[0]


async def follow(http: httpx.AsyncClient, link: ConfirmLink) -> httpx.Response:
    """Open the link's page and press its button; the page that answers."""
    page = await http.get(link.url)
    assert page.status_code == 200, page.text
    assert 'data-testid="confirm-submit"' in page.text, "the page offers no confirm button"
    return await press(http, link)


async def press(http: httpx.AsyncClient, link: ConfirmLink) -> httpx.Response:
    """Press the link page's button (as from a page opened earlier)."""
    return await http.post(link.path, data={"t": link.token})


async def confirm_by_mail(
    http: httpx.AsyncClient,
    sessions: sessionmaker[Session],
    email: str,
    reservation_id: str | None = None,
) -> httpx.Response:
    """Find the confirmation mail to ``email`` in the outbox and follow its link."""
    answer = await follow(http, link_in_outbox(sessions, email, reservation_id))
    assert answer.status_code == 200, answer.text
    return answer


def confirm_in_service(
    svc: Services,
    sessions: sessionmaker[Session],
    email: str,
    reservation_id: str | None = None,
) -> Confirmed:
    """What the link's button does, for tests of the services without HTTP."""
    link = link_in_outbox(sessions, email, reservation_id)
    return svc.confirmations.confirm(link.reservation_id, link.token)


def citizen_view(
    svc: Services, sessions: sessionmaker[Session], reservation_id: str
) -> ReservationView:
    """The booking as its status link shows it to the citizen, PIN included (the link's
    token is the one the booking's answer gave; read here from the booking itself)."""
    with sessions() as session:
        token = session.scalars(
            select(Reservation.access_token).where(Reservation.id == reservation_id)
        ).one()
    return svc.reservations.for_citizen(reservation_id, token)
