"""One sync of one lock: measure and set its clock, load the slot diff, report it.

A sync reads the lock's clock (the drift is measured *before* any correction), sets it
when the agent's own time is trusted, sends the lock's whole revocation list of cancelled
offline PINs (``REVOKE_OFFLINE``, expired entries dropped), reads the slots, writes only
what :func:`edge.sync_policy.plan_load` says changed, checks the result, records it in the
store and queues ``access/applied`` in the outbox. The coordinator decides *when*.

A lock that refuses the revocation list (NACK ``REVOCATIONS_FULL``: more live entries
than it holds) refuses every offline PIN until a list that fits arrives; that is logged
as an error and reported in ``access/applied.revocation_error``, and the sync goes on
(slot PINs keep working).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from edge.errors import LockRejected, LockSyncMismatch, OutboxError
from edge.outbox import Outbox
from edge.store import Store
from edge.sync_policy import HeldSlot, LoadPlan, plan_load
from protocol import messages, topics
from protocol.clock import Clock, is_trusted_time
from protocol.ids import uuid7
from protocol.lock_wire import (
    MAX_REVOCATIONS_PER_FRAME,
    FrameType,
    LockFrame,
    LockInfo,
    NackCode,
    decode_slots,
    encode_revocations,
    encode_u32,
)
from protocol.messages import AccessAppliedData, LockAccess, MessageType, SyncReason
from protocol.offline_pin import OfflinePinId

log = logging.getLogger(__name__)

# Below this a lock's clock is left alone: the lock counts whole seconds, so the measured
# offset is only good to about a second, and each SET_TIME is an event in the audit log.
CLOCK_TOLERANCE_S = 2.0

Request = Callable[[FrameType, bytes, FrameType], Awaitable[LockFrame]]


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one sync did (for logs, telemetry and tests)."""

    reason: SyncReason
    at: float
    info: LockInfo  # as read before the clock was set
    version: int | None  # None: no snapshot yet, only the clock was looked after
    plan: LoadPlan | None
    drift_s: float | None
    clock_set: bool
    revocations: int | None = None  # live entries sent with REVOKE_OFFLINE; None: not sent
    revocation_error: str | None = None  # why the lock refused the list


def live_revocations(access: LockAccess, now: float) -> list[OfflinePinId]:
    """The ids of ``access.revoked_offline`` that have not expired at ``now``, latest
    expiry first (entries outside the scheme are skipped), at most what one frame holds.

    More live entries than the lock holds are still sent: the lock then refuses every
    offline PIN (fail secure) rather than forget a cancelled one."""
    live: list[OfflinePinId] = []
    for entry in access.revoked_offline:
        if entry.expires_at <= now:
            continue
        try:
            live.append(entry.pin_id())
        except ValueError:
            log.warning("lock %s: skipped a revocation entry outside the scheme", access.lock_id)
    live.sort(key=lambda p: (p.expires_at, p), reverse=True)
    return live[:MAX_REVOCATIONS_PER_FRAME]


def merge_held(reported: list[HeldSlot], recorded: list[HeldSlot]) -> list[HeldSlot]:
    """What the lock reports, with the tag and load time the agent recorded for each slot
    whose grant and window still match (a lock never reports tags); others are untrusted."""
    by_slot = {h.slot: h for h in recorded}
    out = []
    for h in reported:
        known = by_slot.get(h.slot)
        if known is not None and (known.grant_id, known.start, known.end) == (
            h.grant_id,
            h.start,
            h.end,
        ):
            out.append(known)
        else:
            out.append(h)
    return out


class SlotLoader:
    """Carries out syncs of one lock over whatever ``request`` it is handed."""

    def __init__(
        self,
        lock_id: str,
        *,
        site: str,
        gateway: str,
        store: Store,
        outbox: Outbox,
        clock: Clock,
    ) -> None:
        self.lock_id = lock_id
        self.site = site
        self.gateway = gateway
        self.store = store
        self.outbox = outbox
        self.clock = clock
        self.last: SyncResult | None = None
        # the revocation list the lock last accepted (None: not sent since the agent started)
        self.revoked_sent: frozenset[OfflinePinId] | None = None

    async def sync(self, request: Request, reason: SyncReason) -> SyncResult:
        """Run one sync; raises what ``request`` raises, or :class:`LockSyncMismatch`."""
        info, drift, clock_set = await self._clock(request)
        stored = self.store.lock_access(self.lock_id)
        if stored is None:
            log.info("lock %s: no access snapshot yet; leaving its slots alone", self.lock_id)
            result = SyncResult(reason, self.clock.now(), info, None, None, drift, clock_set)
            self.last = result
            return result
        version, access = stored
        revocations, revocation_error = await self._revoke(request, access)
        held = merge_held(await self._read_slots(request), self.store.held_slots(self.lock_id))
        now = self.clock.now()
        plan = plan_load(access.grants, held, now=now, slot_count=info.slot_count)
        if plan.invalid:
            log.warning(
                "lock %s: %d grants with non-UUID ids skipped", self.lock_id, len(plan.invalid)
            )
        for slot in plan.clears:
            await request(FrameType.CLEAR_SLOT, bytes([slot]), FrameType.ACK)
        for entry in plan.sets:
            await request(FrameType.SET_SLOT, entry.encode_set(), FrameType.ACK)
        if not plan.is_noop:
            await self._check(request, plan)
        loaded_at = int(now)
        target = [h if h.loaded_at is not None else _loaded(h, loaded_at) for h in plan.target]
        self.store.record_sync(self.lock_id, version, target, now)
        log.info(
            "lock %s: %s sync to snapshot v%d: %d slots held, %d written, %d cleared, "
            "%d ended, %d waiting for a slot",
            self.lock_id,
            reason.value,
            version,
            len(target),
            len(plan.sets),
            len(plan.clears),
            len(plan.ended),
            len(plan.deferred),
        )
        result = SyncResult(
            reason, now, info, version, plan, drift, clock_set, revocations, revocation_error
        )
        self._report(result, version, plan, target)
        self.last = result
        return result

    async def _clock(self, request: Request) -> tuple[LockInfo, float | None, bool]:
        """Read the lock's info and drift, then set its clock if it is off and the agent's
        time is trusted (checked at every sync: a lock's quartz drifts, a reset one has no
        time)."""
        reply = await request(FrameType.GET_INFO, b"", FrameType.INFO)
        now = self.clock.now()
        info = LockInfo.decode(reply.payload)
        drift = None if info.clock == 0 else info.clock - now  # 0: the lock has no time
        if not is_trusted_time(now):
            # a Pi without RTC or NTP would push 1970 into every lock and break all windows
            log.warning("agent clock is not trusted; not setting the time of lock %s", self.lock_id)
            return info, drift, False
        if drift is not None and abs(drift) < CLOCK_TOLERANCE_S:
            return info, drift, False
        await request(FrameType.SET_TIME, encode_u32(int(now)), FrameType.ACK)
        if drift is None:
            log.info("lock %s: clock was not set; set it", self.lock_id)
        else:
            log.info("lock %s: clock was %+.0f s off; set it", self.lock_id, drift)
        return info, drift, True

    async def _revoke(self, request: Request, access: LockAccess) -> tuple[int, str | None]:
        """Send the lock its whole revocation list; the number of live entries sent and
        the lock's refusal, if any (a refusal does not stop the sync)."""
        live = live_revocations(access, self.clock.now())
        try:
            await request(FrameType.REVOKE_OFFLINE, encode_revocations(live), FrameType.ACK)
        except LockRejected as exc:
            self.revoked_sent = None
            if exc.code == NackCode.REVOCATIONS_FULL:
                error = "revocations_full"
                log.error(  # noqa: TRY400 - the lock's answer, no traceback to show
                    "lock %s: refused %d revocations as more than it holds: it refuses every "
                    "offline PIN until the list fits; stop issuing offline PINs for it",
                    self.lock_id,
                    len(live),
                )
            else:
                error = f"refused with code {exc.code}"
                log.error("lock %s: revocation list refused: %s", self.lock_id, exc)  # noqa: TRY400
            return len(live), error
        self.revoked_sent = frozenset(live)
        if live:
            log.info("lock %s: %d offline PINs on its revocation list", self.lock_id, len(live))
        return len(live), None

    async def _read_slots(self, request: Request) -> list[HeldSlot]:
        reply = await request(FrameType.GET_SLOTS, b"", FrameType.SLOTS)
        return [HeldSlot(e.slot, e.grant_id, e.start, e.end) for e in decode_slots(reply.payload)]

    async def _check(self, request: Request, plan: LoadPlan) -> None:
        held = {(h.slot, h.start, h.end, h.grant_id) for h in await self._read_slots(request)}
        wanted = {(h.slot, h.start, h.end, h.grant_id) for h in plan.target}
        if held != wanted:
            raise LockSyncMismatch(
                f"lock {self.lock_id} holds {len(held)} slots after loading {len(wanted)}"
            )

    def _report(
        self, result: SyncResult, version: int, plan: LoadPlan, target: list[HeldSlot]
    ) -> None:
        now = result.at
        data = AccessAppliedData(
            lock_id=self.lock_id,
            version=version,
            grant_ids=[h.grant_id for h in target if h.grant_id is not None],
            clock_offset_s=result.drift_s,
            loaded_at={
                h.grant_id: h.loaded_at
                for h in target
                if h.grant_id is not None and h.loaded_at is not None
            },
            deferred=plan.deferred,
            clock_set=result.clock_set,
            reason=result.reason,
            revocations=result.revocations,
            revocation_error=result.revocation_error,
        )
        msg_id = uuid7(int(now * 1000))
        try:
            self.outbox.add(
                topics.access_applied(self.site, self.gateway),
                messages.make(MessageType.ACCESS_APPLIED, data, ts=now, message_id=msg_id),
                f"applied:{self.lock_id}:{msg_id}",
                now=now,
            )
        except OutboxError as exc:
            log.error("lock %s: could not queue the applied report: %s", self.lock_id, exc)  # noqa: TRY400 - expected failure, no traceback


def _loaded(held: HeldSlot, at: int) -> HeldSlot:
    return HeldSlot(held.slot, held.grant_id, held.start, held.end, held.tag, at)
