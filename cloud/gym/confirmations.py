"""A booking is confirmed from the mailbox it names before it counts: anyone may type a
registered club's address, only the club reads its mail.

A new booking is ``unconfirmed``: it holds its slot, has no PIN and reaches no lock. Its
mail carries a link signed with the cloud's secret key that names the booking and an
expiry (``booking_confirm_ttl_s``, 30 minutes by default). Opening it and pressing
"confirm" moves the booking on: approved at once when an auto-approval rule holds (a
registered group's address, off-peak hours), with its PIN mailed; else pending, for a
manager. The link is single-use: once the booking left ``unconfirmed`` it changes nothing.
A periodic pass (:meth:`ConfirmationService.expire_due`) cancels the unconfirmed bookings
whose link expired, which frees their slots; until it runs, an expired one no longer
holds its slot (``booking_common.holds_room``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.bus import ChangeBus
from cloud.errors import ConflictError, NotFoundError
from cloud.gym import notices
from cloud.gym.access import AccessChanged
from cloud.gym.approvals import approve_in
from cloud.gym.booking_common import FACILITY_RULES, LOAD, reservation_view, rules_of, status_url
from cloud.gym.models import Facility, RegisteredGroup, Reservation, ReservationStatus
from cloud.gym.payments import PaymentProvider
from cloud.gym.rules import is_off_peak
from cloud.gym.views import ReservationView
from cloud.localtime import format_local
from cloud.settings import CloudSettings
from protocol.clock import Clock

log = logging.getLogger(__name__)

EXPIRED_BY = "rule:unconfirmed"


def _mac(secret_key: str, reservation_id: str, until: int) -> str:
    key = hmac.new(secret_key.encode(), b"denen-booking-confirm-v1", hashlib.sha256).digest()
    return hmac.new(key, f"{reservation_id}:{until}".encode(), hashlib.sha256).hexdigest()[:32]


def confirm_token(secret_key: str, reservation_id: str, until: int) -> str:
    """``<until>.<mac>``: the booking and the link's expiry, signed."""
    return f"{until}.{_mac(secret_key, reservation_id, until)}"


def confirm_url(settings: CloudSettings, reservation_id: str, until: int) -> str:
    """The absolute link of a booking's confirmation page."""
    token = confirm_token(settings.secret_key, reservation_id, until)
    return f"{settings.public_url.rstrip('/')}/r/{reservation_id}/confirm?t={token}"


def auto_rule(session: Session, facility: Facility, r: Reservation, off_peak: bool) -> str | None:
    """The auto-approval rule that holds for ``r`` (``decided_by``), or None."""
    group = session.scalars(
        select(RegisteredGroup).where(
            RegisteredGroup.facility_id == facility.id,
            RegisteredGroup.email == r.email.lower(),
        )
    ).first()
    if group is not None:
        return f"rule:registered-group:{group.name}"[:100]
    return "rule:off-peak" if off_peak else None


@dataclass(frozen=True, slots=True)
class Confirmed:
    """The booking after its link was used; ``already``: an earlier use confirmed it."""

    reservation: ReservationView
    already: bool = False


NO_MATCH = "no booking matches this link; use the link from our mail"


class ConfirmationService:
    """Confirm bookings by their mailed link; lapse the ones nobody confirmed."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        settings: CloudSettings,
        bus: ChangeBus,
        providers: Mapping[str, PaymentProvider],
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._settings = settings
        self._bus = bus
        self._providers = providers

    def check(self, reservation_id: str, token: str) -> ReservationView:
        """The booking behind a confirmation link (signature checked, nothing changed)."""
        self._until(reservation_id, token)
        with self._sessions() as session:
            r = session.get(Reservation, reservation_id, options=LOAD)
            if r is None:
                raise NotFoundError(NO_MATCH)
            return reservation_view(r, self._providers)

    def confirm(self, reservation_id: str, token: str) -> Confirmed:
        """Confirm an unconfirmed booking: approved (PIN mailed, locks told) when an
        auto-approval rule holds, else pending."""
        until = self._until(reservation_id, token)
        now, zone = int(self._clock.now()), self._settings.zone
        with self._sessions.begin() as session:
            r = session.get(Reservation, reservation_id, options=LOAD, with_for_update=True)
            if r is None:
                raise NotFoundError(NO_MATCH)
            if r.status in (ReservationStatus.PENDING, ReservationStatus.APPROVED):
                return Confirmed(reservation_view(r, self._providers), already=True)
            if r.status is not ReservationStatus.UNCONFIRMED or now >= until:
                raise ConflictError(
                    f"this link expired at {format_local(until, zone)} ({self._settings.timezone})"
                    " and the booking was not confirmed; please book again"
                )
            facility = session.get(Facility, r.facility_id, options=FACILITY_RULES)
            assert facility is not None
            r.confirm_until = None
            url = status_url(self._settings, r.id, r.access_token)
            payment = self._providers[r.payment_method].instructions(r.fee_yen, facility.name)
            off_peak = is_off_peak(rules_of(facility), r.starts_at, r.ends_at, zone)
            rule = auto_rule(session, facility, r, off_peak)
            if rule is None:
                r.status = ReservationStatus.PENDING
                notices.booking_received(
                    session, r, self._settings, status_url=url, payment=payment, now=now
                )
            else:
                approve_in(session, r, rule, self._settings, now, status_url=url, payment=payment)
            view = reservation_view(r, self._providers)
            site, gateway = facility.site, facility.gateway
        if rule is not None:
            self._bus.publish(AccessChanged(site, gateway))
        return Confirmed(view)

    def expire_due(self, now: float | None = None) -> int:
        """Cancel every unconfirmed booking whose link expired (its slot is free again);
        how many."""
        at = int(self._clock.now() if now is None else now)
        minutes = self._settings.booking_confirm_ttl_s // 60
        with self._sessions.begin() as session:
            lapsed = session.scalars(
                select(Reservation)
                .where(
                    Reservation.status == ReservationStatus.UNCONFIRMED,
                    Reservation.confirm_until <= at,
                )
                .with_for_update()
            ).all()
            for r in lapsed:
                r.status = ReservationStatus.CANCELLED
                r.cancelled_by, r.cancelled_at = EXPIRED_BY, at
                r.cancel_reason = f"not confirmed from its mail within {minutes} minutes"
        if lapsed:
            log.info("%d unconfirmed bookings lapsed", len(lapsed))
        return len(lapsed)

    def _until(self, reservation_id: str, token: str) -> int:
        until, _, mac = token.partition(".")
        if not until.isdigit() or len(until) > 12:
            raise NotFoundError(NO_MATCH)
        expected = _mac(self._settings.secret_key, reservation_id, int(until))
        if not hmac.compare_digest(mac, expected):
            raise NotFoundError(NO_MATCH)
        return int(until)
