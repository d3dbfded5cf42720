"""The audit log of a lock: its events, newest first, with who opened the door (an
offline PIN's events are attributed at ingest, see :mod:`cloud.gym.events`)."""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.gym.models import AccessGrant, Facility, Lock, LockEvent, Reservation
from cloud.gym.offline_pins import OFFLINE_EVENT_KINDS
from cloud.gym.views import AuditEntry


def _site_of(lock_id: str) -> Select[str]:
    """The site of the lock's facility: what another site's gateway said of a lock it did
    not know yet is never in this lock's audit (:mod:`cloud.gym.ownership`)."""
    return (
        select(Facility.site)
        .join(Lock, Lock.facility_id == Facility.id)
        .where(Lock.lock_id == lock_id)
    )


class AuditService:
    """Read lock events joined to the reservation behind the grant that was used."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def events(self, lock_id: str, limit: int = 200) -> list[AuditEntry]:
        """Events of ``lock_id`` newest first, in the order they arrived: one lock's events
        come through one agent's outbox in the order the lock made them, and unlike ``seq``
        that order survives the lock restarting its numbers (a new boot)."""
        query = (
            select(LockEvent, Reservation.citizen_name)
            .outerjoin(AccessGrant, AccessGrant.id == LockEvent.grant_id)
            .outerjoin(Reservation, Reservation.id == AccessGrant.reservation_id)
            .where(LockEvent.lock_id == lock_id, LockEvent.site.in_(_site_of(lock_id)))
            .order_by(LockEvent.id.desc())
            .limit(limit)
        )
        with self._sessions() as session:
            return [
                AuditEntry(
                    lock_id=e.lock_id,
                    boot=e.boot,
                    seq=e.seq,
                    lock_ts=e.lock_ts,
                    kind=e.kind,
                    grant_id=e.grant_id,
                    slot=e.slot,
                    value=e.value,
                    received_at=e.received_at,
                    reservation_name=name,
                    offline=e.slot is None
                    and e.value is not None
                    and e.kind in OFFLINE_EVENT_KINDS,
                )
                for e, name in session.execute(query)
            ]
