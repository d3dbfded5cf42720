"""One school gym in one process, on one :class:`~protocol.clock.ManualClock`, for the
end-to-end scenarios: the cloud app (in-process, SQLite, its MQTT bridge running), a real
Mosquitto, the real edge agent (:func:`edge.main.build_agent`) and the simulated keypad lock
(:class:`~firmware_sim.lock.LockFirmware`) on a pty or on a BLE peripheral (bumble, on a
virtual radio in this process), paired the way a technician pairs it.

Every part asks the same clock, so a test moves a whole day (or a 72-hour outage) in
milliseconds. Where a part keeps its own timers the harness nudges it through the hook the
code offers, never by sleeping:

* the lock's timers (auto-lock, lockout): :meth:`LockFirmware.tick` after each move;
* the agent's 12-hourly full sync: APScheduler counts on the machine's clock, so the harness
  re-aims the job at the same time on the injected clock (``SyncSchedule.machine_time``) and,
  when a sync falls due on the way, runs the job's coroutine at that time, as the scheduler
  would.

Waits are bounded polls for I/O (MQTT, the pty, BLE, the cloud's database), never timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import httpx
from bumble.link import LocalLink
from fastapi import FastAPI

from cloud.app import create_app
from cloud.bootstrap import DemoSeed, seed_demo
from cloud.gym.access import AccessChanged
from cloud.gym.models import SiteAccessVersion
from cloud.settings import CloudSettings
from edge.agent import Agent
from edge.config import parse_config
from edge.devices.lock_coordinator import LockCoordinator
from edge.main import build_agent
from edge.transports.ble_bumble import BumbleCentral
from firmware_sim.lock import LockFirmware
from firmware_sim.lock.ble_host import LockBleHost
from firmware_sim.lock.firmware import LockView
from firmware_sim.lock.pty_host import LockPtyHost
from protocol.clock import ManualClock
from protocol.lock_auth import LockSecrets
from provisioning.broker import Mosquitto
from provisioning.pairing import PairingOptions, pair_lock
from tests.support.cloud import basic
from tests.support.confirm_mail import confirm_by_mail
from tests.support.secure_broker import SecureBroker

SITE, GATEWAY, LOCK_ID = "gym-a", "gw-1", "gym-a-1"
BLE_ADDRESS = "F0:F0:F0:F0:F0:01"
TRANSPORTS = ("serial", "ble")
HOUR = 3600
TOKYO = ZoneInfo("Asia/Tokyo")
# The gym's day starts at midnight in Tokyo: at(19) is 19:00 local, at(24 + 8) 08:00 the
# next day. A Tuesday, so no weekday rule gets in the way.
DAY = int(datetime(2027, 6, 1, tzinfo=TOKYO).timestamp())
WAIT_S = 10.0


def at(hour: float) -> int:
    """Epoch seconds of ``hour`` hours after midnight (Tokyo) of the gym's day."""
    return DAY + round(hour * HOUR)


async def eventually(what: str, probe: Callable[[], Any], limit_s: float = WAIT_S) -> Any:
    """Poll ``probe`` (state with no event to await) until it is truthy; return it."""
    last: Any = None
    try:
        async with asyncio.timeout(limit_s):
            while not (last := probe()):  # noqa: ASYNC110 - polled state has no event
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"{what} did not happen within {limit_s}s (last: {last!r})") from None
    return last


class Door(Protocol):
    """What the two lock hosts (pty, BLE) share: the keypad and the display."""

    firmware: LockFirmware

    def press(self, keys: str) -> LockView: ...
    def view(self) -> LockView: ...
    def pair_button(self) -> LockView: ...
    def flush(self) -> None: ...


@dataclass
class Booking:
    """A citizen's booking as the citizen knows it: the status link, and once approved
    the PIN the status page shows."""

    id: str
    token: str
    name: str
    start: int
    end: int
    pin: str | None = None
    window: tuple[int, int] | None = None  # when the PIN opens, as the status page says


class GymSite:
    """The citizen, the manager and the person at the door, and the site's plumbing."""

    def __init__(
        self,
        *,
        clock: ManualClock,
        broker: Mosquitto,
        app: FastAPI,
        http: httpx.AsyncClient,
        seed: DemoSeed,
        door: Door,
        transport: str,
        lock_spec: str,
        state_dir: Path,
        central: BumbleCentral | None,
        mqtt_tls: dict[str, str] | None = None,
    ) -> None:
        self.clock = clock
        self.broker = broker
        self.app = app
        self.http = http
        self.seed = seed
        self.door = door
        self.transport = transport
        self.lock_spec = lock_spec
        self.state_dir = state_dir
        self.central = central
        self.mqtt_tls = mqtt_tls  # the gateway's certificate, on a broker that wants one
        self.agent: Agent | None = None
        self._agent_task: asyncio.Task[None] | None = None
        self.internet_up = True

    # ------------------------------------------------------------ the cloud, over HTTP

    @property
    def manager(self) -> dict[str, str]:
        return basic("manager", self.seed.manager.password)

    async def book(self, name: str, start: int, end: int) -> httpx.Response:
        """A citizen books the main hall (the response as the citizen gets it)."""
        return await self.http.post(
            "/api/reservations",
            json={
                "room_id": self.seed.room_id,
                "name": name,
                "email": f"{name}@example.jp",
                "start": start,
                "end": end,
            },
        )

    async def booked(self, name: str, start: int, end: int) -> Booking:
        """Book, then confirm by following the link in the mail, as the citizen does."""
        created = await self.book(name, start, end)
        assert created.status_code == 201, created.text
        body = created.json()
        sessions = self.app.state.sessions
        await confirm_by_mail(self.http, sessions, f"{name}@example.jp", body["id"])
        return Booking(body["id"], body["access_token"], name, start, end)

    async def status(self, booking: Booking) -> dict[str, Any]:
        """What the citizen's status page shows (the PIN once approved)."""
        res = await self.http.get(
            f"/api/reservations/{booking.id}", params={"token": booking.token}
        )
        assert res.status_code == 200, res.text
        body: dict[str, Any] = res.json()
        return body

    async def approve(self, booking: Booking) -> Booking:
        """The manager approves; the citizen reads the PIN off the status page."""
        res = await self.http.post(f"/api/reservations/{booking.id}/approve", headers=self.manager)
        assert res.status_code == 200, res.text
        status = await self.status(booking)
        assert status["pin"], "an approved booking shows its PIN"
        booking.pin = str(status["pin"])
        booking.window = (int(status["window_start"]), int(status["window_end"]))
        return booking

    async def book_and_approve(self, name: str, start: int, end: int) -> Booking:
        return await self.approve(await self.booked(name, start, end))

    async def cancel(self, booking: Booking, reason: str) -> None:
        """The citizen cancels with the status link's token."""
        res = await self.http.post(
            f"/api/reservations/{booking.id}/cancel",
            json={"reason": reason, "token": booking.token},
        )
        assert res.status_code == 200, res.text

    async def reservations(self) -> list[dict[str, Any]]:
        """The manager's list of bookings."""
        res = await self.http.get("/api/reservations", headers=self.manager)
        assert res.status_code == 200, res.text
        rows: list[dict[str, Any]] = res.json()
        return rows

    async def pin_status(self, booking: Booking) -> dict[str, Any]:
        """Where the booking's PIN stands on the lock, as the manager's list shows it."""
        (row,) = [r for r in await self.reservations() if r["id"] == booking.id]
        (access,) = row["access"]
        assert isinstance(access, dict)
        return access

    async def pin_status_until(self, booking: Booking, state: str) -> dict[str, Any]:
        """Poll the manager's view until the PIN's state is ``state`` (the agent's report
        travels to the cloud after the lock was loaded)."""
        access: dict[str, Any] = {}
        try:
            async with asyncio.timeout(WAIT_S):
                while (access := await self.pin_status(booking))["state"] != state:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"the manager never saw {state}: {access}") from None
        return access

    async def audit(self) -> list[dict[str, Any]]:
        """The lock's audit log as the manager sees it, oldest first."""
        res = await self.http.get(
            f"/api/locks/{LOCK_ID}/audit", params={"limit": 1000}, headers=self.manager
        )
        assert res.status_code == 200, res.text
        rows: list[dict[str, Any]] = res.json()
        return sorted(rows, key=lambda e: e["seq"])

    async def audit_until(
        self, what: str, done: Callable[[list[dict[str, Any]]], bool]
    ) -> list[dict[str, Any]]:
        """Poll the audit log until ``done(rows)``; return the rows."""
        rows: list[dict[str, Any]] = []
        try:
            async with asyncio.timeout(WAIT_S):
                while not done(rows := await self.audit()):  # noqa: ASYNC110 - polled DB
                    await asyncio.sleep(0.05)
        except TimeoutError:
            kinds = [(e["seq"], e["kind"], e["who"]) for e in rows]
            raise AssertionError(f"{what} not in the audit log within {WAIT_S}s: {kinds}") from None
        return rows

    def gateway_state(self) -> str | None:
        """What the cloud believes of the site's gateway (``online`` / ``offline``)."""
        return self.app.state.fleet.services.health.gateway_states().get((SITE, GATEWAY))

    def _cloud_version(self) -> int:
        with self.app.state.sessions() as session:
            row = session.get(SiteAccessVersion, (SITE, GATEWAY))
            return 0 if row is None else int(row.version)

    # ------------------------------------------------------------ the door

    def type(self, keys: str) -> LockView:
        """Someone types ``keys`` on the keypad; what the lock shows right after."""
        return self.door.press(keys)

    async def type_pin(self, pin: str) -> LockView:
        """Type ``pin`` and ``#``; returns what the door did, once the gateway (if up) has
        collected what the lock recorded."""
        view = self.door.press(pin + "#")
        await self.settle()
        return view

    def lock_holds(self) -> set[str]:
        """The grants loaded in the lock's slots now."""
        return {e.grant_id for e in self.door.firmware.slots.values() if e.grant_id is not None}

    # ------------------------------------------------------------ the gateway

    @property
    def coordinator(self) -> LockCoordinator:
        assert self.agent is not None, "the gateway is stopped"
        return self.agent.coordinators[LOCK_ID]

    def _agent_config(self) -> Any:
        return parse_config(
            {
                "site": SITE,
                "gateway": GATEWAY,
                "state_dir": str(self.state_dir),
                "mqtt": {
                    # the broker's certificate names localhost
                    "host": self.broker.host if self.mqtt_tls is None else "localhost",
                    "port": self.broker.port,
                    "reconnect_base_s": 0.05,
                    "reconnect_cap_s": 0.2,
                    **({} if self.mqtt_tls is None else {"tls": self.mqtt_tls}),
                },
                "locks": [{"id": LOCK_ID, "transport": self.lock_spec}],
                # no jitter, no awake window, no fallback poll: only the policy moves the lock
                "sync": {"jitter_s": 0, "awake_s": 0, "event_poll_s": 3600},
                "lock_link": {"request_timeout_s": 1.0, "reconnect_base_s": 0.05},
                "telemetry": {"interval_s": 3600},
            }
        )

    async def start_gateway(self) -> None:
        """Power the Pi on: build the agent from the site config and wait until it is
        connected to the broker and to the lock."""
        agent = build_agent(self._agent_config(), self.clock, self.central)
        await agent.__aenter__()
        self.agent = agent
        self._agent_task = asyncio.create_task(agent.run(), name="agent-under-test")
        if self.internet_up:
            await self._until_up("the agent connecting to the broker", agent.link.connected.is_set)
        await self._until_up("the agent connecting to the lock", lambda: self.coordinator.reachable)

    async def _until_up(self, what: str, probe: Callable[[], bool]) -> None:
        task = self._agent_task
        assert task is not None

        def up() -> bool:
            if task.done():
                task.result()  # an agent that died says why
            return probe()

        await eventually(what, up)

    async def stop_gateway(self) -> None:
        """A clean stop of the agent (it tells the broker ``offline`` first)."""
        agent, task = self.agent, self._agent_task
        if agent is None or task is None:
            return
        agent.stop()
        try:
            async with asyncio.timeout(15):
                await task
        finally:
            self.agent, self._agent_task = None, None
            await agent.__aexit__(None, None, None)

    async def cut_internet(self) -> None:
        """The site's uplink goes: the broker is out of reach for the agent (and the
        cloud); the agent keeps running."""
        await asyncio.to_thread(self.broker.stop)
        self.internet_up = False
        if self.agent is not None:
            await eventually("the agent noticing", lambda: not self._link_up())

    async def restore_internet(self) -> None:
        await asyncio.to_thread(self.broker.start)
        self.internet_up = True
        if self.agent is not None:
            await eventually("the agent reconnecting", self._link_up)
        async with asyncio.timeout(60):  # the bridge's backoff is not ours to tune
            await self.app.state.bridge.wait_connected()

    def _link_up(self) -> bool:
        return self.agent is not None and self.agent.link.connected.is_set()

    async def settle(self) -> None:
        """Wait until the site owes nothing: the gateway holds the cloud's newest snapshot
        and has loaded the lock as its policy says, the lock has handed over its events, and
        (when the internet is up) the outbox is empty. With the gateway stopped: nothing."""
        if self.agent is None:
            return
        agent = self.agent
        want = await asyncio.to_thread(self._cloud_version) if self.internet_up else None

        def settled() -> bool:
            stored = agent.store.lock_access(LOCK_ID)
            version = None if stored is None else stored[0]
            return (
                (want is None or version == want)
                and self.coordinator.reachable
                and self.coordinator.idle
                and self.door.view().events_pending == 0
                and (not self.internet_up or agent.outbox.depth() == 0)
            )

        await self._until_up("the site settling", settled)

    # ------------------------------------------------------------ time

    def next_sync_at(self) -> float | None:
        """When the agent will next sync the lock in full, on the shared clock."""
        return None if self.agent is None else self.agent.schedule.next_sync_at(LOCK_ID)

    def _move(self, to: float) -> None:
        """Set the shared clock; keep the scheduled sync at its time; tick the lock."""
        scheduled = self.next_sync_at()
        assert to >= self.clock.now(), "time only moves forward"
        self.clock.set(to)
        if self.agent is not None and scheduled is not None:
            interval = self.agent.config.sync.full_sync_interval_s
            while scheduled <= to:
                scheduled += interval  # a due sync is run by advance_to, not the scheduler
            job = self.agent.schedule.job(LOCK_ID)
            job.modify(next_run_time=self.agent.schedule.machine_time(scheduled))
        self.door.firmware.tick()  # auto-lock, lockout and entry timers
        self.door.flush()

    async def advance_to(self, when: float, *, step: float | None = None) -> None:
        """Move the clock to ``when`` (in steps of at most ``step`` seconds, settling after
        each); every full sync that falls due on the way runs at its time, as APScheduler
        would run it on a real clock."""
        while step is not None and self.clock.now() + step < when:
            await self.advance_to(self.clock.now() + step)
        while (due := self.next_sync_at()) is not None and due <= when:
            self._move(due)
            await self._scheduled_sync()
        self._move(when)
        await self.settle()

    async def _scheduled_sync(self) -> None:
        """What the scheduler does when the job is due: run its coroutine."""
        assert self.agent is not None
        job = self.agent.schedule.job(LOCK_ID)
        await job.func(*job.args, **job.kwargs)
        await self.settle()

    async def advance(self, seconds: float) -> None:
        await self.advance_to(self.clock.now() + seconds)


# ---------------------------------------------------------------- assembling the site


def _passkey_on(door: Door) -> Callable[[], Any]:
    """The technician reads the BLE passkey off the lock's display and types it."""

    async def prompt() -> int:
        async with asyncio.timeout(WAIT_S):
            while not (shown := re.fullmatch(r"PAIR (\d{6})", door.view().display)):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        return int(shown.group(1))

    return prompt


async def _pair(
    door: Door, spec: str, state_dir: Path, clock: ManualClock, central: BumbleCentral | None
) -> LockSecrets:
    """Pair the lock as a technician does (``denen provision lock pair``): the button on
    the lock, then PAIR over the wire; over BLE after LE Secure Connections passkey entry."""
    door.pair_button()
    options = PairingOptions(
        button_wait_s=WAIT_S,
        keypad_test=False,
        say=lambda _line: None,
        passkey=_passkey_on(door),
    )
    result = await pair_lock(
        LOCK_ID, spec, state_dir=state_dir, clock=clock, options=options, ble=central
    )
    return result.keys


@contextlib.asynccontextmanager
async def _lock_at_the_door(
    transport: str, firmware: LockFirmware, state_dir: Path
) -> AsyncIterator[tuple[Door, str, BumbleCentral | None]]:
    """The lock hosted on ``transport``, its spec for the agent, and the gateway's radio."""
    if transport == "serial":
        async with LockPtyHost(LOCK_ID, firmware, tick_s=0.05) as pty:
            yield pty, f"pty:{pty.path}", None
        return
    assert transport == "ble", transport
    air = LocalLink()  # type: ignore[no-untyped-call]  # bumble leaves it bare
    async with LockBleHost(LOCK_ID, firmware, hci=air, address=BLE_ADDRESS, tick_s=0.05) as ble:
        central = BumbleCentral.from_hci(air, bond_dir=state_dir / "ble")
        try:
            yield ble, f"ble:{BLE_ADDRESS}", central
        finally:
            await central.close()


@contextlib.asynccontextmanager
async def _cloud(
    workdir: Path,
    broker: Mosquitto,
    clock: ManualClock,
    keys: LockSecrets,
    secure: SecureBroker | None,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, DemoSeed]]:
    tls: dict[str, object] = {"mqtt_host": broker.host}
    if secure is not None:  # the production broker config: the cloud's own certificate
        tls = {
            "mqtt_host": "localhost",  # the name on the broker's certificate
            "mqtt_tls_ca": secure.ca.ca_cert,
            "mqtt_tls_cert": secure.ca.cloud_cert,
            "mqtt_tls_key": secure.ca.cloud_key,
        }
    settings = CloudSettings(
        database_url=f"sqlite:///{workdir}/cloud.db",
        secret_key="e2e-" + "s" * 40,
        metrics_token="m" * 32,
        mqtt_port=broker.port,
        mqtt_client_id="cloud-e2e",
        **tls,
    )
    app = create_app(settings, clock)
    async with app.router.lifespan_context(app):
        with app.state.sessions.begin() as session:
            seed = seed_demo(
                session,
                pin_key=keys.pin_key.hex(),
                offline_secret=keys.offline_secret.hex(),
                clock=clock,
            )
        app.state.bus.publish(AccessChanged(seed.site, seed.gateway))
        async with asyncio.timeout(WAIT_S):
            await app.state.bridge.wait_connected()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as http:
            yield app, http, seed


@contextlib.asynccontextmanager
async def gym_site(
    workdir: Path,
    broker: Mosquitto | SecureBroker,
    transport: str,
    *,
    start: float,
) -> AsyncIterator[GymSite]:
    """The site at ``start`` on the shared clock: a lock out of the box, paired by the
    technician, registered in the cloud with its PIN key, and the gateway running and
    synced with the cloud's first snapshot. On a :class:`SecureBroker` (the production
    config) the cloud and the gateway connect over TLS with their own certificates."""
    secure = broker if isinstance(broker, SecureBroker) else None
    mqtt_tls: dict[str, str] | None = None
    if isinstance(broker, SecureBroker):
        gateway = broker.gateway(SITE, GATEWAY)
        mqtt_tls = {
            "ca": str(broker.ca.ca_cert),
            "cert": str(gateway.cert),
            "key": str(gateway.key),
        }
        broker = broker.broker
    clock = ManualClock(start)
    state_dir = workdir / "agent"
    firmware = LockFirmware(clock)  # unpaired, no time: as delivered
    async with contextlib.AsyncExitStack() as stack:
        door, spec, central = await stack.enter_async_context(
            _lock_at_the_door(transport, firmware, state_dir)
        )
        keys = await _pair(door, spec, state_dir, clock, central)
        app, http, seed = await stack.enter_async_context(
            _cloud(workdir, broker, clock, keys, secure)
        )
        site = GymSite(
            clock=clock,
            broker=broker,
            app=app,
            http=http,
            seed=seed,
            door=door,
            transport=transport,
            lock_spec=spec,
            state_dir=state_dir,
            central=central,
            mqtt_tls=mqtt_tls,
        )
        stack.push_async_callback(site.stop_gateway)
        await site.start_gateway()
        await site.settle()
        yield site
