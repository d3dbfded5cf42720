"""The cloud behind the production broker config, as a gateway meets it: a private
Mosquitto with TLS and the per-gateway ACL (gym-a/gw-1 and gym-b/gw-1 allowed), the real
app on it over mutual TLS (with its lock pairing key), gyms A and B seeded as the demo is;
and what a technician's Pi holds: the site config from enrollment, with the gateway's own
certificate, and ``denen provision lock pair`` run on it."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI

from cloud.app import create_app
from cloud.bootstrap import DemoSeed, seed_demo
from cloud.core.models import Role
from cloud.settings import CloudSettings
from firmware_sim.lock.pty_host import LockPtyHost
from protocol.clock import ManualClock
from tests.support.cloud import basic
from tests.support.secure_broker import SecureBroker, running_secure_broker

WAIT_S = 60.0


@dataclass
class World:
    app: FastAPI
    http: httpx.AsyncClient
    seed: DemoSeed
    broker: SecureBroker
    cloud_dir: Path  # the cloud's database and pairing key: the keys are there by design

    def ops(self) -> dict[str, str]:
        return basic("ops", self.seed.users["ops"].api_token)


@contextlib.asynccontextmanager
async def running_world(tmp_path: Path, now: float) -> AsyncIterator[World]:
    """Broker, cloud (connected), gym-a (lock gym-a-1) and gym-b (lock gym-b-1)."""
    cloud_dir = tmp_path / "cloud"
    cloud_dir.mkdir()
    with running_secure_broker(tmp_path / "secure") as broker:
        settings = CloudSettings(
            database_url=f"sqlite:///{cloud_dir}/cloud.db",
            secret_key="s" * 40,
            metrics_token="m" * 32,
            mqtt_host="localhost",
            mqtt_port=broker.port,
            mqtt_tls_ca=broker.ca.ca_cert,
            mqtt_tls_cert=broker.ca.cloud_cert,
            mqtt_tls_key=broker.ca.cloud_key,
            mqtt_client_id="cloud",
            pairing_key_path=cloud_dir / "pairing.key",
        )
        app = create_app(settings, clock=ManualClock(now))
        async with app.router.lifespan_context(app):
            with app.state.sessions.begin() as session:
                seed = seed_demo(session)  # gym-a, its gateway gw-1, its lock gym-a-1
                seed_demo(
                    session,
                    site="gym-b",
                    lock_id="gym-b-1",
                    facility_name="Gym B",
                    users={"fm-b": Role.MANAGER},
                )
            async with asyncio.timeout(10):
                await app.state.bridge.wait_connected()
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as http:
                yield World(app, http, seed, broker, cloud_dir)


def site_config(world: World, directory: Path, site: str = "gym-a", gateway: str = "gw-1") -> Path:
    """What ``denen provision enroll`` leaves on a Pi: its certificate, key, the CA and a
    site.toml naming them and the broker; the agent's state directory beside it."""
    directory.mkdir(parents=True, exist_ok=True)
    me = world.broker.gateway(site, gateway)
    state = directory / "state"
    path = directory / "site.toml"
    path.write_text(
        f'site = "{site}"\ngateway = "{gateway}"\nstate_dir = "{state}"\n\n'
        f'[mqtt]\nhost = "localhost"\nport = {world.broker.port}\n\n'
        f'[mqtt.tls]\nca = "{world.broker.ca.ca_cert}"\ncert = "{me.cert}"\nkey = "{me.key}"\n'
    )
    return path


@dataclass(frozen=True)
class Pairing:
    returncode: int
    stdout: str
    stderr: str


async def pair_at_the_door(
    lock: LockPtyHost, lock_id: str, config: Path, *extra: str, keypad: bool = False
) -> Pairing:
    """``denen provision lock pair --serial … --config …`` as a process; the technician
    presses the pairing button when it asks (and types the test PIN with ``keypad``)."""
    skip = () if keypad else ("--skip-keypad-test",)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "provisioning.cli", "provision", "lock", "pair",
        "--serial", lock.path, "--id", lock_id, "--config", str(config), *skip, *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    pressed = False
    async with asyncio.timeout(WAIT_S):
        while line := (await proc.stdout.readline()).decode():
            lines.append(line)
            if "press the pairing button" in line and not pressed:
                lock.pair_button()
                pressed = True
            typed = re.search(r"type (\d+)# on the lock's keypad", line)
            if typed:
                assert lock.press(typed.group(1) + "#").display == "OPEN"
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return Pairing(proc.returncode, "".join(lines) + out.decode(), err.decode())
