"""Offline PINs on the cloud's side: when to issue one instead of a slot PIN, issuing it,
showing it again, the revocation lists, and naming the booking behind an offline code's
lock event. The scheme itself is :mod:`protocol.offline_pin`; the rules are written up in
``docs/offline-pins.md`` ("When the cloud issues one").

The code is never stored. An :class:`~cloud.gym.models.OfflinePin` row keeps its id
(lock, start hour, hours, nonce); the citizen's page and mail derive the code again from
the lock's ``offline_secret`` (one HMAC), which the cloud must hold anyway to issue codes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.fleet.models import Gateway
from cloud.gym.booking_common import locks_serving, offline_code
from cloud.gym.models import AccessGrant, Lock, LockSync, OfflinePin, Reservation
from cloud.settings import CloudSettings
from protocol.messages import GatewayState, LockEventKind, RevokedOffline
from protocol.offline_pin import (
    OfflinePinError,
    OfflinePinId,
    free_nonce,
    match_short_id,
    offline_window,
)

# what a lock's revocation list holds (firmware_sim.lock.revocations.DEFAULT_CAPACITY):
# with that many live cancelled codes on a lock, the cloud issues it no more offline PINs
REVOCATION_CAPACITY = 64
# lock events that name an offline code by its short id (slot None, value = short id)
OFFLINE_EVENT_KINDS = frozenset(
    {
        LockEventKind.UNLOCKED.value,
        LockEventKind.DENIED_OUTSIDE_WINDOW.value,
        LockEventKind.DENIED_REVOKED.value,
    }
)


@dataclass(frozen=True, slots=True)
class OfflineChoice:
    """The lock an offline PIN is issued for, its id, and why a slot PIN would not do."""

    lock: Lock
    pin_id: OfflinePinId
    reason: str


def pin_id(row: OfflinePin) -> OfflinePinId:
    """The id of a stored offline PIN."""
    return OfflinePinId(row.start_hour, row.hours, row.nonce)


def why_offline(
    session: Session,
    r: Reservation,
    slot_window_start: int,
    settings: CloudSettings,
    now: int,
) -> str | None:
    """Why a slot PIN for ``r`` cannot be counted on to reach the lock before its window
    opens at ``slot_window_start``; ``None`` when it can (the usual case)."""
    site, gateway = r.facility.site, r.facility.gateway
    gw = session.get(Gateway, (site, gateway))
    if gw is None:
        # never heard of: a site being installed; its retained snapshot waits for it
        return None
    if gw.state == GatewayState.OFFLINE.value:
        return "the site's gateway was offline"
    silence = settings.gateway_silent_after_s
    if silence and now - gw.last_seen > silence:
        return f"the site's gateway had been silent for {(now - gw.last_seen) // 60} minutes"
    for lock in locks_serving(session, r.room):
        sync = session.get(LockSync, lock.lock_id)
        if sync is None:
            continue
        next_sync = sync.next_sync_at
        before_next_sync = next_sync is None or slot_window_start < next_sync
        if sync.reachable is False and before_next_sync:
            return "the lock was out of the gateway's reach"
        if sync.deferred and before_next_sync:
            return "the lock's slots were full"
    return None


def choose_offline(
    session: Session, r: Reservation, slot_window_start: int, settings: CloudSettings, now: int
) -> OfflineChoice | None:
    """The offline PIN to issue for ``r`` instead of a slot PIN, or None for a slot PIN.

    An offline PIN needs exactly one lock serving the room (the citizen is told one code)
    that has an offline secret, a booking that fits ``offline_pin_max_hours`` once rounded
    to whole hours, a free nonce, and room on the lock's revocation list."""
    if not settings.offline_pins_enabled:
        return None
    locks = locks_serving(session, r.room)
    if len(locks) != 1 or locks[0].offline_secret is None:
        return None
    lock = locks[0]
    reason = why_offline(session, r, slot_window_start, settings, now)
    if reason is None:
        return None
    if len(revoked_ids(session, lock.id, now)) >= REVOCATION_CAPACITY:
        return None  # the lock would refuse every offline PIN after one more cancellation
    try:
        start_hour, hours = offline_window(
            r.starts_at, r.ends_at, max_hours=settings.offline_pin_max_hours
        )
        used = issued_ids(session, lock.id)
        try:
            nonce = free_nonce(start_hour, hours, used)
        except OfflinePinError:
            hours += 1  # all 8 codes of this window are taken: widen it by an hour
            nonce = free_nonce(start_hour, hours, used)
        pid = OfflinePinId(start_hour, hours, nonce)
    except OfflinePinError:
        return None  # too long for one code, or no code left: a slot PIN it is
    return OfflineChoice(lock, pid, reason)


def record_offline(session: Session, grant: AccessGrant, choice: OfflineChoice, now: int) -> None:
    """Store the id of the offline PIN issued for ``grant`` (never the code)."""
    session.add(
        OfflinePin(
            grant_id=grant.id,
            lock_id=choice.lock.id,
            start_hour=choice.pin_id.start_hour,
            hours=choice.pin_id.hours,
            nonce=choice.pin_id.nonce,
            reason=choice.reason[:200],
            created_at=now,
        )
    )


def issued_ids(session: Session, lock_pk: int) -> list[OfflinePinId]:
    """Every offline PIN ever issued on the lock (a nonce is never reused)."""
    rows = session.execute(
        select(OfflinePin.start_hour, OfflinePin.hours, OfflinePin.nonce).where(
            OfflinePin.lock_id == lock_pk
        )
    )
    return [OfflinePinId(s, h, n) for s, h, n in rows]


def revoked_ids(session: Session, lock_pk: int, now: int) -> list[OfflinePinId]:
    """Cancelled offline PINs of the lock that some lock clock could still accept."""
    return revocations(session, [lock_pk], now).get(lock_pk, [])


def revocations(
    session: Session, lock_pks: Iterable[int], now: int
) -> dict[int, list[OfflinePinId]]:
    """Per lock, its cancelled offline PINs not yet expired (the revocation list)."""
    pks = set(lock_pks)
    if not pks:
        return {}
    # end of window plus grace is past: dropped (a cheap pre-filter on the start hour)
    oldest = (now // 3600) - 73
    rows = session.execute(
        select(OfflinePin.lock_id, OfflinePin.start_hour, OfflinePin.hours, OfflinePin.nonce)
        .join(AccessGrant, AccessGrant.id == OfflinePin.grant_id)
        .where(
            OfflinePin.lock_id.in_(pks),
            AccessGrant.revoked_at.is_not(None),
            OfflinePin.start_hour >= oldest,
        )
        .order_by(OfflinePin.start_hour, OfflinePin.hours, OfflinePin.nonce)
    )
    out: dict[int, list[OfflinePinId]] = {}
    for lock_pk, s, h, n in rows:
        pid = OfflinePinId(s, h, n)
        if pid.expires_at > now:
            out.setdefault(lock_pk, []).append(pid)
    return out


def revocation_entries(ids: Sequence[OfflinePinId]) -> list[RevokedOffline]:
    """The snapshot's form of a revocation list."""
    return [RevokedOffline.of(pid) for pid in ids]


def attribute_offline_events(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Fill ``grant_id`` of lock events that name an offline code (no slot, its short id
    in ``value``) with the grant of the code they name, in place."""
    wanted = [
        row
        for row in rows
        if row["grant_id"] is None
        and row["slot"] is None
        and row["value"] is not None
        and row["kind"] in OFFLINE_EVENT_KINDS
    ]
    if not wanted:
        return
    slugs = {row["lock_id"] for row in wanted}
    issued: dict[str, dict[OfflinePinId, str]] = {}
    result = session.execute(
        select(Lock.lock_id, OfflinePin.start_hour, OfflinePin.hours, OfflinePin.nonce)
        .add_columns(OfflinePin.grant_id)
        .join(OfflinePin, OfflinePin.lock_id == Lock.id)
        .where(Lock.lock_id.in_(slugs))
    )
    for slug, s, h, n, grant_id in result:
        issued.setdefault(slug, {})[OfflinePinId(s, h, n)] = grant_id
    for row in wanted:
        codes = issued.get(row["lock_id"])
        if not codes:
            continue
        found = match_short_id(codes, int(row["value"]), int(row["lock_ts"]))
        if found is not None:
            row["grant_id"] = codes[found]


__all__ = [
    "REVOCATION_CAPACITY",
    "OfflineChoice",
    "attribute_offline_events",
    "choose_offline",
    "offline_code",
    "pin_id",
    "record_offline",
    "revocation_entries",
    "revocations",
]
