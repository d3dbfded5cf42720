"""The approval queue: a manager (or an auto-approval rule) approves a pending booking,
which issues its PIN and mails it; or rejects it. ``decided_by`` records who or what."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.orm import Session, sessionmaker

from cloud.core.bus import ChangeBus
from cloud.errors import ConflictError, NotFoundError
from cloud.gym import notices
from cloud.gym.access import AccessChanged
from cloud.gym.booking_common import LOAD, reservation_view, status_url
from cloud.gym.grants import issue_grant
from cloud.gym.models import Reservation, ReservationStatus
from cloud.gym.payments import PaymentProvider
from cloud.gym.views import ReservationView
from cloud.settings import CloudSettings
from protocol.clock import Clock


def approve_in(
    session: Session,
    r: Reservation,
    decided_by: str,
    settings: CloudSettings,
    now: int,
    *,
    status_url: str,
    payment: str,
) -> None:
    """Inside the caller's transaction: approve ``r``, issue its PIN, mail it. The caller
    tells the notifier after the commit. Payment is not waited for (see payments)."""
    r.status = ReservationStatus.APPROVED
    r.decided_by, r.decided_at = decided_by, now
    issue_grant(session, r, settings, now)
    notices.booking_approved(session, r, settings, status_url=status_url, payment=payment, now=now)


class ApprovalService:
    """Managers approve or reject pending bookings."""

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

    def approve(self, reservation_id: str, by: str) -> ReservationView:
        """Approve a pending booking as manager ``by``: PIN, mail, new snapshot."""
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            r = self._pending(session, reservation_id, "approved")
            provider = self._providers[r.payment_method]
            url = status_url(self._settings, r.id, r.access_token)
            approve_in(
                session,
                r,
                f"manager:{by}",
                self._settings,
                now,
                status_url=url,
                payment=provider.instructions(r.fee_yen, r.facility.name),
            )
            site, gateway = r.facility.site, r.facility.gateway
            view = reservation_view(r, self._providers)
        self._bus.publish(AccessChanged(site, gateway))
        return view

    def reject(self, reservation_id: str, by: str) -> ReservationView:
        """Reject a pending booking as manager ``by`` and tell the citizen."""
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            r = self._pending(session, reservation_id, "rejected")
            r.status = ReservationStatus.REJECTED
            r.decided_by, r.decided_at = f"manager:{by}", now
            notices.booking_rejected(session, r, now)
            return reservation_view(r, self._providers)

    @staticmethod
    def _pending(session: Session, reservation_id: str, verb: str) -> Reservation:
        r = session.get(Reservation, reservation_id, options=LOAD, with_for_update=True)
        if r is None:
            raise NotFoundError(f"no reservation {reservation_id}")
        if r.status is not ReservationStatus.PENDING:
            raise ConflictError(
                f"reservation {reservation_id} is {r.status.value}; only a pending one "
                f"can be {verb}"
            )
        return r
