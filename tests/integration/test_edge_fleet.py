"""The agent's side of the fleet against real parts: Mosquitto, the agent as
``edge.main.build_agent`` builds it, the simulated keypad lock (and a call-number display)
on real ptys. The test plays the cloud with a plain aiomqtt client: commands on
``req/{verb}``, replies on ``res/{verb}``, the config twin on ``config``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest

from edge.agent import Agent
from edge.agent_config import AGENT_LOGGER
from edge.commands import EXIT_RESTART
from edge.config import parse_config
from edge.lock_keys import LockKeyRecord, LockKeyStore
from edge.main import build_agent
from edge.store import Store
from firmware_sim.display.firmware import DisplayFirmware
from firmware_sim.display.pty_host import DisplayPtyHost
from firmware_sim.lock import LockFirmware
from firmware_sim.lock.pairing import PairingRecord
from firmware_sim.lock.pty_host import LockPtyHost
from protocol import firmware_image as fi
from protocol import messages, topics
from protocol.clock import ManualClock
from protocol.lock_auth import LockSecrets
from protocol.messages import (
    AccessGrantEntry,
    AccessSnapshotData,
    AgentConfigData,
    CommandReplyData,
    CommandRequestData,
    CommandStatus,
    DisplayContent,
    DisplaySettings,
    DisplayStateData,
    LockAccess,
    LockEventData,
    LockEventKind,
    MessageType,
    OpeningHours,
    SyncSettings,
    TelemetryData,
)
from protocol.pin import pin_tag
from tests.integration.test_edge_agent import client, eventually, running, within
from tests.strategies import TEST_RELEASE_KEY as RELEASE
from tests.support.displays import pair_hosted_display
from tests.support.mosquitto import Mosquitto

SITE, GW, LOCK, DISPLAY = "gym-a", "gw-1", "gym-a-1", "gym-a-disp-1"
SECRETS = LockSecrets(bytes.fromhex("3c" * 32), bytes.fromhex("8f" * 32), bytes.fromhex("a1" * 32))
MODEL = "RL-2000"
HOUR = 3600
# Tuesday 2027-06-01 10:00 in Tokyo
NOW = int(datetime(2027, 6, 1, 1, 0, tzinfo=UTC).timestamp())


def pin_grant(pin: str, start: int, end: int) -> AccessGrantEntry:
    tag = pin_tag(SECRETS.pin_key, pin).hex()
    return AccessGrantEntry(grant_id=str(uuid.uuid4()), tag=tag, start=start, end=end)


def image(kind: fi.DeviceKind, model: str, version: str) -> str:
    built = fi.build_image(RELEASE, kind=kind, model=model, version=version, payload=bytes(3000))
    return base64.b64encode(bytes(built)).decode()


@dataclass
class Site:
    """One gateway with its lock (and display), and the cloud's end of the broker."""

    clock: ManualClock
    lock_host: LockPtyHost
    agent: Agent
    cloud: aiomqtt.Client
    display_host: DisplayPtyHost | None = None
    replies: list[tuple[str, CommandReplyData, bytes]] = field(default_factory=list)
    events: list[LockEventData] = field(default_factory=list)
    telemetry: list[TelemetryData] = field(default_factory=list)
    version: int = 1

    @property
    def lock(self) -> LockFirmware:
        return self.lock_host.firmware

    def on_lock(self) -> set[str]:
        return {e.grant_id for e in self.lock.slots.values() if e.grant_id is not None}

    def request(
        self, data: dict[str, Any], *, transaction: str | None = None, expires_in: float = 60
    ) -> tuple[str, bytes]:
        txn = transaction or f"tx-{uuid.uuid4().hex[:12]}"
        body = CommandRequestData(
            transaction=txn, expires_at=int(self.clock.now() + expires_in), data=data
        )
        return txn, messages.make(MessageType.COMMAND, body, ts=self.clock.now())

    async def send(self, verb: str, payload: bytes) -> None:
        await self.cloud.publish(topics.request(SITE, GW, verb), payload, qos=1)

    async def reply(
        self, transaction: str, count: int = 1, limit_s: float = 10
    ) -> CommandReplyData:
        """The ``count``-th reply to ``transaction``."""
        await eventually(
            f"reply {count} to {transaction}",
            lambda: len(self.replies_to(transaction)) >= count,
            limit_s,
        )
        return self.replies_to(transaction)[count - 1]

    def replies_to(self, transaction: str) -> list[CommandReplyData]:
        return [r for _, r, _ in self.replies if r.transaction == transaction]

    async def command(
        self, verb: str, data: dict[str, Any], *, limit_s: float = 10, expires_in: float = 60
    ) -> CommandReplyData:
        txn, payload = self.request(data, expires_in=expires_in)
        await self.send(verb, payload)
        return await self.reply(txn, limit_s=limit_s)

    async def publish_snapshot(self, *grants: AccessGrantEntry) -> str:
        """Publish the next snapshot; its envelope id once the agent decided on it."""
        self.version += 1
        data = AccessSnapshotData(
            version=self.version, locks=[LockAccess(lock_id=LOCK, grants=list(grants))]
        )
        envelope_id = uuid.uuid4().hex
        payload = messages.make(
            MessageType.ACCESS_SNAPSHOT, data, ts=self.clock.now(), message_id=envelope_id
        )
        await self.cloud.publish(topics.access(SITE, GW), payload, qos=1, retain=True)
        version = self.version
        coordinator = self.agent.coordinators[LOCK]
        await eventually(
            f"snapshot v{version} decided",
            lambda: (d := coordinator.last_decision) is not None and d.version == version,
        )
        await eventually("the lock idle", lambda: coordinator.idle)
        return envelope_id

    async def publish_config(self, config: AgentConfigData | bytes) -> None:
        payload = (
            config
            if isinstance(config, bytes)
            else messages.make(MessageType.AGENT_CONFIG, config, ts=self.clock.now())
        )
        await self.cloud.publish(topics.config(SITE, GW), payload, qos=1, retain=True)


async def _read(cloud: aiomqtt.Client, site: Site) -> None:
    with contextlib.suppress(aiomqtt.MqttError):  # the broker stopped (the metrics test)
        await _take_messages(cloud, site)


async def _take_messages(cloud: aiomqtt.Client, site: Site) -> None:
    async for message in cloud.messages:
        assert isinstance(message.payload, bytes)
        _, data = messages.parse(message.payload)
        if isinstance(data, CommandReplyData):
            verb = str(message.topic).rsplit("/", 1)[1]
            site.replies.append((verb, data, message.payload))
        elif isinstance(data, LockEventData):
            site.events.append(data)
        elif isinstance(data, TelemetryData):
            site.telemetry.append(data)


def agent_config(state: Path, broker: Mosquitto, lock_path: str, display_path: str | None) -> Any:
    raw: dict[str, Any] = {
        "site": SITE,
        "gateway": GW,
        "state_dir": str(state),
        "mqtt": {"host": broker.host, "port": broker.port, "reconnect_base_s": 0.05},
        "locks": [{"id": LOCK, "transport": f"pty:{lock_path}"}],
        "sync": {"jitter_s": 0, "awake_s": 0, "event_poll_s": 3600},
        "lock_link": {"request_timeout_s": 0.5, "reconnect_base_s": 0.05},
        "metrics": {"port": 0},
    }
    if display_path is not None:
        raw["displays"] = [{"id": DISPLAY, "transport": f"pty:{display_path}"}]
        raw["display_link"] = {"reconnect_base_s": 0.05}
    return parse_config(raw)


@contextlib.asynccontextmanager
async def site(
    tmp_path: Path,
    broker: Mosquitto,
    *,
    grants: tuple[AccessGrantEntry, ...] = (),
    with_display: bool = False,
) -> AsyncIterator[Site]:
    """The gateway at ``NOW`` with ``grants`` in its stored snapshot v1 (so the lock is
    loaded at connection), its lock (RL-2000 1.4.1, trusting the test release key)."""
    clock = ManualClock(NOW)
    state = tmp_path / "state"
    LockKeyStore(state).save(LockKeyRecord(LOCK, SECRETS.link_key, 0, int(time.time())))
    store = Store(state / "state.sqlite3")
    store.open()
    store.save_snapshot(
        AccessSnapshotData(version=1, locks=[LockAccess(lock_id=LOCK, grants=list(grants))])
    )
    store.close()
    lock = LockFirmware(
        clock,
        PairingRecord(SECRETS),
        model=MODEL,
        firmware="1.4.1",
        release_keys=[RELEASE.public_key()],
    )
    display = DisplayFirmware(clock, release_keys=[RELEASE.public_key()])
    async with contextlib.AsyncExitStack() as stack:
        lock_host = await stack.enter_async_context(LockPtyHost(LOCK, lock, tick_s=0.05))
        display_host = None
        if with_display:
            display_host = await stack.enter_async_context(
                DisplayPtyHost(DISPLAY, display, tick_s=0.05)
            )
            await pair_hosted_display(display_host, state, clock)
        config = agent_config(
            state, broker, lock_host.path, None if display_host is None else display_host.path
        )
        agent = build_agent(config, clock)
        cloud = await stack.enter_async_context(client(broker, "cloud"))
        await cloud.subscribe(f"denen/v1/{SITE}/{GW}/res/+", qos=1)
        await cloud.subscribe(topics.events(SITE, GW), qos=1)
        await cloud.subscribe(topics.telemetry(SITE, GW), qos=0)
        here = Site(clock, lock_host, agent, cloud, display_host)
        reader = asyncio.create_task(_read(cloud, here))
        try:
            async with running(agent):
                await within("the first sync", agent.coordinators[LOCK].synced.wait())
                await eventually("the lock idle", lambda: agent.coordinators[LOCK].idle)
                if with_display:
                    await eventually("the display", lambda: agent.displays[DISPLAY].reachable)
                yield here
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


# ------------------------------------------------------------------ commands


async def test_force_sync_loads_the_lock_now_and_replies_with_what_it_holds(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    today = pin_grant("480915", NOW + HOUR, NOW + 2 * HOUR)
    async with site(tmp_path, mosquitto, grants=(today,)) as gym:
        tomorrow = pin_grant("615028", NOW + 26 * HOUR, NOW + 27 * HOUR)
        envelope_id = await gym.publish_snapshot(today, tomorrow)
        assert tomorrow.grant_id not in gym.on_lock()  # it waits for the 12-hour sync

        reply = await gym.command("force-sync", {})

        assert reply.status is CommandStatus.OK, reply.error
        (held,) = reply.data["locks"]
        assert held["lock_id"] == LOCK
        assert held["synced"] is True
        assert held["version"] == 2
        assert held["grant_ids"] == [today.grant_id, tomorrow.grant_id]
        assert gym.on_lock() == {today.grant_id, tomorrow.grant_id}

        unknown = await gym.command("force-sync", {"lock_id": "gym-z-9"})
        assert unknown.status is CommandStatus.REJECTED
        assert unknown.error == "no lock gym-z-9 at this gateway"

        # each message was handled under its own id: the snapshot's, the command's
        logs = await gym.command("logs", {"lines": 500})
        lines = [json.loads(line) for line in logs.data["lines"]]
        (stored,) = [line for line in lines if line["msg"].startswith("access snapshot v2 stored")]
        assert stored["trace_id"] == envelope_id
        synced = [line for line in lines if "command sync to snapshot v2" in line["msg"]]
        assert synced
        assert synced[0]["trace_id"].startswith("tx-")


async def test_an_emergency_unlock_opens_the_door_is_audited_and_logs_return_it(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with site(tmp_path, mosquitto) as gym:
        assert gym.lock.view().locked
        txn, payload = gym.request(
            {"lock_id": LOCK, "reason": "child locked in the gym", "requested_by": "ops-tanaka"}
        )
        await gym.send("unlock", payload)
        reply = await gym.reply(txn)

        assert reply.status is CommandStatus.OK, reply.error
        assert not gym.lock.view().locked
        assert gym.lock_host.door(open_=True)  # the door opens from outside
        seq = reply.data["event_seq"]
        await eventually(
            "the remote_unlocked event on the events topic",
            lambda: any(e.seq == seq for e in gym.events),
        )
        (event,) = [e for e in gym.events if e.seq == seq]
        assert (event.lock_id, event.kind) == (LOCK, LockEventKind.REMOTE_UNLOCKED)

        logs = await gym.command("logs", {"lines": 200})
        assert logs.status is CommandStatus.OK
        lines = [json.loads(line) for line in logs.data["lines"]]
        audit = [
            line for line in lines if "emergency remote unlock" in line["msg"]
        ]  # who asked and why, under the command's transaction
        assert len(audit) == 1
        assert "ops-tanaka" in audit[0]["msg"]
        assert "child locked in the gym" in audit[0]["msg"]
        assert audit[0]["trace_id"] == txn
        assert any(line["logger"] == "edge.mqtt_link" for line in lines)
        assert (await gym.command("logs", {"lines": 3})).data["lines"] != []
        assert len((await gym.command("logs", {"lines": 3})).data["lines"]) == 3


async def test_revoke_pin_makes_the_pin_fail_on_the_keypad_at_once(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    booking = pin_grant("480915", NOW - HOUR, NOW + HOUR)
    async with site(tmp_path, mosquitto, grants=(booking,)) as gym:
        assert gym.lock_host.press("480915#").display == "OPEN"
        gym.clock.advance(10)  # the lock relocks itself
        gym.lock.tick()
        assert gym.lock.view().locked

        reply = await gym.command("revoke-pin", {"lock_id": LOCK, "grant_id": booking.grant_id})

        assert reply.status is CommandStatus.OK, reply.error
        assert reply.data["was_on_lock"] is True
        assert reply.data["grant_ids"] == []
        assert gym.lock_host.press("480915#").display == "DENIED"
        assert gym.lock.view().locked

        # a snapshot that still lists it (the cloud's own revocation not in yet) keeps it off
        await gym.publish_snapshot(booking)
        await gym.command("force-sync", {"lock_id": LOCK})
        assert booking.grant_id not in gym.on_lock()


async def test_a_duplicate_transaction_acts_once_and_gets_the_same_reply(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with site(tmp_path, mosquitto) as gym:
        txn, payload = gym.request({"lock_id": LOCK, "reason": "test", "requested_by": "ops-1"})
        await gym.send("unlock", payload)
        first = await gym.reply(txn)
        await gym.send("unlock", payload)  # the broker delivers it again
        second = await gym.reply(txn, count=2)

        assert first.status is CommandStatus.OK
        assert second == first
        raw = [body for _, r, body in gym.replies if r.transaction == txn]
        assert raw[0] == raw[1]  # the same message, the same envelope id
        await eventually("the event drained", lambda: gym.lock.events.pending == 0)
        unlocks = [e for e in gym.events if e.kind is LockEventKind.REMOTE_UNLOCKED]
        assert len(unlocks) == 1


async def test_an_expired_command_is_answered_expired_and_not_carried_out(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with site(tmp_path, mosquitto) as gym:
        reply = await gym.command(
            "unlock",
            {"lock_id": LOCK, "reason": "late", "requested_by": "ops-1"},
            expires_in=-30,
        )
        assert reply.status is CommandStatus.EXPIRED
        assert reply.error == "received 30 s after it expired"
        assert gym.lock.view().locked
        assert LockEventKind.REMOTE_UNLOCKED not in [e.kind for e in gym.lock.events.oldest(99)]


async def test_malformed_commands_are_rejected_with_a_reason_and_the_link_lives_on(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with site(tmp_path, mosquitto) as gym:
        unknown = await gym.command("reboot-the-city", {})
        assert unknown.status is CommandStatus.REJECTED
        assert unknown.error == "unknown verb 'reboot-the-city'"

        no_reason = await gym.command("unlock", {"lock_id": LOCK, "requested_by": "ops-1"})
        assert no_reason.status is CommandStatus.REJECTED
        assert no_reason.error is not None
        assert "reason: Field required" in no_reason.error

        bad_image = await gym.command("firmware-update", {"lock_id": LOCK, "image": "!!!!"})
        assert bad_image.status is CommandStatus.REJECTED
        assert bad_image.error is not None
        assert "image is not base64" in bad_image.error

        # not a command at all, but it names its transaction: answered
        envelope = {"v": 1, "type": "command", "id": "x", "ts": 1, "data": {"transaction": "t-7"}}
        await gym.send("unlock", json.dumps(envelope).encode())
        broken = await gym.reply("t-7")
        assert broken.status is CommandStatus.REJECTED
        assert broken.error is not None
        assert "expires_at" in broken.error

        await gym.send("unlock", b"\xff not json")  # nothing to answer to: dropped
        assert (await gym.command("force-sync", {})).status is CommandStatus.OK
        assert gym.lock.view().locked


async def test_a_restart_command_is_answered_then_the_agent_exits_to_be_restarted(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    path = tmp_path / "site.toml"
    path.write_text(
        f'site = "{SITE}"\ngateway = "{GW}"\nstate_dir = "{tmp_path / "state"}"\n'
        f'[mqtt]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\n'
        "[metrics]\nport = 0\n"
    )
    async with client(mosquitto, "cloud") as cloud:
        await cloud.subscribe(topics.status(SITE, GW), qos=1)
        await cloud.subscribe(topics.response(SITE, GW, "restart"), qos=1)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge.main", "--config", str(path),
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            replies: list[CommandReplyData] = []

            async def take() -> None:
                async for message in cloud.messages:
                    assert isinstance(message.payload, bytes)
                    _, data = messages.parse(message.payload)
                    if getattr(data, "state", None) == "online":
                        body = CommandRequestData(
                            transaction="restart-1", expires_at=int(time.time()) + 60
                        )
                        payload = messages.make(MessageType.COMMAND, body, ts=time.time())
                        await cloud.publish(topics.request(SITE, GW, "restart"), payload, qos=1)
                    if isinstance(data, CommandReplyData):
                        replies.append(data)
                        return

            await within("the restart reply", take())
            _, err = await within("the agent exits", proc.communicate(), limit_s=15)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    (reply,) = replies
    assert reply.status is CommandStatus.OK
    assert reply.data == {"exit_status": EXIT_RESTART}
    assert proc.returncode == EXIT_RESTART, err.decode()[-2000:]


# ------------------------------------------------------------------ firmware


async def test_a_firmware_update_installs_a_signed_image_and_reports_the_version(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    tonight = pin_grant("480915", NOW + 8 * HOUR, NOW + 9 * HOUR)
    async with site(tmp_path, mosquitto, grants=(tonight,)) as gym:
        reply = await gym.command(
            "firmware-update", {"lock_id": LOCK, "image": image(fi.DeviceKind.LOCK, MODEL, "1.4.2")}
        )

        assert reply.status is CommandStatus.OK, reply.error
        assert reply.data == {
            "device_id": LOCK,
            "kind": "lock",
            "previous": "1.4.1",
            "version": "1.4.2",
            "installed": True,
        }
        assert gym.lock.firmware == "1.4.2"
        assert gym.agent.telemetry().locks[0].firmware == "1.4.2"
        assert gym.on_lock() == {tonight.grant_id}  # its PINs survived the update

        again = await gym.command(
            "firmware-update", {"lock_id": LOCK, "image": image(fi.DeviceKind.LOCK, MODEL, "1.4.1")}
        )
        assert again.status is CommandStatus.ERROR  # a downgrade, refused by the lock
        assert again.error is not None
        assert "not newer" in again.error
        assert gym.lock.firmware == "1.4.2"


async def test_a_lock_update_is_refused_while_a_booking_window_is_open(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    now_playing = pin_grant("480915", NOW - HOUR, NOW + HOUR)
    async with site(tmp_path, mosquitto, grants=(now_playing,)) as gym:
        reply = await gym.command(
            "firmware-update", {"lock_id": LOCK, "image": image(fi.DeviceKind.LOCK, MODEL, "1.4.2")}
        )
        assert reply.status is CommandStatus.REJECTED
        assert reply.error == (
            f"a booking window is open on lock {LOCK} until {NOW + HOUR}: "
            "lock updates wait until no booking is running"
        )
        assert gym.lock.firmware == "1.4.1"


async def test_a_display_update_waits_for_the_clinic_to_close(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with site(tmp_path, mosquitto, with_display=True) as gym:
        assert gym.display_host is not None
        hours = OpeningHours(open_minute=8 * 60 + 30, close_minute=18 * 60)  # 10:00 is inside
        await gym.publish_config(AgentConfigData(version=1, clinic_hours=hours))
        await eventually("config v1", lambda: gym.agent.twin.version == 1)
        update = {
            "display_id": DISPLAY,
            "image": image(fi.DeviceKind.DISPLAY, "denen-sim-display", "0.2.0"),
        }

        refused = await gym.command("firmware-update", update)
        assert refused.status is CommandStatus.REJECTED
        assert refused.error is not None
        assert "clinic is open" in refused.error

        gym.clock.advance(9 * HOUR)  # 19:00: closed
        reply = await gym.command("firmware-update", update)
        assert reply.status is CommandStatus.OK, reply.error
        assert (reply.data["previous"], reply.data["version"]) == ("sim-0.1.0", "0.2.0")
        assert gym.display_host.firmware.firmware == "0.2.0"
        (display,) = gym.agent.telemetry().displays
        assert (display.display_id, display.reachable, display.firmware) == (DISPLAY, True, "0.2.0")


# ------------------------------------------------------------------ config twin


@pytest.fixture
def agent_log_level() -> Iterator[None]:
    """The twin sets the agent's log level; the next test starts from the default."""
    yield
    logging.getLogger(AGENT_LOGGER).setLevel(logging.NOTSET)


@pytest.mark.usefixtures("agent_log_level")
async def test_the_config_twin_is_applied_persisted_reported_and_a_bad_one_refused(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with site(tmp_path, mosquitto, with_display=True) as gym:
        screen = gym.display_host
        assert screen is not None
        shown = DisplayStateData(version=1, displays=[DisplayContent(display_id=DISPLAY)])
        await gym.cloud.publish(
            topics.display(SITE, GW),
            messages.make(MessageType.DISPLAY_STATE, shown, ts=gym.clock.now()),
            qos=1,
            retain=True,
        )
        await eventually("the state shown", lambda: screen.view().state_version == 1)
        assert screen.view().set_brightness == 100
        config = AgentConfigData(
            version=3,
            telemetry_interval_s=1,
            sync=SyncSettings(full_sync_interval_s=6 * HOUR, event_poll_s=120),
            display=DisplaySettings(brightness=40),
            log_level="INFO",
        )
        await gym.publish_config(config)
        await eventually(
            "telemetry reporting config v3",
            lambda: any(t.config_version == 3 for t in gym.telemetry),
        )
        report = next(t for t in gym.telemetry if t.config_version == 3)
        assert report.config_hash == gym.agent.twin.digest
        assert report.config_error is None
        coordinator = gym.agent.coordinators[LOCK]
        assert coordinator.sync_config.event_poll_s == 120
        assert coordinator.sync_config.full_sync_interval_s == 6 * HOUR
        assert gym.agent.schedule.job(LOCK).trigger.interval.total_seconds() == 6 * HOUR
        await eventually("the display dimmed", lambda: screen.view().set_brightness == 40)
        (display,) = report.displays
        assert display.reachable
        assert display.firmware == "sim-0.1.0"
        assert report.locks[0].firmware == "1.4.1"
        assert report.outbox_depth == 0

        # settings that do not fit together: refused, v3 keeps running, the error reported
        gym.telemetry.clear()
        await gym.publish_config(
            AgentConfigData(version=4, sync=SyncSettings(full_sync_interval_s=600, jitter_s=900))
        )
        await eventually("the refusal reported", lambda: any(t.config_error for t in gym.telemetry))
        refused = next(t for t in gym.telemetry if t.config_error)
        assert refused.config_version == 3
        assert refused.config_error is not None
        assert refused.config_error.startswith("config v4 refused: sync.jitter_s (900)")
        await gym.publish_config(b'{"v": 1, "type": "agent_config", "data": {"version": 5}}')
        await eventually(
            "the malformed one reported",
            lambda: (gym.agent.twin.error or "").startswith("config v5 refused: invalid message"),
        )
        assert gym.agent.twin.version == 3
        assert gym.agent.coordinators[LOCK].sync_config.full_sync_interval_s == 6 * HOUR

    # persisted: a restarted agent runs v3 before it reaches the broker
    restarted = build_agent(gym.agent.config, gym.clock)
    async with restarted:
        assert restarted.twin.version == 3
        assert restarted.twin.current.display.brightness == 40
        assert restarted.schedule.config.full_sync_interval_s == 6 * HOUR


# ------------------------------------------------------------------ metrics


async def test_metrics_show_outbox_depth_and_lock_reachability(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with site(tmp_path, mosquitto) as gym:
        metrics = gym.agent.metrics
        assert metrics is not None
        await within("the metrics listener", metrics.listening.wait())
        url = f"http://127.0.0.1:{metrics.port}/metrics"
        await gym.command("force-sync", {})
        async with httpx.AsyncClient() as http:
            up = (await http.get(url)).text
            assert f'denen_agent_lock_reachable{{lock="{LOCK}"}} 1.0' in up
            assert f'denen_agent_lock_battery_percent{{lock="{LOCK}"}} 100.0' in up
            assert f'denen_agent_lock_last_sync_age_seconds{{lock="{LOCK}"}} 0.0' in up
            assert "denen_agent_mqtt_connected 1.0" in up
            assert "denen_agent_outbox_depth 0.0" in up
            assert 'denen_agent_commands_total{status="ok",verb="force-sync"} 1.0' in up
            assert (await http.get(url.replace("/metrics", "/"))).status_code == 404

            mosquitto.stop()
            await eventually("the link down", lambda: not gym.agent.link.connected.is_set())
            gym.lock_host.press("000000#")  # a wrong PIN: an event that cannot leave now
            await eventually("the event queued", lambda: gym.agent.outbox.depth() == 1)
            gym.clock.advance(42)
            down = (await http.get(url)).text
            assert "denen_agent_mqtt_connected 0.0" in down
            assert "denen_agent_outbox_depth 1.0" in down
            assert "denen_agent_outbox_oldest_age_seconds 42.0" in down
            report = gym.agent.telemetry()
            assert (report.outbox_depth, report.outbox_oldest_age_s) == (1, 42.0)
