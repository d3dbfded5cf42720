"""One coordinator per lock: owns its transport, availability, when to sync, event pull.

When a lock is synced (the sync itself is :class:`~edge.devices.slot_loader.SlotLoader`):
at every connection; at its scheduled full sync (:mod:`edge.sync_schedule` calls
:meth:`LockCoordinator.scheduled_sync`); when its keypad wakes it and it holds something
other than the stored snapshot says; and at once when a new snapshot changes a window
that opens (or a cancelled one still open) before that next scheduled sync
(:func:`edge.sync_policy.immediate_load_reason`), or when the snapshot's revocation list
holds a cancelled offline PIN the lock has not accepted yet. Anything else waits for the
next sync, because waking a battery lock costs battery. Fleet commands add three more
exchanges, each holding the lock's line like a sync: a sync now (:meth:`sync_now`), the
emergency remote unlock (:meth:`remote_unlock`) and a firmware update
(:meth:`update_firmware`).

The lock wire is request/response by ``seq`` plus unsolicited WAKE frames; every pass of
the work loop drains the lock's events (:mod:`edge.devices.lock_events`).

Every request is sealed with the lock's link key from the key store and every answer is
checked (MAC, counter, bound to its request) before it counts; a forged or replayed frame
is dropped and counted. A lock without a key in the store is not driven: the coordinator
says how to pair it and looks for the key again later.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from edge.backoff import Backoff
from edge.config import LockLinkConfig, SyncConfig
from edge.devices.lock_channel import LinkStats, LockChannel
from edge.devices.lock_events import EventDrain
from edge.devices.slot_loader import SlotLoader, SyncResult, live_revocations
from edge.errors import (
    KeyStoreError,
    LockNotPaired,
    LockRejected,
    LockSyncMismatch,
    LockUnreachable,
    OutboxError,
    StoreError,
)
from edge.lock_keys import AgentLink, LockKeyStore
from edge.outbox import Outbox
from edge.store import Store
from edge.sync_policy import LockState, immediate_load_reason, plan_load
from edge.transports.base import LockTransport, ReportsSignal
from protocol.clock import Clock
from protocol.errors import FrameError
from protocol.firmware_image import FirmwareImage
from protocol.firmware_updater import (
    UpdateRefusedError,
    UpdateRequest,
    UpdateResult,
    lock_updater,
    run_update,
)
from protocol.lock_auth import CounterExhaustedError
from protocol.lock_wire import (
    FrameType,
    LockFrame,
    LockInfo,
    NackCode,
    decode_unlock_ack,
)
from protocol.messages import LockAccess, LockTelemetry, SyncReason

log = logging.getLogger(__name__)


Connector = Callable[[], Awaitable[LockTransport]]
NextSync = Callable[[], float | None]
# what goes wrong with one lock; the coordinator logs it and tries again later
LOCK_ERRORS = (
    LockUnreachable,
    LockRejected,
    LockSyncMismatch,
    FrameError,
    StoreError,
    OutboxError,
    KeyStoreError,
    CounterExhaustedError,
)


@dataclass(frozen=True, slots=True)
class LoadDecision:
    """What the coordinator decided when a new snapshot was stored."""

    at: float
    version: int | None
    reason: str | None  # why the lock is loaded at once; None: it waits for its next sync
    next_sync_at: float | None


class LockCoordinator:
    """Keeps one lock connected, loaded with the stored snapshot, and drained of events."""

    def __init__(
        self,
        lock_id: str,
        *,
        site: str,
        gateway: str,
        connect: Connector,
        address: str,
        keys: LockKeyStore,
        store: Store,
        outbox: Outbox,
        clock: Clock,
        sync: SyncConfig,
        link: LockLinkConfig,
        next_sync_at: NextSync,
    ) -> None:
        self.lock_id = lock_id
        self.site = site
        self.gateway = gateway
        self._connect = connect
        self.address = address
        self.keys = keys
        self.store = store
        self.outbox = outbox
        self.clock = clock
        self.sync_config = sync
        self.link_config = link
        self.next_sync_at = next_sync_at
        self.loader = SlotLoader(
            lock_id, site=site, gateway=gateway, store=store, outbox=outbox, clock=clock
        )
        self.events = EventDrain(lock_id, site=site, gateway=gateway, outbox=outbox, clock=clock)
        self.stats = LinkStats()
        self.info: LockInfo | None = None
        self.clock_offset_s: float | None = None
        self.rssi_dbm: int | None = None  # BLE only: heard when the agent connected
        self.reachable = False
        self.paired: bool | None = None  # None until the key store was looked at
        self.applied_version: int | None = None
        self.synced = asyncio.Event()  # set after the first confirmed sync (readiness)
        self.sync_count = 0
        self.wakes = 0  # WAKE frames handled: keypad use or new events
        self.last_sync: SyncResult | None = None
        self.last_decision: LoadDecision | None = None
        self._wakeup = asyncio.Event()
        self._sync_due: SyncReason | None = SyncReason.CONNECT
        self._woken = False
        self._awake_until: float | None = None
        self._io = asyncio.Lock()  # one exchange sequence with the lock at a time
        self._channel: LockChannel | None = None
        self._transport: LockTransport | None = None

    # ------------------------------------------------------------ public

    def request_sync(self, reason: SyncReason = SyncReason.CHANGE) -> None:
        """Load the lock from the stored snapshot as soon as it is connected."""
        self._sync_due = reason
        self._wakeup.set()

    def snapshot_stored(self) -> LoadDecision:
        """A newer snapshot was stored: load the lock now if it cannot wait for its next
        scheduled sync (see :func:`edge.sync_policy.immediate_load_reason`)."""
        now = self.clock.now()
        next_sync = self.next_sync_at()
        try:
            version, reason = self._immediate_load_reason(now, next_sync)
        except StoreError as exc:
            # cannot tell what changed: loading is the side that cannot miss a door
            version, reason = None, f"the stored state is unreadable ({exc})"
        self.last_decision = LoadDecision(now, version, reason, next_sync)
        if reason is not None:
            log.info("lock %s: loading at once: %s", self.lock_id, reason)
            self.request_sync(SyncReason.CHANGE)
        elif self.reachable:
            log.info(
                "lock %s: snapshot v%s waits for the lock's next sync in %.0f s",
                self.lock_id,
                version,
                (next_sync or now) - now,
            )
        return self.last_decision

    async def scheduled_sync(self) -> None:
        """The periodic full sync (the scheduler's job); a lock that is away now is
        synced in full when it reconnects."""
        transport = self._transport
        if transport is None or not self.reachable:
            log.info("lock %s: scheduled sync skipped: not connected", self.lock_id)
            return
        try:
            async with self._io:
                await self._sync(transport, SyncReason.SCHEDULED)
        except LOCK_ERRORS as exc:
            log.warning("lock %s: scheduled sync failed: %s; retrying", self.lock_id, exc)
            self.request_sync(SyncReason.SCHEDULED)

    @property
    def idle(self) -> bool:
        """Nothing owed to the lock: no sync due, no wake unhandled, no exchange running."""
        return self._sync_due is None and not self._woken and not self._io.locked()

    def telemetry(self) -> LockTelemetry:
        """The lock's health as last seen."""
        info = self.info if self.reachable else None
        last = self.last_sync
        next_sync = self.next_sync_at()
        return LockTelemetry(
            lock_id=self.lock_id,
            reachable=self.reachable,
            battery_pct=None if info is None else min(info.battery_pct, 100),
            clock_offset_s=self.clock_offset_s,
            door_open=None if info is None else info.door_open,
            locked_out=None if info is None else info.locked_out,
            clock_drift_s=None if last is None else last.drift_s,
            last_sync_at=None if last is None else int(last.at),
            next_sync_at=None if next_sync is None else int(next_sync),
            firmware=None if self.info is None else self.info.firmware[:64],
            rssi_dbm=self.rssi_dbm,
        )

    # ------------------------------------------------------------ fleet commands

    def _connected(self) -> LockTransport:
        transport = self._transport
        if transport is None or not self.reachable:
            raise LockUnreachable(self.lock_id, self.address, "not connected now")
        return transport

    async def sync_now(self, reason: SyncReason = SyncReason.COMMAND) -> SyncResult:
        """A full sync at once (after the exchange running now); raises what a sync
        raises, :class:`LockUnreachable` when the lock is not connected. A failed sync is
        tried again as soon as the lock is back."""
        transport = self._connected()
        try:
            async with self._io:
                await self._sync(transport, reason)
        except LOCK_ERRORS:
            self.request_sync(reason)
            raise
        if self.last_sync is None:  # _sync sets it; the check is for the type checker
            raise LockUnreachable(self.lock_id, self.address, "no sync result")
        return self.last_sync

    async def remote_unlock(self) -> tuple[int, int]:
        """The emergency remote unlock (``UNLOCK``): the seq and boot of the lock's event.

        :class:`LockRejected` when the lock refuses it (``BAD_REQUEST``: its firmware has
        no remote unlock)."""
        transport = self._connected()
        async with self._io:
            reply = await self._request(transport, FrameType.UNLOCK, b"", FrameType.ACK)
        self._wakeup.set()  # drain the event now rather than at the next poll
        return decode_unlock_ack(reply.payload)

    async def update_firmware(self, image: FirmwareImage) -> UpdateResult:
        """Install a signed image (:mod:`protocol.firmware_updater`) over this lock's line.

        The lock's NACKs become :class:`UpdateRefusedError` (it keeps its old version)."""
        transport = self._connected()
        updater = lock_updater(image)

        async def exchange(request: UpdateRequest[FrameType]) -> LockFrame:
            try:
                return await self._request(transport, request.type, request.payload, request.expect)
            except LockRejected as exc:
                if exc.code in (NackCode.AUTH_FAILED, NackCode.NOT_PAIRED):
                    raise  # not about the image: the link key is wrong
                raise UpdateRefusedError(request.step, exc.code, exc.detail) from exc

        async with self._io:
            result = await run_update(updater, exchange)
            await self._refresh_info(transport)
        log.info(
            "lock %s: firmware %s -> %s (%s)",
            self.lock_id,
            result.previous,
            result.version,
            "installed" if result.installed else "already running",
        )
        return result

    async def run(self) -> None:
        """Connect, work, and reconnect with backoff when the lock vanishes; never returns."""
        backoff = Backoff(self.link_config.reconnect_base_s, self.link_config.reconnect_cap_s)
        while True:
            try:
                link = self._load_link()
                transport = await self._connect()
            except (LockUnreachable, LockNotPaired, KeyStoreError) as exc:
                self._log_down(exc, backoff)
            else:
                try:
                    await self._session(transport, link, backoff)
                except* LOCK_ERRORS as group:
                    self._log_down(group.exceptions[0], backoff)
                finally:
                    self.reachable = False
                    self._transport = None
                    if self._channel is not None:
                        self._channel.fail_pending()
                    await transport.close()
            await asyncio.sleep(backoff.next_delay())

    # ------------------------------------------------------------ session

    def _load_link(self) -> AgentLink[LockFrame]:
        # read again at every connection: the technician may have (re)paired meanwhile
        record = self.keys.load(self.lock_id)
        self.paired = record is not None
        if record is None:
            raise LockNotPaired(self.lock_id, self.address)
        return self.keys.link(record)

    def _log_down(self, exc: BaseException, backoff: Backoff) -> None:
        # the first failure is a warning; repeats while the lock stays away are quieter
        level = logging.WARNING if backoff.attempt == 0 else logging.DEBUG
        log.log(level, "%s; retrying", exc)

    async def _session(
        self, transport: LockTransport, link: AgentLink[LockFrame], backoff: Backoff
    ) -> None:
        self._channel = LockChannel(
            self.lock_id,
            transport,
            link=link,
            stats=self.stats,
            timeout_s=self.link_config.request_timeout_s,
            retries=self.link_config.retries,
            on_wake=self._on_wake,
        )
        async with asyncio.TaskGroup() as tg:
            reader = tg.create_task(self._channel.run_reader(), name=f"lock-{self.lock_id}-rx")
            try:
                await self._work(transport, backoff)
            finally:
                reader.cancel()

    def _on_wake(self) -> None:
        # a WAKE: the keypad was used or the lock has events; it listens for a while now
        self._woken = True
        self._wakeup.set()

    async def _work(self, transport: LockTransport, backoff: Backoff) -> None:
        info = await self._refresh_info(transport)
        rssi = transport.rssi if isinstance(transport, ReportsSignal) else None
        self.rssi_dbm = rssi if rssi is not None and -127 <= rssi <= 20 else None  # 127: n/a
        self.reachable = True
        self._transport = transport
        backoff.reset()
        log.info(
            "lock %s: connected on %s (%s, firmware %s, %d slots)",
            self.lock_id,
            transport.address,
            info.model,
            info.firmware,
            info.slot_count,
        )
        self._sync_due = SyncReason.CONNECT  # a reconnected lock may have been swapped or reset
        while True:
            async with self._io:
                await self._pass(transport)
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.sync_config.event_poll_s):
                    await self._wakeup.wait()
            self._wakeup.clear()

    async def _pass(self, transport: LockTransport) -> None:
        """One round with the lock: sync if one is due, then drain its events."""
        woken, self._woken = self._woken, False
        if woken:
            self.wakes += 1
            self._awake_until = self.clock.now() + self.sync_config.awake_s
        reason, self._sync_due = self._sync_due, None
        if reason is None and woken and self._differs():
            reason = SyncReason.KEYPAD
        if reason is not None:
            await self._sync(transport, reason)
        elif not woken:
            await self._refresh_info(transport)  # the fallback poll keeps battery and door fresh
        await self.events.drain(functools.partial(self._request, transport))

    # ------------------------------------------------------------ requests

    async def _request(
        self, transport: LockTransport, ftype: FrameType, payload: bytes, expect: FrameType
    ) -> LockFrame:
        """One authenticated request over this session's channel (see LockChannel)."""
        if self._channel is None or self._channel.transport is not transport:
            raise LockUnreachable(self.lock_id, transport.address, "no session")
        return await self._channel.request(ftype, payload, expect)

    async def _refresh_info(self, transport: LockTransport) -> LockInfo:
        reply = await self._request(transport, FrameType.GET_INFO, b"", FrameType.INFO)
        self.info = LockInfo.decode(reply.payload)
        self.clock_offset_s = self.info.clock - self.clock.now()
        return self.info

    # ------------------------------------------------------------ sync

    def _immediate_load_reason(
        self, now: float, next_sync: float | None
    ) -> tuple[int | None, str | None]:
        stored = self.store.lock_access(self.lock_id)
        if stored is None or self.info is None:
            return None, None  # nothing to load, or never connected: it syncs on connect
        version, access = stored
        held = self.store.held_slots(self.lock_id)
        plan = plan_load(access.grants, held, now=now, slot_count=self.info.slot_count)
        state = LockState(reachable=self.reachable, awake_until=self._awake_until)
        reason = immediate_load_reason(plan, state, next_sync, now)
        if reason is None and self.reachable and self._revocations_pending(access, now):
            reason = "a cancelled offline PIN must go on the lock's revocation list"
        return version, reason

    def _revocations_pending(self, access: LockAccess, now: float) -> bool:
        """A live revocation the lock has not accepted yet: worth waking it for, as the
        cancelled code opens the door until then."""
        sent = self.loader.revoked_sent
        live = live_revocations(access, now)
        return bool(live) and (sent is None or not set(live) <= sent)

    def _differs(self) -> bool:
        """Whether the lock holds something other than the stored snapshot says."""
        stored = self.store.lock_access(self.lock_id)
        if stored is None or self.info is None:
            return False
        version, access = stored
        applied = self.store.applied(self.lock_id)
        if applied is None or applied.version != version:
            return True
        held = self.store.held_slots(self.lock_id)
        now = self.clock.now()
        if self._revocations_pending(access, now):
            return True
        return not plan_load(access.grants, held, now=now, slot_count=self.info.slot_count).is_noop

    async def _sync(self, transport: LockTransport, reason: SyncReason) -> None:
        self._awake_until = self.clock.now() + self.sync_config.awake_s
        result = await self.loader.sync(functools.partial(self._request, transport), reason)
        self.info = result.info
        # the clock was just set: the lock is as close to ours as it can count
        self.clock_offset_s = 0.0 if result.clock_set else result.drift_s
        self._awake_until = result.at + self.sync_config.awake_s
        self.last_sync = result
        self.sync_count += 1
        if result.version is not None:
            self.applied_version = result.version
            self.synced.set()
