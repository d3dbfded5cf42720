"""The technician's path with real processes' parts: the cloud on uvicorn talks to the
broker over mutual TLS; `denen provision enroll` gets a certificate over HTTP; the edge
agent's MQTT link connects with it and receives its access snapshot; revoking the gateway
shuts it out of the broker while the cloud stays connected."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiomqtt
import httpx
import pytest
import uvicorn

from cloud.app import create_app
from cloud.bootstrap import seed_demo
from cloud.gym.access import AccessChanged
from cloud.settings import CloudSettings
from edge.config import load_config
from edge.mqtt_link import MqttLink
from edge.outbox import Outbox
from protocol.clock import SystemClock
from protocol.messages import AccessSnapshotData
from provisioning.cli import main as denen
from tests.support.cloud import basic
from tests.support.secure_broker import SecureBroker, running_secure_broker


async def eventually(what: str, predicate: Callable[[], bool], limit_s: float = 10) -> None:
    async def poll() -> None:
        while not predicate():  # noqa: ASYNC110 - log lines and callbacks have no event
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(poll(), limit_s)
    except TimeoutError:
        pytest.fail(f"not within {limit_s}s: {what}")


def reloads(broker: SecureBroker) -> int:
    return broker.broker.log_path.read_text().count("Reloading config")


@contextlib.asynccontextmanager
async def serving(settings: CloudSettings) -> AsyncIterator[tuple[str, object]]:
    app = create_app(settings, clock=SystemClock())
    server = uvicorn.Server(uvicorn.Config(app, port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        await task


async def test_enroll_connect_receive_then_revoke(tmp_path: Path) -> None:
    with running_secure_broker(tmp_path / "secure", gateways=()) as broker:
        assert broker.broker.process is not None
        pid_file = tmp_path / "mosquitto.pid"
        pid_file.write_text(str(broker.broker.process.pid))
        settings = CloudSettings(
            database_url=f"sqlite:///{tmp_path}/cloud.db",
            secret_key="s" * 40,
            metrics_token="m" * 32,
            mqtt_host="localhost",
            mqtt_port=broker.port,
            mqtt_tls_ca=broker.ca.ca_cert,
            mqtt_tls_cert=broker.ca.cloud_cert,
            mqtt_tls_key=broker.ca.cloud_key,
            ca_cert_path=broker.ca.ca_cert,
            ca_key_path=broker.ca.ca_key,
            crl_path=broker.crl,
            broker_acl_path=broker.acl,
            broker_pid_file=pid_file,
            enroll_mqtt_host="localhost",
            enroll_mqtt_port=broker.port,
        )
        async with serving(settings) as (url, app), httpx.AsyncClient(base_url=url) as http:
            async with asyncio.timeout(10):  # the cloud connects over mTLS
                await app.state.bridge.wait_connected()  # type: ignore[attr-defined]
            with app.state.sessions.begin() as session:  # type: ignore[attr-defined]
                seed = seed_demo(session)
            token = app.state.services.enrollment.create_token("gym-a", "gw-1", "ops").token  # type: ignore[attr-defined]

            before = reloads(broker)
            token_file = tmp_path / "token"  # never an argument: every user could read it
            token_file.write_text(token)
            args = ["provision", "enroll", "--token-file", str(token_file), "--cloud", url]
            args += ["--out", str(tmp_path / "etc"), "--state-dir", str(tmp_path / "state")]
            assert await asyncio.to_thread(denen, args) == 0
            assert (tmp_path / "etc" / "gateway.key").stat().st_mode & 0o777 == 0o600
            await eventually("the cloud reloaded the broker", lambda: reloads(broker) > before)

            config = load_config(tmp_path / "etc" / "site.toml")
            assert config.mqtt.tls is not None
            assert config.mqtt.port == broker.port
            app.state.bus.publish(AccessChanged("gym-a", "gw-1"))
            snapshots: list[AccessSnapshotData] = []
            outbox = Outbox(tmp_path / "outbox.db")
            outbox.open()
            link = MqttLink(
                config, outbox=outbox, clock=SystemClock(), on_snapshot=snapshots.append
            )
            running = asyncio.create_task(link.run())
            await eventually("the agent got its snapshot over mTLS", lambda: bool(snapshots))
            link.stop()
            await running
            outbox.close()

            before = reloads(broker)
            r = await http.post(
                "/api/gateways/gym-a/gw-1/revoke", headers=basic("ops", seed.ops.api_token)
            )
            assert r.status_code == 200, r.text
            assert r.json()["broker_reloaded"] is True
            await eventually("the broker reloaded", lambda: reloads(broker) > before)
            tls = config.mqtt.tls
            stolen = aiomqtt.Client(
                "localhost",
                broker.port,
                identifier="gym-a-gw-1",
                tls_params=aiomqtt.TLSParameters(str(tls.ca), str(tls.cert), str(tls.key)),
                timeout=2,
            )
            with pytest.raises(aiomqtt.MqttError):
                async with stolen:
                    pass
            assert (await http.get("/healthz")).json()["mqtt"] == "connected"
