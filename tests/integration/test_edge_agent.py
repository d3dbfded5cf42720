"""The edge agent against a real Mosquitto and a lock on a real pty.

The lock here is a tiny test-only peer speaking ``protocol.lock_wire`` on the master side
of a pty, authenticated with the link key the agent's key store holds (``paired()``); the
agent opens the slave path with pyserial-asyncio-fast exactly as it opens ``/dev/ttyUSB0``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
import tty
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.agent import Agent
from edge.config import SiteConfig, parse_config
from edge.errors import LockUnreachable
from edge.lock_keys import LockKeyRecord, LockKeyStore
from edge.main import build_agent
from edge.transports import open_transport
from protocol import messages, topics
from protocol.clock import SystemClock
from protocol.lock_auth import AuthError, Direction, LinkAuth
from protocol.lock_wire import (
    FrameParser,
    FrameType,
    LockFrame,
    LockInfo,
    SlotEntry,
    WireEvent,
    decode_u32,
    encode_events,
    encode_slots,
)
from protocol.messages import (
    AccessGrantEntry,
    AccessSnapshotData,
    LockAccess,
    LockEventKind,
    MessageType,
)
from tests.support.mosquitto import Mosquitto

SITE, GW, LOCK = "gym-a", "gw-1", "gym-a-1"
TAG = "5a" * 16
LINK_KEY = bytes.fromhex("c3" * 32)
BOOT = 0x5EED1E55  # the run of the peer lock's event counter


def paired(state_dir: Path) -> None:
    """Put the peer's link key into the agent's key store, as pairing would."""
    LockKeyStore(state_dir).save(LockKeyRecord(LOCK, LINK_KEY, 0, int(time.time())))


class LockPeer:
    """A lock that answers frames on a pty: slots, events, clock; nothing more."""

    def __init__(self, slot_count: int = 4) -> None:
        self.slot_count = slot_count
        self.slots: dict[int, SlotEntry] = {}
        self.events: list[WireEvent] = []
        self.received: list[FrameType] = []
        self.refused = 0
        self.link = LinkAuth(LINK_KEY, Direction.TO_AGENT)
        self.acks: list[int] = []
        self.clock_base: float | None = None  # None: clock never set
        self.lose_next_ack = False
        self.on_ack: Callable[[int], None] | None = None
        self._next_event = 1
        self._parser = FrameParser()
        self._changed = asyncio.Event()
        self.master, self._slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self._slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self._slave)
        asyncio.get_running_loop().add_reader(self.master, self._on_readable)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        os.close(self.master)
        os.close(self._slave)

    # test controls
    def add_event(self, kind: LockEventKind = LockEventKind.UNLOCKED) -> WireEvent:
        event = WireEvent(self._next_event, int(time.time()), kind, slot=0, value=0, boot=BOOT)
        self._next_event += 1
        self.events.append(event)
        return event

    def wake(self) -> None:
        os.write(self.master, bytes(self.link.seal(LockFrame(FrameType.WAKE, 0))))

    def write_raw(self, data: bytes) -> None:
        os.write(self.master, data)

    async def wait_until(
        self, what: str, predicate: Callable[[], bool], limit_s: float = 10
    ) -> None:
        async def loop() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(loop(), limit_s)
        except TimeoutError:
            raise AssertionError(f"lock peer: {what} not seen within {limit_s}s") from None

    # the firmware
    def _on_readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except (BlockingIOError, OSError):
            return
        for frame in self._parser.feed(data):
            try:
                self.link.check(frame)
            except AuthError:
                self.refused += 1
                continue
            self.received.append(frame.type)
            reply = self._answer(frame)
            sealed = self.link.seal(LockFrame(reply[0], frame.seq, reply[1]), bound=frame.counter)
            os.write(self.master, bytes(sealed))
        self._changed.set()

    def _clock(self) -> int:
        return 0 if self.clock_base is None else int(time.time() + self.clock_base)

    def _answer(self, frame: LockFrame) -> tuple[FrameType, bytes]:
        kind = frame.type
        if kind is FrameType.GET_INFO:
            head = self.events[-1].seq if self.events else 0
            info = LockInfo("peer", "0.1", self.slot_count, self._clock(), head, False, 90, False)
            return FrameType.INFO, info.encode()
        if kind is FrameType.SET_TIME:
            self.clock_base = decode_u32(frame.payload, "SET_TIME") - time.time()
        elif kind is FrameType.CLEAR_SLOT:
            self.slots.clear()
        elif kind is FrameType.SET_SLOT:
            entry = SlotEntry.decode_set(frame.payload)
            self.slots[entry.slot] = entry
        elif kind is FrameType.GET_SLOTS:
            return FrameType.SLOTS, encode_slots(sorted(self.slots.values(), key=lambda e: e.slot))
        elif kind is FrameType.GET_EVENTS:
            return FrameType.EVENTS, encode_events(self.events[: frame.payload[0]])
        elif kind is FrameType.ACK_EVENTS:
            upto = decode_u32(frame.payload, "ACK_EVENTS")
            self.acks.append(upto)
            if self.on_ack is not None:
                self.on_ack(upto)
            if self.lose_next_ack:  # as if the agent died before the ACK reached the lock
                self.lose_next_ack = False
            else:
                self.events = [e for e in self.events if e.seq > upto]
        return FrameType.ACK, b""


# ------------------------------------------------------------------ helpers


def site_config(
    tmp_path: Path, broker: Mosquitto, lock_path: str, telemetry_s: float = 60, *, pair: bool = True
) -> SiteConfig:
    if pair:
        paired(tmp_path / "state")
    return parse_config(
        {
            "site": SITE,
            "gateway": GW,
            "state_dir": str(tmp_path / "state"),
            "mqtt": {
                "host": broker.host,
                "port": broker.port,
                "reconnect_base_s": 0.05,
                "reconnect_cap_s": 0.3,
            },
            "locks": [{"id": LOCK, "transport": f"pty:{lock_path}"}],
            "telemetry": {"interval_s": telemetry_s},
            "lock_link": {
                "request_timeout_s": 0.5,
                "reconnect_base_s": 0.05,
                "reconnect_cap_s": 0.3,
            },
        }
    )


async def within(what: str, aw: Awaitable[Any], limit_s: float = 10) -> Any:
    try:
        return await asyncio.wait_for(aw, limit_s)
    except TimeoutError:
        raise AssertionError(f"{what} did not happen within {limit_s}s") from None


async def eventually(what: str, predicate: Callable[[], bool], limit_s: float = 10) -> None:
    """Poll agent state that has no event to await (outbox depth, link down)."""

    async def poll() -> None:
        while not predicate():  # noqa: ASYNC110 - polled state has no event
            await asyncio.sleep(0.02)

    await within(what, poll(), limit_s)


@contextlib.asynccontextmanager
async def running(agent: Agent) -> AsyncIterator[Agent]:
    async with agent:
        task = asyncio.create_task(agent.run(), name="agent-under-test")
        connected = asyncio.create_task(agent.link.connected.wait())
        done, _ = await asyncio.wait({task, connected}, timeout=10, return_when="FIRST_COMPLETED")
        if task in done:
            connected.cancel()
            task.result()
        if connected not in done:
            connected.cancel()
            task.cancel()
            raise AssertionError("agent did not connect to the broker within 10s")
        try:
            yield agent
        finally:
            agent.stop()
            await within("agent stop", task, limit_s=15)


def client(broker: Mosquitto, name: str, **kwargs: Any) -> aiomqtt.Client:
    return aiomqtt.Client(
        broker.host, broker.port, identifier=name, protocol=aiomqtt.ProtocolVersion.V5, **kwargs
    )


def snapshot(version: int, grants: list[AccessGrantEntry]) -> bytes:
    data = AccessSnapshotData(version=version, locks=[LockAccess(lock_id=LOCK, grants=grants)])
    return messages.make(MessageType.ACCESS_SNAPSHOT, data, ts=time.time())


def grant(start_in: int, end_in: int) -> AccessGrantEntry:
    now = int(time.time())
    return AccessGrantEntry(
        grant_id=str(uuid.uuid4()), tag=TAG, start=now + start_in, end=now + end_in
    )


async def collect(sub: aiomqtt.Client, n: int, what: str) -> list[Any]:
    out = []

    async def take() -> None:
        async for message in sub.messages:
            out.append(messages.parse(message.payload)[1])
            if len(out) == n:
                return

    await within(what, take())
    return out


@pytest.fixture
async def peer() -> AsyncIterator[LockPeer]:
    lock = LockPeer(slot_count=2)
    yield lock
    lock.close()


# ------------------------------------------------------------------ tests


async def test_a_retained_snapshot_is_loaded_into_the_lock(
    tmp_path: Path, mosquitto: Mosquitto, peer: LockPeer
) -> None:
    ended, soon, later, latest = (
        grant(-7200, -60),
        grant(60, 3600),
        grant(7200, 9000),
        grant(90000, 99000),
    )
    async with client(mosquitto, "cloud") as cloud:
        await cloud.subscribe(topics.access_applied(SITE, GW), qos=1)
        await cloud.publish(
            topics.access(SITE, GW), snapshot(3, [latest, later, ended, soon]), qos=1, retain=True
        )
        agent = build_agent(site_config(tmp_path, mosquitto, peer.path), SystemClock())
        async with running(agent):
            (applied,) = await collect(cloud, 1, "access/applied report")
            assert applied.version == 3
            # two slots: the two soonest windows that have not ended
            assert applied.grant_ids == [soon.grant_id, later.grant_id]
            held = {e.grant_id: e for e in peer.slots.values()}
            assert set(held) == {soon.grant_id, later.grant_id}
            assert held[soon.grant_id].tag == bytes.fromhex(TAG)
            assert (held[soon.grant_id].start, held[soon.grant_id].end) == (soon.start, soon.end)
            # the lock's clock was unset; the agent's is trusted, so it set it (at the
            # connection's sync, which may have come before the snapshot did)
            assert FrameType.SET_TIME in peer.received
            assert applied.clock_offset_s is None or abs(applied.clock_offset_s) < 2
            assert set(applied.loaded_at) == {soon.grant_id, later.grant_id}
            assert applied.deferred == [latest.grant_id]


async def test_a_lock_event_is_published_once_and_acked_after_commit(
    tmp_path: Path, mosquitto: Mosquitto, peer: LockPeer
) -> None:
    config = site_config(tmp_path, mosquitto, peer.path)
    committed_before_ack: list[bool] = []

    def check_outbox(upto: int) -> None:
        key = f"event:{LOCK}:{BOOT}:{upto}"
        with contextlib.closing(sqlite3.connect(config.state_dir / "outbox.sqlite3")) as db:
            row = db.execute(
                "SELECT 1 FROM outbox WHERE dedupe_key = ? UNION "
                "SELECT 1 FROM delivered WHERE dedupe_key = ?",
                (key, key),
            ).fetchone()
        committed_before_ack.append(row is not None)

    peer.on_ack = check_outbox
    async with client(mosquitto, "cloud") as cloud:
        await cloud.subscribe(topics.events(SITE, GW), qos=1)
        agent = build_agent(config, SystemClock())
        async with running(agent):
            await eventually("lock reachable", lambda: agent.coordinators[LOCK].reachable)
            first = peer.add_event(LockEventKind.UNLOCKED)
            peer.lose_next_ack = True  # the lock sends the same event a second time
            peer.wake()
            await peer.wait_until("event 1 acknowledged", lambda: not peer.events)
            assert peer.acks.count(first.seq) == 2
            marker = peer.add_event(LockEventKind.RELOCKED)
            peer.wake()
            got = await collect(cloud, 2, "two events on the events topic")
    # ordered QoS 1 from one publisher: a duplicate of event 1 would sit before the marker
    assert [(e.lock_id, e.boot, e.seq, e.kind) for e in got] == [
        (LOCK, BOOT, first.seq, LockEventKind.UNLOCKED),
        (LOCK, BOOT, marker.seq, LockEventKind.RELOCKED),
    ]
    assert committed_before_ack == [True, True, True]


async def test_events_wait_in_the_outbox_while_the_broker_is_down(
    tmp_path: Path, mosquitto: Mosquitto, peer: LockPeer
) -> None:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    session = {"clean_start": False, "properties": props}
    async with client(mosquitto, "cloud-persistent", **session) as cloud:
        await cloud.subscribe(topics.events(SITE, GW), qos=1)
    agent = build_agent(site_config(tmp_path, mosquitto, peer.path), SystemClock())
    async with running(agent):
        await eventually("lock reachable", lambda: agent.coordinators[LOCK].reachable)
        mosquitto.stop()
        await eventually(
            "agent notices the broker is gone", lambda: not agent.link.connected.is_set()
        )
        event = peer.add_event(LockEventKind.DOOR_OPENED)
        peer.wake()
        await peer.wait_until("event acknowledged by the agent", lambda: not peer.events)
        assert agent.outbox.depth() == 1
        mosquitto.start()
        await within("agent reconnects", agent.link.connected.wait(), limit_s=15)
        await eventually("outbox drained", lambda: agent.outbox.depth() == 0)
        async with client(mosquitto, "cloud-persistent", **session) as cloud:
            (got,) = await collect(cloud, 1, "the queued event after the restart")
    assert (got.lock_id, got.seq, got.kind) == (LOCK, event.seq, LockEventKind.DOOR_OPENED)


async def test_garbage_on_the_line_is_skipped_and_counted(
    tmp_path: Path, mosquitto: Mosquitto, peer: LockPeer
) -> None:
    async with client(mosquitto, "cloud") as cloud:
        await cloud.subscribe(topics.events(SITE, GW), qos=1)
        agent = build_agent(site_config(tmp_path, mosquitto, peer.path), SystemClock())
        async with running(agent):
            coordinator = agent.coordinators[LOCK]
            await eventually("lock reachable", lambda: coordinator.reachable)
            noise = b"\x00\x01line noise\xff" * 4
            corrupted = bytearray(bytes(LockFrame(FrameType.WAKE, 0, b"xyz")))
            corrupted[8] ^= 0xFF  # CRC no longer matches
            peer.write_raw(noise + bytes(corrupted))
            event = peer.add_event(LockEventKind.DENIED_WRONG_PIN)
            peer.wake()
            (got,) = await collect(cloud, 1, "the event sent after the noise")
            assert got.seq == event.seq
            assert coordinator.stats.dropped_bytes >= len(noise)
            assert coordinator.stats.bad_frames >= 1
            assert agent.telemetry().frames_dropped >= 1
            assert coordinator.reachable


async def test_a_malformed_snapshot_is_ignored(
    tmp_path: Path, mosquitto: Mosquitto, peer: LockPeer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    good = grant(60, 3600)
    access = topics.access(SITE, GW)
    agent = build_agent(site_config(tmp_path, mosquitto, peer.path), SystemClock())
    async with client(mosquitto, "cloud") as cloud, running(agent):
        secret = b'{"v": 1, "type": "access_snapshot", "data": {"pin": "482913"}}'
        await cloud.publish(access, b"not json at all", qos=1, retain=True)
        await cloud.publish(access, secret, qos=1, retain=True)
        await cloud.publish(access, snapshot(1, [good]), qos=1, retain=True)
        await within("the good snapshot loaded", agent.coordinators[LOCK].synced.wait())
        assert [e.grant_id for e in peer.slots.values()] == [good.grant_id]
    warnings = [r.getMessage() for r in caplog.records if "malformed" in r.getMessage()]
    assert len(warnings) == 2
    assert not any("482913" in r.getMessage() for r in caplog.records)


async def test_telemetry_reports_the_lock(
    tmp_path: Path, mosquitto: Mosquitto, peer: LockPeer
) -> None:
    async with client(mosquitto, "cloud") as cloud:
        await cloud.subscribe(topics.telemetry(SITE, GW), qos=0)
        config = site_config(tmp_path, mosquitto, peer.path, telemetry_s=0.05)
        async with running(build_agent(config, SystemClock())):
            while True:
                (report,) = await collect(cloud, 1, "a telemetry report")
                if report.locks[0].reachable:
                    break
    assert report.time_trusted
    assert report.outbox_depth == 0
    (lock,) = report.locks
    assert (lock.lock_id, lock.battery_pct, lock.door_open, lock.locked_out) == (
        LOCK,
        90,
        False,
        False,
    )


async def test_a_missing_serial_device_says_what_to_do() -> None:
    with pytest.raises(LockUnreachable, match=r"lock l1 did not answer on /dev/nonexistent-tty"):
        await open_transport("serial:/dev/nonexistent-tty", lock_id="l1")
