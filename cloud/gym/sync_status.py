"""Per-grant and per-lock sync status for the manager: is a booking's PIN on the lock (and
since when), waiting for the lock's next sync, or an offline PIN that needs no sync; and
each lock's last sync, drift and next sync. Built from what the agent last reported
(``access/applied`` and telemetry, kept in :class:`~cloud.gym.models.LockSync`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.errors import NotFoundError
from cloud.fleet.models import Gateway
from cloud.gym.models import Facility, Lock, LockSync
from cloud.gym.offline_pins import revocations
from cloud.gym.views import ReservationView
from cloud.localtime import local
from cloud.settings import CloudSettings
from protocol.clock import Clock
from protocol.messages import GatewayState


class GrantSyncState(StrEnum):
    ON_LOCK = "on_lock"  # the lock holds the PIN (``since``: loaded at)
    WAITING_SYNC = "waiting_sync"  # goes on at the lock's next sync (``at``, when known)
    WAITING_SLOT = "waiting_slot"  # the lock's slots are full of sooner windows
    GATEWAY_OFFLINE = "gateway_offline"  # nothing reaches the lock until the gateway is back
    OFFLINE_PIN = "offline_pin"  # the lock checks the code itself: nothing to load


@dataclass(frozen=True, slots=True)
class GrantSync:
    """Where one booking's PIN stands on one lock, and the sentence the manager reads."""

    lock_id: str
    lock_name: str
    state: GrantSyncState
    text: str
    since: int | None = None  # ON_LOCK: when it was loaded
    at: int | None = None  # WAITING_*: the lock's next scheduled sync, when known


@dataclass(frozen=True, slots=True)
class LockSyncView:
    """What the agent last reported about one lock (None: never reported)."""

    lock_id: str
    name: str
    gateway_state: str | None
    gateway_last_seen: int | None
    applied_version: int | None = None
    grant_ids: tuple[str, ...] = ()
    deferred: tuple[str, ...] = ()
    clock_offset_s: float | None = None
    clock_set: bool | None = None
    reason: str | None = None
    revocation_error: str | None = None
    applied_received_at: int | None = None
    reachable: bool | None = None
    last_sync_at: int | None = None
    next_sync_at: int | None = None
    clock_drift_s: float | None = None
    telemetry_received_at: int | None = None
    revoked_offline: int = 0  # live entries on its revocation list


def short_time(ts: int, zone: ZoneInfo, now: float) -> str:
    """``14:02`` on the local day of ``now``, else ``2027-06-02 14:02``."""
    t = local(ts, zone)
    if t.date() == local(now, zone).date():
        return f"{t:%H:%M}"
    return f"{t:%Y-%m-%d %H:%M}"


class SyncStatusService:
    """Read the per-grant and per-lock sync status."""

    def __init__(
        self, sessions: sessionmaker[Session], clock: Clock, settings: CloudSettings
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._settings = settings

    def lock(self, lock_id: str) -> LockSyncView:
        """One lock's sync status (404 for an unknown lock)."""
        now = int(self._clock.now())
        with self._sessions() as session:
            lock = session.scalars(select(Lock).where(Lock.lock_id == lock_id)).first()
            if lock is None:
                raise NotFoundError(
                    f"no lock {lock_id!r}; see the facilities page for the lock ids"
                )
            facility = session.get(Facility, lock.facility_id)
            assert facility is not None
            gw = session.get(Gateway, (facility.site, facility.gateway))
            sync = session.get(LockSync, lock_id)
            revoked = len(revocations(session, [lock.id], now).get(lock.id, []))
            base = LockSyncView(
                lock_id=lock.lock_id,
                name=lock.name,
                gateway_state=None if gw is None else gw.state,
                gateway_last_seen=None if gw is None else gw.last_seen,
                revoked_offline=revoked,
            )
            if sync is None:
                return base
            return LockSyncView(
                lock_id=base.lock_id,
                name=base.name,
                gateway_state=base.gateway_state,
                gateway_last_seen=base.gateway_last_seen,
                applied_version=sync.applied_version,
                grant_ids=tuple(sync.grant_ids or ()),
                deferred=tuple(sync.deferred or ()),
                clock_offset_s=sync.clock_offset_s,
                clock_set=sync.clock_set,
                reason=sync.reason,
                revocation_error=sync.revocation_error,
                applied_received_at=sync.applied_received_at,
                reachable=sync.reachable,
                last_sync_at=sync.last_sync_at,
                next_sync_at=sync.next_sync_at,
                clock_drift_s=sync.clock_drift_s,
                telemetry_received_at=sync.telemetry_received_at,
                revoked_offline=revoked,
            )

    def grants(self, reservations: Iterable[ReservationView]) -> dict[str, list[GrantSync]]:
        """Per reservation id (those with a live grant), its PIN's status on each lock."""
        with_grant = [r for r in reservations if r.grant is not None]
        if not with_grant:
            return {}
        now, zone = self._clock.now(), self._settings.zone
        facility_ids = {r.facility_id for r in with_grant}
        with self._sessions() as session:
            locks = session.scalars(
                select(Lock).where(Lock.facility_id.in_(facility_ids)).order_by(Lock.lock_id)
            ).all()
            syncs = {
                s.lock_id: s
                for s in session.scalars(
                    select(LockSync).where(LockSync.lock_id.in_([x.lock_id for x in locks]))
                )
            }
            facilities = {
                f.id: f
                for f in session.scalars(select(Facility).where(Facility.id.in_(facility_ids)))
            }
            offline_gateways = {
                (g.site, g.gateway)
                for g in session.scalars(
                    select(Gateway).where(Gateway.state == GatewayState.OFFLINE.value)
                )
            }
            out: dict[str, list[GrantSync]] = {}
            for r in with_grant:
                grant = r.grant
                assert grant is not None
                if grant.offline:
                    lock = next((x for x in locks if x.lock_id == grant.lock_id), None)
                    why = f" ({grant.offline_reason})" if grant.offline_reason else ""
                    out[r.id] = [
                        GrantSync(
                            grant.lock_id or "",
                            "" if lock is None else lock.name,
                            GrantSyncState.OFFLINE_PIN,
                            f"offline PIN issued{why}; the lock checks it by itself",
                        )
                    ]
                    continue
                facility = facilities[r.facility_id]
                gw_offline = (facility.site, facility.gateway) in offline_gateways
                serving = [
                    x
                    for x in locks
                    if x.facility_id == r.facility_id and x.room_id in (None, r.room_id)
                ]
                out[r.id] = [
                    _grant_on_lock(
                        grant.id,
                        x,
                        syncs.get(x.lock_id),
                        gateway_offline=gw_offline,
                        zone=zone,
                        now=now,
                    )
                    for x in serving
                ]
            return out


def _grant_on_lock(
    grant_id: str,
    lock: Lock,
    sync: LockSync | None,
    *,
    gateway_offline: bool,
    zone: ZoneInfo,
    now: float,
) -> GrantSync:
    def make(state: GrantSyncState, text: str, **kw: int | None) -> GrantSync:
        return GrantSync(lock.lock_id, lock.name, state, text, **kw)

    if sync is not None and grant_id in (sync.grant_ids or ()):
        since = (sync.loaded_at or {}).get(grant_id, sync.applied_received_at)
        if since is None:
            return make(GrantSyncState.ON_LOCK, "PIN on lock")
        return make(
            GrantSyncState.ON_LOCK, f"PIN on lock since {short_time(since, zone, now)}", since=since
        )
    next_sync = None if sync is None else sync.next_sync_at
    if next_sync is None:
        when = ""
    elif next_sync < now:
        when = f", due since {short_time(next_sync, zone, now)}"
    else:
        when = f" at {short_time(next_sync, zone, now)}"
    if gateway_offline:
        return make(
            GrantSyncState.GATEWAY_OFFLINE,
            "waiting: the site's gateway is offline; the PIN goes on the lock once it is back",
            at=next_sync,
        )
    if sync is not None and grant_id in (sync.deferred or ()):
        return make(
            GrantSyncState.WAITING_SLOT,
            f"waiting for a free slot on the lock (next sync{when})",
            at=next_sync,
        )
    return make(
        GrantSyncState.WAITING_SYNC, f"waiting for the lock's next sync{when}", at=next_sync
    )
