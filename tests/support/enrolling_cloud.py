"""The cloud as it enrolls, renews and revokes gateways on a broker with the production
config: it holds the broker's CA, writes the broker's ACL and CRL, sends it SIGHUP and is
connected to it over mutual TLS. Pis are played by keys made here and certificates got
through ``POST /api/enroll``, as ``denen provision enroll`` gets them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import httpx
from fastapi import FastAPI

from cloud.app import create_app
from cloud.bootstrap import DemoSeed, seed_demo
from cloud.settings import CloudSettings
from protocol import certs
from protocol.clock import Clock
from provisioning.pki import write_private, write_public
from tests.support.cloud import basic
from tests.support.secure_broker import Identity, SecureBroker


@dataclass
class EnrollingCloud:
    app: FastAPI
    http: httpx.AsyncClient
    seed: DemoSeed
    broker: SecureBroker
    settings: CloudSettings

    def ops(self) -> dict[str, str]:
        return basic("ops", self.seed.ops.api_token)

    async def token(self, site: str = "gym-a", gateway: str = "gw-1") -> str:
        r = await self.http.post(
            "/api/enrollment-tokens", json={"site": site, "gateway": gateway}, headers=self.ops()
        )
        assert r.status_code == 201, r.text
        token: str = r.json()["token"]
        return token

    async def enroll(self, directory: Path, site: str = "gym-a", gateway: str = "gw-1") -> Identity:
        """A Pi in ``directory``: its own key, and the certificate the cloud signed for it."""
        key = certs.generate_key()
        csr = certs.make_csr(key, "denen-gateway").decode()
        r = await self.http.post(
            "/api/enroll", json={"token": await self.token(site, gateway), "csr_pem": csr}
        )
        assert r.status_code == 200, r.text
        cert_pem = r.json()["certificate_pem"].encode()
        write_private(directory / "gateway.key", certs.key_pem(key))
        write_public(directory / "gateway.crt", cert_pem)
        write_public(directory / "ca.crt", r.json()["ca_pem"].encode())
        cn = certs.common_name(certs.load_cert(cert_pem).subject)
        return Identity(cn, directory / "gateway.crt", directory / "gateway.key")

    async def revoke(self, site: str = "gym-a", gateway: str = "gw-1") -> dict[str, object]:
        r = await self.http.post(f"/api/gateways/{site}/{gateway}/revoke", headers=self.ops())
        assert r.status_code == 200, r.text
        body: dict[str, object] = r.json()
        return body


def reloads(broker: SecureBroker) -> int:
    """How often the broker reloaded its ACL and CRL (it says so in its log only)."""
    return broker.broker.log_path.read_text().count("Reloading config")


async def until_reloaded(broker: SecureBroker, before: int) -> None:
    """Wait for a reload after ``before`` (a second SIGHUP that arrives during a reload
    is lost on 2.0.11: a test waits for each before it changes anything again)."""
    async with asyncio.timeout(10):
        while reloads(broker) <= before:  # noqa: ASYNC110 - the broker only says so in its log
            await asyncio.sleep(0.02)


async def read_until_closed(client: aiomqtt.Client) -> None:
    """Read what ``client`` receives until the broker closes it (raises MqttError)."""
    async with asyncio.timeout(10):
        async for _ in client.messages:
            pass


@contextlib.asynccontextmanager
async def enrolling_cloud(
    tmp_path: Path, broker: SecureBroker, clock: Clock
) -> AsyncIterator[EnrollingCloud]:
    """The real app (ASGI) with enrollment pointed at ``broker``'s CA, ACL, CRL and pid."""
    assert broker.broker.process is not None
    pid_file = tmp_path / "mosquitto.pid"
    pid_file.write_text(f"{broker.broker.process.pid}\n")
    settings = CloudSettings(
        database_url=f"sqlite:///{tmp_path}/cloud.db",
        secret_key="s" * 40,
        metrics_token="m" * 32,
        mqtt_host="localhost",
        mqtt_port=broker.port,
        mqtt_client_id="cloud",
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
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        with app.state.sessions.begin() as session:
            seed = seed_demo(session)
        async with asyncio.timeout(10):
            await app.state.bridge.wait_connected()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as http:
            yield EnrollingCloud(app, http, seed, broker, settings)
