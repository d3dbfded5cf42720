"""The fleet controller over a real Mosquitto, with aiomqtt clients playing the gateways:
an agent that dies shows offline at once (its last will) and mails on-call, silence past
the heartbeat does too, commands are answered (a reply delivered twice is stored once) or
expire, config goes out retained, a firmware rollout moves from ring 0 to ring 1 on the
gateways' replies, and a facility manager sees only their department's sites."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from cloud.app import create_app
from cloud.bootstrap import DemoSeed, seed_demo
from cloud.core.models import Role
from cloud.fleet.runtime import Fleet
from cloud.settings import CloudSettings
from protocol import topics
from protocol.clock import ManualClock
from protocol.firmware_image import DeviceKind as ImageKind
from protocol.firmware_image import FirmwareImage, build_image
from protocol.messages import (
    AgentConfigData,
    CommandReplyData,
    CommandRequestData,
    CommandStatus,
    FirmwareUpdateArgs,
    FirmwareUpdateResult,
    GatewayState,
    LockTelemetry,
    MessageType,
    StatusData,
    TelemetryData,
    make,
    parse,
)
from protocol.topics import Channel
from tests.support.cloud import DB_KINDS, basic
from tests.support.migrated import Template, copy_of, migrated_template
from tests.support.mosquitto import Mosquitto

NOW = 1_799_971_200  # Friday 2027-01-15 09:00 Tokyo
ONCALL = "oncall@city.example.jp"


@pytest.fixture(scope="module", params=DB_KINDS)
def template(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Template]:
    with migrated_template(request.param, tmp_path_factory.mktemp("template")) as made:
        yield made


@dataclass
class Cloud:
    app: FastAPI
    http: httpx.AsyncClient
    clock: ManualClock
    seed: DemoSeed
    broker: Mosquitto

    @property
    def fleet(self) -> Fleet:
        fleet: Fleet = self.app.state.fleet
        return fleet

    def ops(self) -> dict[str, str]:
        return basic("ops", self.seed.users["ops"].api_token)

    async def get(self, path: str, headers: dict[str, str] | None = None) -> Any:
        r = await self.http.get(path, headers=headers or self.ops())
        assert r.status_code == 200, r.text
        return r.json()

    async def until(self, path: str, check: Callable[[Any], bool]) -> Any:
        """GET ``path`` until ``check`` holds for its JSON (10 s at most)."""
        async with asyncio.timeout(10):
            while True:
                r = await self.http.get(path, headers=self.ops())
                if r.status_code == 200 and check(r.json()):  # 404: not reported yet
                    return r.json()
                await asyncio.sleep(0.02)

    async def pass_(self) -> None:
        """One periodic fleet pass (the loop itself is slowed down to never run here)."""
        await asyncio.to_thread(self.fleet.jobs.run_due)

    def mails(self) -> list[str]:
        return [m.subject for m in self.app.state.services.mail.messages() if m.to == ONCALL]


@pytest.fixture
async def cloud(tmp_path: Path, mosquitto: Mosquitto, template: Template) -> AsyncIterator[Cloud]:
    with copy_of(template, tmp_path) as url:
        settings = CloudSettings(
            database_url=url,
            secret_key="s" * 40,
            metrics_token="m" * 32,
            mqtt_host=mosquitto.host,
            mqtt_port=mosquitto.port,
            mqtt_client_id="cloud-fleet-test",
            fleet_oncall_email=ONCALL,
            fleet_poll_s=3600,  # the tests run the pass themselves
        )
        clock = ManualClock(NOW)
        app = create_app(settings, clock=clock)
        async with app.router.lifespan_context(app):
            with app.state.sessions.begin() as session:
                seed = seed_demo(session, clock=clock, users={"ops": Role.OPS})
            async with asyncio.timeout(10):
                await app.state.bridge.wait_connected()
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as http:
                yield Cloud(app, http, clock, seed, mosquitto)


# ------------------------------------------------------------------ fake gateways


def _status(state: GatewayState) -> bytes:
    return make(MessageType.STATUS, StatusData(state=state, agent_version="test"), ts=NOW)


@dataclass
class Gateway:
    """An agent as the broker sees it: birth and will, telemetry, commands and replies."""

    client: aiomqtt.Client
    site: str
    gateway: str
    requests: asyncio.Queue[tuple[str, CommandRequestData]] = field(default_factory=asyncio.Queue)
    configs: list[AgentConfigData] = field(default_factory=list)
    got_config: asyncio.Event = field(default_factory=asyncio.Event)

    async def telemetry(self, **fields: Any) -> None:
        data = TelemetryData(
            uptime_s=10, outbox_depth=0, frames_dropped=0, time_trusted=True, **fields
        )
        payload = make(MessageType.TELEMETRY, data, ts=NOW)
        await self.client.publish(topics.telemetry(self.site, self.gateway), payload, qos=0)

    async def reply(self, verb: str, reply: CommandReplyData) -> None:
        payload = make(MessageType.COMMAND_REPLY, reply, ts=NOW)
        await self.client.publish(topics.response(self.site, self.gateway, verb), payload, qos=1)

    async def request(self) -> tuple[str, CommandRequestData]:
        async with asyncio.timeout(10):
            return await self.requests.get()


async def _read(gw: Gateway) -> None:
    async for message in gw.client.messages:
        assert isinstance(message.payload, bytes)
        where = topics.parse(str(message.topic))
        _env, data = parse(message.payload)
        if where.channel is Channel.REQUEST and isinstance(data, CommandRequestData):
            assert where.verb is not None
            gw.requests.put_nowait((where.verb, data))
        elif isinstance(data, AgentConfigData):
            gw.configs.append(data)
            gw.got_config.set()


@contextlib.asynccontextmanager
async def gateway(
    broker: Mosquitto, site: str = "gym-a", gw: str = "gw-1"
) -> AsyncIterator[Gateway]:
    will = aiomqtt.Will(topics.status(site, gw), _status(GatewayState.OFFLINE), qos=1, retain=True)
    async with aiomqtt.Client(
        broker.host,
        broker.port,
        identifier=f"{site}.{gw}",
        protocol=aiomqtt.ProtocolVersion.V5,
        will=will,
    ) as client:
        me = Gateway(client, site, gw)
        await client.subscribe(topics.request_subscription(site, gw), qos=1)
        await client.subscribe(topics.config(site, gw), qos=1)
        reader = asyncio.create_task(_read(me))
        await client.publish(
            topics.status(site, gw), _status(GatewayState.ONLINE), qos=1, retain=True
        )
        try:
            yield me
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


# an agent in its own process, so that killing it drops the connection without a DISCONNECT
_AGENT = """
import asyncio, sys
import aiomqtt
from protocol import topics
from protocol.messages import GatewayState, MessageType, StatusData, make

async def main(host, port):
    def status(state):
        return make(MessageType.STATUS, StatusData(state=state), ts=0)
    topic = topics.status("gym-a", "gw-1")
    will = aiomqtt.Will(topic, status(GatewayState.OFFLINE), qos=1, retain=True)
    async with aiomqtt.Client(host, int(port), identifier="gym-a.gw-1", will=will,
                              protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.publish(topic, status(GatewayState.ONLINE), qos=1, retain=True)
        print("ready", flush=True)
        await asyncio.sleep(3600)

asyncio.run(main(*sys.argv[1:]))
"""


@contextlib.contextmanager
def agent_process(broker: Mosquitto) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-c", _AGENT, broker.host, str(broker.port)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def site_status(sites: list[dict[str, Any]], site: str = "gym-a") -> str | None:
    return next((s["status"] for s in sites if s["site"] == site), None)


# -------------------------------------------------------------------------- health


async def test_an_agents_last_will_opens_gateway_offline_once_and_mails_on_call(
    cloud: Cloud,
) -> None:
    with agent_process(cloud.broker) as agent:
        await cloud.until("/api/fleet/sites", lambda b: site_status(b) == "ok")
        agent.send_signal(
            signal.SIGKILL
        )  # the agent dies: no DISCONNECT, the broker sends its will
        await cloud.until("/api/fleet/sites", lambda b: site_status(b) == "offline")
    [alert] = await cloud.get("/api/fleet/alerts")
    assert (alert["kind"], alert["severity"], alert["subject"]) == (
        "gateway_offline",
        "critical",
        "gw-1",
    )
    assert cloud.mails() == ["[Denen CRITICAL] gateway offline: gateway gym-a/gw-1"]
    async with gateway(cloud.broker):  # the agent is back: its birth
        await cloud.until("/api/fleet/sites", lambda b: site_status(b) == "ok")
    assert await cloud.get("/api/fleet/alerts") == []
    [resolved] = await cloud.get("/api/fleet/alerts?state=resolved")
    assert (resolved["id"], resolved["resolution"]) == (alert["id"], "the agent came back online")
    assert len(cloud.mails()) == 1


async def test_silence_past_the_heartbeat_shows_the_site_offline(cloud: Cloud) -> None:
    async with gateway(cloud.broker) as gw:
        await gw.telemetry(locks=[LockTelemetry(lock_id="gym-a-1", reachable=True)])
        await cloud.until(
            "/api/fleet/sites/gym-a",
            lambda b: [d["device_id"] for d in b["devices"]] == ["gym-a-1"],
        )
        cloud.clock.advance(120)
        await cloud.pass_()
        assert site_status(await cloud.get("/api/fleet/sites")) == "ok"
        cloud.clock.advance(10)  # 130 s without telemetry: two 60 s heartbeats missed
        await cloud.pass_()
        sites = await cloud.get("/api/fleet/sites")
        assert site_status(sites) == "offline"
        assert sites[0]["devices"] == {"ok": 0, "warning": 0, "critical": 0, "offline": 1}
        [alert] = await cloud.get("/api/fleet/alerts")
        assert alert["message"].startswith("no telemetry for 130 s")
        await gw.telemetry()
        await cloud.until("/api/fleet/sites", lambda b: site_status(b) == "ok")


# ------------------------------------------------------------------------ commands


async def test_a_command_is_answered_and_a_reply_delivered_twice_is_stored_once(
    cloud: Cloud,
) -> None:
    async with gateway(cloud.broker) as gw:
        await cloud.until("/api/fleet/sites", lambda b: site_status(b) == "ok")
        r = await cloud.http.post(
            "/api/fleet/commands",
            headers=cloud.ops(),
            json={"site": "gym-a", "gateway": "gw-1", "verb": "force-sync"},
        )
        assert r.status_code == 201, r.text
        transaction = r.json()["transaction"]
        verb, request = await gw.request()
        assert (verb, request.transaction, request.expires_at) == (
            "force-sync",
            transaction,
            NOW + 60,
        )
        path = f"/api/fleet/commands/{transaction}"
        await cloud.until(path, lambda b: b["status"] == "sent")  # once the broker took it
        reply = CommandReplyData(
            transaction=transaction, status=CommandStatus.OK, data={"locks": []}
        )
        await gw.reply("force-sync", reply)
        await gw.reply("force-sync", reply)  # the outbox sends it again
        done = await cloud.until(path, lambda b: b["duplicate_replies"] == 1)
    assert (done["status"], done["reply"], done["replied_at"]) == ("ok", {"locks": []}, NOW)
    audit = await cloud.get("/api/fleet/audit")
    assert [e["action"] for e in audit if e["detail"].get("transaction") == transaction] == [
        "command.reply",
        "command.force-sync",
    ]


async def test_a_command_nobody_answers_expires(cloud: Cloud) -> None:
    async with gateway(cloud.broker) as gw:
        await cloud.until("/api/fleet/sites", lambda b: site_status(b) == "ok")
        r = await cloud.http.post(
            "/api/fleet/commands",
            headers=cloud.ops(),
            json={"site": "gym-a", "gateway": "gw-1", "verb": "restart", "ttl_s": 5},
        )
        transaction = r.json()["transaction"]
        await gw.request()  # received, never answered
        cloud.clock.advance(20)
        await cloud.pass_()
        expired = await cloud.get(f"/api/fleet/commands/{transaction}")
    assert (expired["status"], expired["replied_at"], expired["expires_at"]) == (
        "expired",
        None,
        NOW + 5,
    )


async def test_desired_config_goes_out_retained_and_the_report_closes_the_gap(
    cloud: Cloud,
) -> None:
    async with gateway(cloud.broker) as gw:
        await cloud.until("/api/fleet/sites", lambda b: site_status(b) == "ok")
        r = await cloud.http.put(
            "/api/fleet/sites/gym-a/gateways/gw-1/config",
            headers=cloud.ops(),
            json={"telemetry_interval_s": 30},
        )
        assert r.status_code == 200, r.text
        assert r.json()["version"] == 1
        path = "/api/fleet/sites/gym-a/gateways/gw-1"
        detail = await cloud.get(path)
        assert (detail["twin"]["in_sync"], detail["twin"]["diverged_since"]) == (False, NOW)
        assert detail["gateway"]["heartbeat_interval_s"] == 30
        async with asyncio.timeout(10):
            await gw.got_config.wait()
        assert gw.configs[0].telemetry_interval_s == 30
        await gw.telemetry(config_version=1, config_hash="0123456789abcdef")
        await cloud.until(path, lambda b: b["twin"]["in_sync"])
    async with gateway(cloud.broker, gw="gw-2") as other:  # retained: a late subscriber
        await other.client.subscribe(topics.config("gym-a", "gw-1"), qos=1)
        async with asyncio.timeout(10):
            await other.got_config.wait()
        assert other.configs[0].version == 1


# ------------------------------------------------------------------------ rollouts


async def _answer_firmware(gw: Gateway, version: str) -> None:
    """Take firmware updates as a device would: install and report the new version."""
    while True:
        verb, request = await gw.requests.get()
        assert verb == "firmware-update"
        args = FirmwareUpdateArgs.model_validate(request.data)
        image = FirmwareImage.from_bytes(base64.b64decode(args.image))
        assert str(image.header.version) == version
        result = FirmwareUpdateResult(
            device_id=args.lock_id or "",
            kind="lock",
            previous="1.0.0",
            version=version,
            installed=True,
        )
        await gw.reply(
            verb,
            CommandReplyData(
                transaction=request.transaction,
                status=CommandStatus.OK,
                data=result.model_dump(mode="json"),
            ),
        )


async def _put(cloud: Cloud, path: str, body: dict[str, Any]) -> Any:
    r = await cloud.http.put(path, headers=cloud.ops(), json=body)
    assert r.status_code == 200, r.text
    return r.json()


async def test_a_firmware_rollout_moves_from_ring_0_to_ring_1_on_the_replies(
    cloud: Cloud,
) -> None:
    key = Ed25519PrivateKey.generate()
    image = build_image(
        key, kind=ImageKind.LOCK, model="RL-2000", version="1.1.0", payload=b"x" * 300
    )
    async with gateway(cloud.broker, "gym-a") as a, gateway(cloud.broker, "gym-b") as b:
        for gw, lock_id in ((a, "gym-a-1"), (b, "gym-b-1")):
            await gw.telemetry(
                locks=[LockTelemetry(lock_id=lock_id, reachable=True, firmware="1.0.0")]
            )
        await cloud.until("/api/fleet/sites", lambda s: [x["devices"]["ok"] for x in s] == [1, 1])
        for site, lock_id in (("gym-a", "gym-a-1"), ("gym-b", "gym-b-1")):
            await _put(
                cloud,
                f"/api/fleet/sites/{site}/devices/{lock_id}",
                {"gateway": "gw-1", "kind": "lock", "model": "RL-2000"},
            )
        r = await cloud.http.post("/api/fleet/firmware", headers=cloud.ops(), content=bytes(image))
        assert r.status_code == 201, r.text
        assert (r.json()["model"], r.json()["version"]) == ("RL-2000", "1.1.0")
        answering = [asyncio.create_task(_answer_firmware(gw, "1.1.0")) for gw in (a, b)]
        try:
            r = await cloud.http.post(
                "/api/fleet/rollouts",
                headers=cloud.ops(),
                json={
                    "kind": "firmware",
                    "name": "RL-2000 1.1.0",
                    "firmware_image_id": r.json()["id"],
                    "rings": [["gym-a"]],
                    "soak_s": 0,
                },
            )
            assert r.status_code == 201, r.text
            path = f"/api/fleet/rollouts/{r.json()['id']}"
            done = await cloud.until(path, lambda x: x["state"] == "completed")
        finally:
            for task in answering:
                task.cancel()
    assert [ring["counts"] for ring in done["rings"]] == [{"succeeded": 1}, {"succeeded": 1}]
    device = await cloud.get("/api/fleet/sites/gym-b/devices/gym-b-1")
    assert device["device"]["firmware"] == "1.1.0"
    assert device["twin"]["desired"] == {"firmware": "1.1.0"}


# --------------------------------------------------------------------------- roles


async def test_a_facility_manager_sees_only_their_departments_sites(cloud: Cloud) -> None:
    svc = cloud.app.state.services
    _, password = svc.users.create("fm", Role.MANAGER)
    technician, _ = svc.users.create("tech", Role.TECHNICIAN)
    # a technician's login needs a second factor: on the API, a token of theirs
    fm, tech = basic("fm", password), basic("tech", svc.api_tokens.create(technician, "laptop"))
    async with gateway(cloud.broker, "gym-a"), gateway(cloud.broker, "clinic-a") as clinic:
        await cloud.until("/api/fleet/sites", lambda s: len(s) == 2)
        offline = _status(GatewayState.OFFLINE)  # stopping: the agent says so itself
        await clinic.client.publish(topics.status("clinic-a", "gw-1"), offline, qos=1, retain=True)
        await cloud.until("/api/fleet/alerts", lambda a: len(a) == 1)
    await _put(cloud, "/api/fleet/departments/education", {"name": "Board of Education"})
    await _put(cloud, "/api/fleet/departments/health", {"name": "Health Department"})
    await _put(cloud, "/api/fleet/sites/gym-a", {"department": "education"})
    await _put(cloud, "/api/fleet/sites/clinic-a", {"department": "health"})
    await _put(cloud, "/api/fleet/departments/education/members/fm", {})
    assert [s["site"] for s in await cloud.get("/api/fleet/sites", fm)] == ["gym-a"]
    assert (await cloud.http.get("/api/fleet/sites/clinic-a", headers=fm)).status_code == 404
    assert await cloud.get("/api/fleet/alerts", fm) == []  # clinic-a's is not theirs
    assert [a["site"] for a in await cloud.get("/api/fleet/alerts", tech)] == ["clinic-a"]
    command = {"site": "gym-a", "gateway": "gw-1", "verb": "force-sync"}
    r = await cloud.http.post("/api/fleet/commands", headers=fm, json=command)
    assert r.status_code == 403
    unlock = {**command, "verb": "unlock", "data": {"lock_id": "gym-a-1"}, "reason": "stuck"}
    r = await cloud.http.post("/api/fleet/commands", headers=tech, json=unlock)
    assert (r.status_code, r.json()["detail"]) == (
        403,
        "unlock needs the ops role; you are technician",
    )
    r = await cloud.http.put("/api/fleet/sites/gym-a", headers=tech, json={"ring": 0})
    assert r.status_code == 403
