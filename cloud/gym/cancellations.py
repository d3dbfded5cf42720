"""Cancellation by the citizen (with the status link's token) or by a manager, with a
reason: the PIN is revoked (the site's snapshot is republished without it), a paid fee
is refunded, and the citizen is told."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from sqlalchemy.orm import Session, sessionmaker

from cloud.core.bus import ChangeBus
from cloud.errors import ConflictError, InvalidRequestError, NotFoundError
from cloud.gym import notices
from cloud.gym.access import AccessChanged
from cloud.gym.booking_common import BLOCKING, LOAD, reservation_view
from cloud.gym.grants import revoke_grant
from cloud.gym.models import Reservation, ReservationStatus
from cloud.gym.payments import PaymentProvider, refund_if_paid
from cloud.gym.views import ReservationView
from cloud.localtime import format_local
from cloud.settings import CloudSettings
from protocol.clock import Clock

MAX_REASON = 500


class CancellationService:
    """Cancel a pending or approved booking that has not ended."""

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

    def by_citizen(self, reservation_id: str, token: str, reason: str) -> ReservationView:
        """The citizen cancels with the token of their status link, before the start."""
        return self._cancel(reservation_id, reason, token=token, manager=None)

    def by_manager(self, reservation_id: str, username: str, reason: str) -> ReservationView:
        """A manager cancels (a closure, a no-pay), any time before the end."""
        return self._cancel(reservation_id, reason, token=None, manager=username)

    def _cancel(
        self, reservation_id: str, reason: str, *, token: str | None, manager: str | None
    ) -> ReservationView:
        reason = reason.strip()
        if not reason:
            raise InvalidRequestError("please give a reason for the cancellation")
        if len(reason) > MAX_REASON:
            raise InvalidRequestError(f"please give the reason in at most {MAX_REASON} characters")
        now, zone = int(self._clock.now()), self._settings.zone
        with self._sessions.begin() as session:
            r = session.get(Reservation, reservation_id, options=LOAD, with_for_update=True)
            if token is not None and (r is None or not hmac.compare_digest(r.access_token, token)):
                raise NotFoundError(
                    "no booking matches this link; use the link from your confirmation"
                )
            if r is None:
                raise NotFoundError(f"no reservation {reservation_id}")
            if r.status not in (ReservationStatus.UNCONFIRMED, *BLOCKING):
                raise ConflictError(
                    f"booking {reservation_id} is {r.status.value}; only an unconfirmed, "
                    "pending or approved booking can be cancelled"
                )
            if r.ends_at <= now:
                raise ConflictError(
                    f"booking {reservation_id} ended at {format_local(r.ends_at, zone)}; "
                    "there is nothing left to cancel"
                )
            if manager is None and r.starts_at <= now:
                raise ConflictError(
                    f"your booking started at {format_local(r.starts_at, zone)}; to end it "
                    "early, please call the facility"
                )
            by = "citizen" if manager is None else f"manager:{manager}"
            r.status = ReservationStatus.CANCELLED
            r.cancelled_by, r.cancelled_at, r.cancel_reason = by, now, reason
            revoked = revoke_grant(session, r, now)
            refund = refund_if_paid(session, r, self._providers[r.payment_method], by, now)
            notices.booking_cancelled(
                session, r, self._settings, by_citizen=manager is None, refund=refund, now=now
            )
            site, gateway = r.facility.site, r.facility.gateway
            view = reservation_view(r, self._providers)
        if revoked:
            self._bus.publish(AccessChanged(site, gateway))
        return view
