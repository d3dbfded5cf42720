"""One coordinator per lock: owns its transport, availability, slot sync and event pull.

The lock wire is request/response by ``seq`` plus unsolicited WAKE frames. Events go into
the outbox (committed, fsynced) *before* the lock is told ACK_EVENTS, so a crash between
the two makes the lock send them again and the outbox's dedupe key drops the copy.

Every request is sealed with the lock's link key from the key store and every answer is
checked (MAC, counter, bound to its request) before it counts; a forged or replayed frame
is dropped and counted. A lock without a key in the store is not driven: the coordinator
says how to pair it and looks for the key again later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from edge.backoff import Backoff
from edge.config import LockLinkConfig, SyncConfig
from edge.devices.lock_channel import LinkStats, LockChannel
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
from edge.sync_policy import plan_slots
from edge.transports.base import LockTransport
from protocol import messages, topics
from protocol.clock import Clock, is_trusted_time
from protocol.errors import FrameError
from protocol.ids import uuid7
from protocol.lock_auth import CounterExhaustedError
from protocol.lock_wire import (
    ALL_SLOTS,
    MAX_EVENTS_PER_FRAME,
    FrameType,
    LockFrame,
    LockInfo,
    WireEvent,
    decode_events,
    decode_slots,
    encode_u32,
)
from protocol.messages import AccessAppliedData, LockEventData, LockTelemetry, MessageType

log = logging.getLogger(__name__)

CLOCK_TOLERANCE_S = 2.0  # below this a lock's clock is left alone (each SET_TIME is an event)
MAX_EVENT_ROUNDS = 64  # GET_EVENTS rounds per drain, so a chatty lock cannot starve syncs

Connector = Callable[[], Awaitable[LockTransport]]


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
        self.stats = LinkStats()
        self.info: LockInfo | None = None
        self.clock_offset_s: float | None = None
        self.reachable = False
        self.paired: bool | None = None  # None until the key store was looked at
        self.applied_version: int | None = None
        self.synced = asyncio.Event()  # set after each confirmed sync (tests and readiness)
        self._wakeup = asyncio.Event()
        self._sync_due = True
        self._channel: LockChannel | None = None

    # ------------------------------------------------------------ public

    def request_sync(self) -> None:
        """Load the lock from the stored snapshot as soon as it is connected."""
        self._sync_due = True
        self._wakeup.set()

    def telemetry(self) -> LockTelemetry:
        """The lock's health as last seen."""
        info = self.info if self.reachable else None
        return LockTelemetry(
            lock_id=self.lock_id,
            reachable=self.reachable,
            battery_pct=None if info is None else min(info.battery_pct, 100),
            clock_offset_s=self.clock_offset_s,
            door_open=None if info is None else info.door_open,
            locked_out=None if info is None else info.locked_out,
        )

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
                except* (
                    LockUnreachable,
                    LockRejected,
                    LockSyncMismatch,
                    FrameError,
                    StoreError,
                    OutboxError,
                    KeyStoreError,
                    CounterExhaustedError,
                ) as group:
                    self._log_down(group.exceptions[0], backoff)
                finally:
                    self.reachable = False
                    if self._channel is not None:
                        self._channel.fail_pending()
                    await transport.close()
            await asyncio.sleep(backoff.next_delay())

    # ------------------------------------------------------------ session

    def _load_link(self) -> AgentLink:
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

    async def _session(self, transport: LockTransport, link: AgentLink, backoff: Backoff) -> None:
        self._channel = LockChannel(
            self.lock_id,
            transport,
            link=link,
            stats=self.stats,
            timeout_s=self.link_config.request_timeout_s,
            retries=self.link_config.retries,
            on_wake=self._wakeup.set,  # every pass of the work loop drains events
        )
        async with asyncio.TaskGroup() as tg:
            reader = tg.create_task(self._channel.run_reader(), name=f"lock-{self.lock_id}-rx")
            try:
                await self._work(transport, backoff)
            finally:
                reader.cancel()

    async def _work(self, transport: LockTransport, backoff: Backoff) -> None:
        loop = asyncio.get_running_loop()
        info = await self._refresh_info(transport)
        self.reachable = True
        backoff.reset()
        log.info(
            "lock %s: connected on %s (%s, firmware %s, %d slots)",
            self.lock_id,
            transport.address,
            info.model,
            info.firmware,
            info.slot_count,
        )
        await self._set_time(transport)
        self._sync_due = True  # a reconnected lock may have been swapped or reset
        next_full_sync = loop.time()
        while True:
            if self._sync_due or loop.time() >= next_full_sync:
                self._sync_due = False
                next_full_sync = loop.time() + self.sync_config.full_sync_interval_s
                await self._sync(transport)
            else:
                await self._refresh_info(transport)  # poll keeps battery and door fresh
            await self._drain_events(transport)
            timeout = min(self.sync_config.event_poll_s, max(next_full_sync - loop.time(), 0))
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wakeup.wait()
            self._wakeup.clear()

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

    async def _set_time(self, transport: LockTransport) -> None:
        now = self.clock.now()
        if not is_trusted_time(now):
            # a Pi without RTC or NTP would push 1970 into every lock and break all windows
            log.warning("agent clock is not trusted; not setting the time of lock %s", self.lock_id)
            return
        if self.clock_offset_s is not None and abs(self.clock_offset_s) < CLOCK_TOLERANCE_S:
            return
        await self._request(transport, FrameType.SET_TIME, encode_u32(int(now)), FrameType.ACK)
        log.info("lock %s: clock was %.0f s off; set it", self.lock_id, self.clock_offset_s or 0)
        await self._refresh_info(transport)

    # ------------------------------------------------------------ sync

    async def _sync(self, transport: LockTransport) -> None:
        stored = self.store.lock_access(self.lock_id)
        if stored is None:
            log.info("lock %s: no access snapshot yet; leaving its slots alone", self.lock_id)
            return
        version, access = stored
        info = await self._refresh_info(transport)
        plan = plan_slots(access.grants, now=self.clock.now(), slot_count=info.slot_count)
        if plan.invalid:
            log.warning(
                "lock %s: %d grants with non-UUID ids skipped", self.lock_id, len(plan.invalid)
            )
        await self._request(transport, FrameType.CLEAR_SLOT, bytes([ALL_SLOTS]), FrameType.ACK)
        for entry in plan.entries:
            await self._request(transport, FrameType.SET_SLOT, entry.encode_set(), FrameType.ACK)
        reply = await self._request(transport, FrameType.GET_SLOTS, b"", FrameType.SLOTS)
        held = {
            (e.slot, e.start, e.end, e.grant_id)
            for e in decode_slots(reply.payload)
            if e.grant_id is not None
        }
        wanted = {(e.slot, e.start, e.end, e.grant_id) for e in plan.entries}
        if held != wanted:
            raise LockSyncMismatch(
                f"lock {self.lock_id} holds {len(held)} slots after loading {len(wanted)}"
            )
        now = self.clock.now()
        self.store.set_applied(self.lock_id, version, plan.grant_ids, now)
        self.applied_version = version
        log.info(
            "lock %s: loaded snapshot v%d (%d slots, %d ended, %d waiting for a slot)",
            self.lock_id,
            version,
            len(plan.entries),
            len(plan.ended),
            len(plan.deferred),
        )
        data = AccessAppliedData(
            lock_id=self.lock_id,
            version=version,
            grant_ids=plan.grant_ids,
            clock_offset_s=self.clock_offset_s,
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
        self.synced.set()

    # ------------------------------------------------------------ events

    async def _drain_events(self, transport: LockTransport) -> None:
        for _ in range(MAX_EVENT_ROUNDS):
            reply = await self._request(
                transport, FrameType.GET_EVENTS, bytes([MAX_EVENTS_PER_FRAME]), FrameType.EVENTS
            )
            events = decode_events(reply.payload)
            if not events:
                return
            try:
                for event in events:
                    self._queue_event(event)
            except (OutboxError, StoreError) as exc:
                # not acknowledged: the lock keeps the events and we try again next poll
                log.error(  # noqa: TRY400 - expected failure, no traceback
                    "lock %s: could not store events, not acknowledging: %s", self.lock_id, exc
                )
                return
            last = max(e.seq for e in events)
            await self._request(transport, FrameType.ACK_EVENTS, encode_u32(last), FrameType.ACK)

    def _queue_event(self, event: WireEvent) -> None:
        now = self.clock.now()
        data = LockEventData(
            lock_id=self.lock_id,
            seq=event.seq,
            lock_ts=event.ts,
            kind=event.kind,
            slot=event.slot,
            grant_id=event.grant_id,
            value=event.value,
        )
        stored = self.outbox.add(
            topics.events(self.site, self.gateway),
            messages.make(MessageType.LOCK_EVENT, data, ts=now),
            f"event:{self.lock_id}:{event.seq}",
            now=now,
        )
        if stored:
            log.info("lock %s: event %d %s queued", self.lock_id, event.seq, event.kind.value)
