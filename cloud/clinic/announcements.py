"""City announcements on the clinics' call-number displays (disaster information, a
closure): to every clinic site or to chosen ones, until they expire or ops clear them.

Sending, clearing and expiry each republish the affected sites (the announcement rides in
each display's content, with its ``expires_at``, so a display also clears it by itself on
time even while its site is offline). Expiry is noticed by :meth:`AnnouncementService.
expire_due`, run every few seconds by :class:`cloud.clinic.jobs.ClinicJobs`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.clinic.models import Announcement, Clinic
from cloud.clinic.publish import ClinicChanged
from cloud.core.bus import ChangeBus
from cloud.errors import ConflictError, InvalidRequestError, NotFoundError
from protocol.clock import Clock
from protocol.messages import DisplayAnnouncement, DisplayAnnouncementLevel, DisplayContent

log = logging.getLogger(__name__)

MAX_EXPIRES_AT = 2**32 - 1


@dataclass(frozen=True, slots=True)
class AnnouncementView:
    id: int
    text: str
    level: DisplayAnnouncementLevel
    expires_at: int
    sites: tuple[str, ...] | None  # None: every clinic site
    created_by: str
    created_at: int
    ended_at: int | None


def _view(a: Announcement) -> AnnouncementView:
    return AnnouncementView(
        a.id,
        a.text,
        a.level,
        a.expires_at,
        None if a.sites is None else tuple(a.sites),
        a.created_by,
        a.created_at,
        a.ended_at,
    )


def _check_text(text: str, level: DisplayAnnouncementLevel, expires_at: int) -> None:
    try:  # the display's own limits: UTF-8 bytes, printable characters
        DisplayContent(
            display_id="check",
            announcement=DisplayAnnouncement(text=text, level=level, expires_at=expires_at),
        )
    except ValidationError as exc:
        reason = "; ".join(str(e["msg"]) for e in exc.errors(include_input=False))
        raise InvalidRequestError(f"the display cannot show this text: {reason}") from None


class AnnouncementService:
    """Send, list, clear and expire announcements."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock, bus: ChangeBus) -> None:
        self._sessions = sessions
        self._clock = clock
        self._bus = bus

    def send(
        self,
        text: str,
        level: DisplayAnnouncementLevel,
        expires_at: int,
        sites: Sequence[str] | None,
        actor: str,
    ) -> AnnouncementView:
        """Show ``text`` on the displays of ``sites`` (None: every clinic) until
        ``expires_at`` (epoch seconds)."""
        now = int(self._clock.now())
        text = text.strip()
        if not text:
            raise InvalidRequestError("the announcement text is empty")
        if not now < expires_at <= MAX_EXPIRES_AT:
            raise InvalidRequestError("expires_at must be in the future (epoch seconds)")
        _check_text(text, level, expires_at)
        if sites is not None and not sites:
            raise InvalidRequestError("name at least one site, or leave sites out for every clinic")
        with self._sessions.begin() as session:
            targets = self._targets(session, sites)
            row = Announcement(
                text=text,
                level=level,
                expires_at=expires_at,
                sites=None if sites is None else sorted(set(sites)),
                created_by=actor[:100],
                created_at=now,
            )
            session.add(row)
            session.flush()
            view = _view(row)
        log.info(
            "announcement %d (%s) to %d sites by %s", view.id, level.value, len(targets), actor
        )
        self._tell(targets)
        return view

    def active(self) -> list[AnnouncementView]:
        """Announcements showing now, newest first."""
        now = int(self._clock.now())
        with self._sessions() as session:
            rows = session.scalars(
                select(Announcement)
                .where(Announcement.ended_at.is_(None), Announcement.expires_at > now)
                .order_by(Announcement.id.desc())
            ).all()
            return [_view(a) for a in rows]

    def clear(self, announcement_id: int, actor: str) -> AnnouncementView:
        """Take an announcement off the displays now."""
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            row = session.get(Announcement, announcement_id, with_for_update=True)
            if row is None:
                raise NotFoundError(f"no announcement {announcement_id}")
            if row.ended_at is not None or row.expires_at <= now:
                raise ConflictError(f"announcement {announcement_id} is no longer showing")
            row.ended_at = now
            targets = self._targets(session, row.sites)
            view = _view(row)
        log.info("announcement %d cleared by %s", announcement_id, actor)
        self._tell(targets)
        return view

    def expire_due(self, now: float) -> int:
        """End the announcements whose time is up and republish their sites; returns how
        many ended."""
        with self._sessions.begin() as session:
            due = session.scalars(
                select(Announcement)
                .where(Announcement.ended_at.is_(None), Announcement.expires_at <= now)
                .with_for_update(skip_locked=True)
            ).all()
            targets: set[tuple[str, str]] = set()
            for row in due:
                row.ended_at = int(now)
                targets |= set(self._targets(session, row.sites, strict=False))
        for row in due:
            log.info("announcement %d expired", row.id)
        self._tell(sorted(targets))
        return len(due)

    @staticmethod
    def _targets(
        session: Session, sites: Sequence[str] | None, *, strict: bool = True
    ) -> list[tuple[str, str]]:
        query = select(Clinic.site, Clinic.gateway).order_by(Clinic.site)
        if sites is not None:
            query = query.where(Clinic.site.in_(list(sites)))
        found = [(site, gateway) for site, gateway in session.execute(query)]
        missing = sorted(set(sites or ()) - {site for site, _ in found})
        if strict and missing:
            raise NotFoundError(f"no clinic at {', '.join(missing)}")
        return found

    def _tell(self, targets: Sequence[tuple[str, str]]) -> None:
        for site, gateway in targets:
            self._bus.publish(ClinicChanged(site, gateway))
