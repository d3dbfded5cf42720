"""Access grants: the PIN of an approved booking, issued and revoked inside the caller's
transaction; both raise the site's snapshot version (the caller tells the notifier).

A grant is a slot PIN (loaded into the lock by the agent) or, when that cannot be counted
on before the window opens, an offline PIN the lock checks by itself
(:mod:`cloud.gym.offline_pins`); the citizen is told one code either way. A slot PIN is
stored sealed (:mod:`cloud.gym.pin_seal`)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.gym.access import bump_version
from cloud.gym.models import AccessGrant, Reservation
from cloud.gym.offline_pins import choose_offline, record_offline
from cloud.gym.pin_seal import PinSeal
from cloud.settings import CloudSettings
from protocol.ids import uuid7
from protocol.pin import PinWindow, generate_pin


def issue_grant(session: Session, r: Reservation, settings: CloudSettings, now: int) -> AccessGrant:
    """A PIN for ``r`` valid from the margin before its start to the margin after its end,
    unlike every PIN whose window overlaps at the same facility (revoked ones included:
    a lock may still hold one until its next sync). When the slot PIN might not reach
    the lock in time, an offline PIN for the booked hours instead (``pin`` is then None
    and the window is the code's whole hours)."""
    window = PinWindow.around(
        r.starts_at,
        r.ends_at,
        before_s=settings.pin_margin_before_s,
        after_s=settings.pin_margin_after_s,
    )
    offline = choose_offline(session, r, window.start, settings, now)
    if offline is not None:
        grant = AccessGrant(
            id=uuid7(now * 1000),
            reservation_id=r.id,
            pin_sealed=None,
            window_start=offline.pin_id.start,
            window_end=offline.pin_id.end,
            created_at=now,
        )
        session.add(grant)
        session.flush()
        record_offline(session, grant, offline, now)
    else:
        pins = PinSeal(settings.secret_key)
        taken = session.execute(
            select(AccessGrant.id, AccessGrant.pin_sealed)
            .join(Reservation, Reservation.id == AccessGrant.reservation_id)
            .where(
                Reservation.facility_id == r.facility_id,
                AccessGrant.pin_sealed.is_not(None),
                AccessGrant.window_start < window.end,
                AccessGrant.window_end > window.start,
            )
        ).all()
        avoid = {pins.open(grant_id, sealed) for grant_id, sealed in taken if sealed is not None}
        grant_id = uuid7(now * 1000)
        grant = AccessGrant(
            id=grant_id,
            reservation_id=r.id,
            pin_sealed=pins.seal(grant_id, generate_pin(settings.pin_length, avoid=avoid)),
            window_start=window.start,
            window_end=window.end,
            created_at=now,
        )
        session.add(grant)
    session.flush()
    session.refresh(r, ["grant"])
    bump_version(session, r.facility.site, r.facility.gateway, now)
    return grant


def revoke_grant(session: Session, r: Reservation, now: int) -> bool:
    """Take ``r``'s PIN out of every snapshot from now on (an offline PIN goes on its
    lock's revocation list instead); False if it had none."""
    grant = r.grant
    if grant is None or grant.revoked_at is not None:
        return False
    grant.revoked_at = now
    bump_version(session, r.facility.site, r.facility.gateway, now)
    return True
