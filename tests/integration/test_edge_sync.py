"""The sync policy against real parts: Mosquitto, the agent, and the simulated keypad lock
(:class:`firmware_sim.lock.LockFirmware`) on a pty, sharing one :class:`ManualClock`.

Twelve hours pass in microseconds: the test moves the shared clock and re-aims the
scheduler's job at the same wall-clock time (APScheduler counts on the machine's clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import pytest

from edge.agent import Agent
from edge.config import parse_config
from edge.devices.lock_coordinator import LockCoordinator
from edge.lock_keys import LockKeyRecord, LockKeyStore
from edge.main import build_agent
from edge.store import Store
from firmware_sim.lock import LockFirmware
from firmware_sim.lock.pairing import PairingRecord
from firmware_sim.lock.pty_host import LockPtyHost
from protocol import messages, topics
from protocol.clock import ManualClock
from protocol.lock_auth import LockSecrets
from protocol.messages import (
    AccessAppliedData,
    AccessGrantEntry,
    AccessSnapshotData,
    LockAccess,
    MessageType,
    SyncReason,
)
from protocol.pin import pin_tag
from tests.integration.test_edge_agent import client, eventually, running, within
from tests.support.mosquitto import Mosquitto

SITE, GW, LOCK = "gym-a", "gw-1", "gym-a-1"
SECRETS = LockSecrets(bytes.fromhex("3c" * 32), bytes.fromhex("8f" * 32), bytes.fromhex("a1" * 32))
HOUR = 3600
# a day at the gym, in UTC for readability: DAY + 8 * HOUR is 08:00
DAY = int(datetime(2027, 6, 1, tzinfo=UTC).timestamp())


def at(hour: float) -> int:
    return DAY + int(hour * HOUR)


def pin_grant(pin: str, start_h: float, end_h: float) -> AccessGrantEntry:
    tag = pin_tag(SECRETS.pin_key, pin).hex()
    return AccessGrantEntry(grant_id=str(uuid.uuid4()), tag=tag, start=at(start_h), end=at(end_h))


@dataclass
class Gym:
    """One site: the shared clock, the lock at the door, the agent, the cloud's side."""

    clock: ManualClock
    host: LockPtyHost
    agent: Agent
    cloud: aiomqtt.Client
    applied: list[AccessAppliedData] = field(default_factory=list)
    version: int = 0
    seen: int = 0  # reports before this index were returned by report() already

    @property
    def lock(self) -> LockFirmware:
        return self.host.firmware

    @property
    def coordinator(self) -> LockCoordinator:
        return self.agent.coordinators[LOCK]

    def on_lock(self) -> set[str]:
        return {e.grant_id for e in self.lock.slots.values() if e.grant_id is not None}

    async def settle(self) -> None:
        """Wait until the agent owes the lock nothing (wakes handled, syncs done)."""
        await eventually("the agent idle", lambda: self.coordinator.idle)

    async def publish(self, *grants: AccessGrantEntry) -> None:
        """The cloud publishes a new snapshot; returns once the agent has decided on it."""
        self.version += 1
        data = AccessSnapshotData(
            version=self.version, locks=[LockAccess(lock_id=LOCK, grants=list(grants))]
        )
        payload = messages.make(MessageType.ACCESS_SNAPSHOT, data, ts=self.clock.now())
        await self.cloud.publish(topics.access(SITE, GW), payload, qos=1, retain=True)
        version = self.version
        await eventually(
            f"the agent deciding on snapshot v{version}",
            lambda: (d := self.coordinator.last_decision) is not None and d.version == version,
        )
        await self.settle()

    async def report(self, version: int, reason: SyncReason) -> AccessAppliedData:
        """The next ``access/applied`` report of ``version`` for ``reason`` not yet taken."""

        def index() -> int | None:
            for i in range(self.seen, len(self.applied)):
                if (self.applied[i].version, self.applied[i].reason) == (version, reason):
                    return i
            return None

        await eventually(f"applied v{version} ({reason.value})", lambda: index() is not None)
        found = index()
        assert found is not None
        self.seen = found + 1
        return self.applied[found]

    def next_sync_at(self) -> float | None:
        return self.agent.schedule.next_sync_at(LOCK)

    async def advance_to(self, when: int) -> None:
        """Move the clock to ``when``; the scheduled sync keeps its time on that clock.

        A sync that falls due on the way is the test's to run (:meth:`scheduled_sync`):
        the job is moved on by its interval, as if the scheduler had fired it.
        """
        scheduled = self.next_sync_at()
        self.clock.set(when)
        if scheduled is None:
            return
        interval = self.agent.config.sync.full_sync_interval_s
        while scheduled <= when:
            scheduled += interval
        job = self.agent.schedule.job(LOCK)
        job.modify(next_run_time=self.agent.schedule.machine_time(scheduled))

    async def scheduled_sync(self) -> None:
        """What the scheduler does when the job is due: call its coroutine."""
        job = self.agent.schedule.job(LOCK)
        await job.func(*job.args, **job.kwargs)
        await self.settle()

    def type_pin(self, pin: str) -> str:
        return self.host.press(pin + "#").display


@contextlib.asynccontextmanager
async def gym(
    tmp_path: Path,
    broker: Mosquitto,
    *,
    start: int,
    grants: tuple[AccessGrantEntry, ...] = (),
    slot_count: int = 32,
    jitter_s: float = 0,
    agent_clock: ManualClock | None = None,
) -> AsyncIterator[Gym]:
    """A site whose lock connects at ``start`` and is loaded with ``grants`` (v1, which
    the agent already holds, as after a restart: so the first sync is deterministic)."""
    clock = ManualClock(start)
    state = tmp_path / "state"
    LockKeyStore(state).save(LockKeyRecord(LOCK, SECRETS.link_key, 0, int(time.time())))
    store = Store(state / "state.sqlite3")
    store.open()
    store.save_snapshot(
        AccessSnapshotData(version=1, locks=[LockAccess(lock_id=LOCK, grants=list(grants))])
    )
    store.close()
    firmware = LockFirmware(clock, PairingRecord(SECRETS), slot_count=slot_count)
    async with LockPtyHost(LOCK, firmware, tick_s=0.05) as host:
        config = parse_config(
            {
                "site": SITE,
                "gateway": GW,
                "state_dir": str(state),
                "mqtt": {"host": broker.host, "port": broker.port, "reconnect_base_s": 0.05},
                "locks": [{"id": LOCK, "transport": f"pty:{host.path}"}],
                # no fallback poll and no awake window: only the policy moves the lock
                "sync": {"jitter_s": jitter_s, "awake_s": 0, "event_poll_s": 3600},
                "lock_link": {"request_timeout_s": 0.5, "reconnect_base_s": 0.05},
            }
        )
        agent = build_agent(config, agent_clock or clock)
        async with client(broker, "cloud") as cloud:
            await cloud.subscribe(topics.access_applied(SITE, GW), qos=1)
            site = Gym(clock, host, agent, cloud, version=1)
            reader = asyncio.create_task(_read_applied(cloud, site.applied))
            try:
                async with running(agent):
                    await within("the first sync", site.coordinator.synced.wait())
                    await site.settle()
                    yield site
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader


async def _read_applied(cloud: aiomqtt.Client, into: list[AccessAppliedData]) -> None:
    async for message in cloud.messages:
        _, data = messages.parse(message.payload)
        assert isinstance(data, AccessAppliedData)
        into.append(data)


# ------------------------------------------------------------------ tests


async def test_booked_at_18_for_19_opens_the_door_at_19(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with gym(tmp_path, mosquitto, start=at(8)) as site:
        # the lock was last synced at 08:00; its next scheduled sync is 12 h later
        assert site.next_sync_at() == pytest.approx(at(20), abs=2)
        await site.advance_to(at(18))
        booking = pin_grant("480915", 18.75, 20.25)  # 19:00-20:00 with 15 min margins
        await site.publish(booking)

        decision = site.coordinator.last_decision
        assert decision is not None
        assert decision.reason is not None
        applied = await site.report(2, SyncReason.CHANGE)
        assert applied.grant_ids == [booking.grant_id]
        assert applied.loaded_at == {booking.grant_id: at(18)}
        assert site.on_lock() == {booking.grant_id}

        await site.advance_to(at(19))
        assert site.type_pin("480915") == "OPEN"
        assert not site.lock.view().locked


async def test_a_window_after_the_next_sync_waits_for_that_sync(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    early = pin_grant("730264", 9, 10)
    async with gym(tmp_path, mosquitto, start=at(8), grants=(early,)) as site:
        await site.advance_to(at(18))
        syncs = site.coordinator.sync_count
        late = pin_grant("615028", 21, 22)  # starts after the 20:00 sync
        await site.publish(early, late)

        decision = site.coordinator.last_decision
        assert decision is not None
        assert decision.reason is None
        assert site.coordinator.sync_count == syncs  # the lock was not woken
        assert late.grant_id not in site.on_lock()

        await site.advance_to(at(20))
        await site.scheduled_sync()
        applied = await site.report(2, SyncReason.SCHEDULED)
        assert applied.grant_ids == [late.grant_id]  # 09:00-10:00 has ended and was dropped
        assert site.on_lock() == {late.grant_id}
        await site.advance_to(at(21.5))
        assert site.type_pin("615028") == "OPEN"


async def test_a_keypad_wake_loads_a_changed_snapshot(tmp_path: Path, mosquitto: Mosquitto) -> None:
    async with gym(tmp_path, mosquitto, start=at(8)) as site:
        await site.advance_to(at(18))
        tomorrow = pin_grant("480915", 34, 35)
        await site.publish(tomorrow)
        assert tomorrow.grant_id not in site.on_lock()

        site.host.press("*")  # someone touches the keypad: the lock wakes the gateway
        applied = await site.report(2, SyncReason.KEYPAD)
        assert applied.grant_ids == [tomorrow.grant_id]
        assert site.on_lock() == {tomorrow.grant_id}

        # a wake with nothing new to load does not sync again
        syncs = site.coordinator.sync_count
        wakes = site.coordinator.wakes
        site.host.press("*")
        await eventually("the wake handled", lambda: site.coordinator.wakes > wakes)
        await site.settle()
        assert site.coordinator.sync_count == syncs


async def test_more_grants_than_slots_the_soonest_are_loaded(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    ended = pin_grant("111358", 6, 7)
    soon = [pin_grant(pin, h, h + 1) for pin, h in (("204681", 9), ("305792", 10))]
    later = [pin_grant(pin, h, h + 1) for pin, h in (("406813", 11), ("507924", 12))]
    latest = [pin_grant(pin, h, h + 1) for pin, h in (("609135", 13), ("700246", 14))]
    everything = (ended, *latest, *later, *soon)
    async with gym(tmp_path, mosquitto, start=at(8), grants=everything, slot_count=4) as site:
        applied = await site.report(1, SyncReason.CONNECT)
        expected = [g.grant_id for g in (*soon, *later)]
        assert applied.grant_ids == expected
        assert applied.deferred == [g.grant_id for g in latest]
        assert site.on_lock() == set(expected)

        # 11:00: the first two windows have ended; their slots go to the next two
        await site.advance_to(at(11))
        await site.scheduled_sync()
        applied = await site.report(1, SyncReason.SCHEDULED)
        expected = [g.grant_id for g in (*later, *latest)]
        assert applied.grant_ids == expected
        assert applied.deferred == []
        assert site.on_lock() == set(expected)
        # the two that stayed were not rewritten: loaded at 08:00, the others at 11:00
        assert applied.loaded_at == {
            later[0].grant_id: at(8),
            later[1].grant_id: at(8),
            latest[0].grant_id: at(11),
            latest[1].grant_id: at(11),
        }


async def test_cancelled_at_1830_for_19_the_pin_is_refused_at_19(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    booking = pin_grant("480915", 18.75, 20.25)
    other = pin_grant("730264", 23, 24)
    async with gym(tmp_path, mosquitto, start=at(8), grants=(booking, other)) as site:
        assert site.on_lock() == {booking.grant_id, other.grant_id}
        await site.advance_to(at(18.5))
        await site.publish(other)  # the manager cancelled the 19:00 booking

        decision = site.coordinator.last_decision
        assert decision is not None
        assert decision.reason is not None
        applied = await site.report(2, SyncReason.CHANGE)
        assert applied.grant_ids == [other.grant_id]
        assert site.on_lock() == {other.grant_id}

        await site.advance_to(at(19))
        assert site.type_pin("480915") == "DENIED"
        assert site.lock.view().locked


async def test_the_full_sync_job_runs_every_12_hours_with_jitter(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with gym(tmp_path, mosquitto, start=at(8), jitter_s=900) as site:
        job = site.agent.schedule.job(LOCK)
        assert job.trigger.interval == timedelta(hours=12)
        assert job.trigger.jitter == 900
        assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, None)
        assert str(site.agent.schedule.scheduler.timezone) == "UTC"
        remaining = (job.next_run_time - datetime.now(UTC)).total_seconds()
        assert 12 * HOUR - 5 <= remaining <= 12 * HOUR + 900
        assert site.agent.telemetry().locks[0].next_sync_at == pytest.approx(
            at(8) + remaining, abs=5
        )

        booking = pin_grant("480915", 30, 31)  # tomorrow: no reason to wake the lock now
        await site.publish(booking)
        assert booking.grant_id not in site.on_lock()
        await site.advance_to(at(20))
        await site.scheduled_sync()
        applied = await site.report(2, SyncReason.SCHEDULED)
        assert applied.grant_ids == [booking.grant_id]
        assert site.agent.telemetry().locks[0].last_sync_at == at(20)


async def test_drift_is_measured_reported_and_corrected(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with gym(tmp_path, mosquitto, start=at(8)) as site:
        connect = await site.report(1, SyncReason.CONNECT)
        assert connect.clock_offset_s is None  # a lock fresh from pairing had no time
        assert connect.clock_set is True
        assert site.lock.lock_time() == at(8)

        await site.advance_to(at(20))
        site.lock.set_time(at(20) + 42)  # its quartz ran 42 s fast over 12 hours
        await site.settle()
        await site.scheduled_sync()
        applied = await site.report(1, SyncReason.SCHEDULED)
        assert applied.clock_offset_s == pytest.approx(42, abs=1)
        assert applied.clock_set is True
        assert site.lock.lock_time() == at(20)
        lock = site.agent.telemetry().locks[0]
        assert lock.clock_drift_s == pytest.approx(42, abs=1)
        assert lock.clock_offset_s == pytest.approx(0, abs=1)

        # a clock within the lock's one-second resolution is left alone
        await site.advance_to(at(32))
        await site.scheduled_sync()
        applied = await site.report(1, SyncReason.SCHEDULED)
        assert applied.clock_set is False
        assert applied.clock_offset_s == pytest.approx(0, abs=1)


async def test_an_agent_without_trusted_time_leaves_the_lock_clock_alone(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    booted_in_1970 = ManualClock(3600)
    async with gym(tmp_path, mosquitto, start=at(8), agent_clock=booted_in_1970) as site:
        site.lock.set_time(at(8))
        await site.settle()
        await site.scheduled_sync()
        assert site.coordinator.last_sync is not None
        assert site.coordinator.last_sync.clock_set is False
        assert site.lock.lock_time() == at(8)
        assert site.agent.telemetry().time_trusted is False
