"""Enrollment tokens, CSR signing and revocation through the cloud's API (SQLite)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from fastapi import FastAPI
from sqlalchemy import select

from cloud.app import create_app
from cloud.bootstrap import DemoSeed, seed_demo
from cloud.fleet.models import EnrollmentToken, GatewayCertificate
from cloud.settings import CloudSettings
from protocol import certs
from protocol.clock import ManualClock
from protocol.enroll_token import ca_pin, parse_token
from provisioning import pki
from tests.support.cloud import basic

NOW = 1_799_971_200  # 2027-01-15 09:00 Tokyo
DAY = 24 * 3600


@dataclass
class EnrollApi:
    app: FastAPI
    http: httpx.AsyncClient
    seed: DemoSeed
    clock: ManualClock
    ca: pki.CaFiles
    settings: CloudSettings

    def as_user(self, name: str) -> dict[str, str]:
        return basic(name, self.seed.users[name].api_token)

    async def token(self, site: str = "gym-a", gateway: str = "gw-1") -> str:
        r = await self.http.post(
            "/api/enrollment-tokens",
            json={"site": site, "gateway": gateway},
            headers=self.as_user("ops"),
        )
        assert r.status_code == 201, r.text
        assert r.json()["expires_at"] == int(self.clock.now()) + DAY
        token: str = r.json()["token"]
        return token


def csr(cn: str = "whatever-the-pi-says") -> str:
    return certs.make_csr(certs.generate_key(), cn).decode()


def cloud_settings(tmp_path: Path, ca: pki.CaFiles | None) -> CloudSettings:
    return CloudSettings(
        database_url=f"sqlite:///{tmp_path}/enroll.db",
        secret_key="s" * 40,
        metrics_token="m" * 32,
        mqtt_enabled=False,
        mqtt_host="mqtt.example.city",
        ca_cert_path=None if ca is None else ca.ca_cert,
        ca_key_path=None if ca is None else ca.ca_key,
        crl_path=tmp_path / "broker-crl.pem",
        broker_acl_path=tmp_path / "broker-acl",
    )


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[EnrollApi]:
    ca = pki.init_ca(tmp_path / "ca", now=dt.datetime.fromtimestamp(NOW - DAY, dt.UTC))
    settings = cloud_settings(tmp_path, ca)
    clock = ManualClock(NOW)
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        with app.state.sessions.begin() as session:
            seed = seed_demo(session)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as http:
            yield EnrollApi(app, http, seed, clock, ca, settings)


async def test_only_ops_make_tokens_and_only_a_hash_is_stored(api: EnrollApi) -> None:
    body = {"site": "gym-a", "gateway": "gw-1"}
    assert (await api.http.post("/api/enrollment-tokens", json=body)).status_code == 401
    r = await api.http.post("/api/enrollment-tokens", json=body, headers=api.as_user("manager"))
    assert r.status_code == 403
    bad = {"site": "gym/a", "gateway": "gw-1"}
    r = await api.http.post("/api/enrollment-tokens", json=bad, headers=api.as_user("ops"))
    assert r.status_code == 422
    token = await api.token()
    with api.app.state.sessions() as session:
        stored = session.scalars(select(EnrollmentToken)).one()
    assert token not in {stored.token_hash, stored.site, stored.created_by}
    assert stored.created_by == "ops"
    assert stored.used_at is None


async def test_enroll_signs_the_key_for_the_gateway_the_cloud_chose(api: EnrollApi) -> None:
    token = await api.token()
    r = await api.http.post("/api/enroll", json={"token": token, "csr_pem": csr("gym-b.gw-1")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["site"], body["gateway"]) == ("gym-a", "gw-1")
    assert (body["mqtt_host"], body["mqtt_port"]) == ("mqtt.example.city", 8883)
    cert = x509.load_pem_x509_certificate(body["certificate_pem"].encode())
    ca = x509.load_pem_x509_certificate(body["ca_pem"].encode())
    cert.verify_directly_issued_by(ca)
    site, gateway, tag = certs.parse_identity(certs.common_name(cert.subject))
    assert (site, gateway) == ("gym-a", "gw-1")  # not what the CSR asked for
    assert tag is not None  # a name of its own
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    lifetime = cert.not_valid_after_utc - dt.datetime.fromtimestamp(NOW, dt.UTC)
    assert lifetime == dt.timedelta(days=365)
    with api.app.state.sessions() as session:
        row = session.scalars(select(GatewayCertificate)).one()
    assert int(row.serial, 16) == cert.serial_number
    assert row.common_name == f"gym-a.gw-1.{tag}"
    assert f"user gym-a.gw-1.{tag}\n" in api.settings.broker_acl_path.read_text()  # type: ignore[union-attr]


async def test_the_token_pins_the_ca_the_pi_is_shown(api: EnrollApi) -> None:
    token = parse_token(await api.token())
    r = await api.http.get("/api/enroll/ca")
    assert r.status_code == 200
    shown = x509.load_pem_x509_certificate(r.json()["ca_pem"].encode())
    assert shown == x509.load_pem_x509_certificate(api.ca.ca_cert.read_bytes())
    assert ca_pin(shown) == token.pin


async def test_enrolling_again_revokes_what_the_gateway_held(api: EnrollApi) -> None:
    first = await api.http.post("/api/enroll", json={"token": await api.token(), "csr_pem": csr()})
    second = await api.http.post("/api/enroll", json={"token": await api.token(), "csr_pem": csr()})
    old, new = (
        x509.load_pem_x509_certificate(r.json()["certificate_pem"].encode())
        for r in (first, second)
    )
    assert certs.common_name(old.subject) != certs.common_name(new.subject)
    crl = x509.load_pem_x509_crl(api.settings.crl_path.read_bytes())  # type: ignore[union-attr]
    assert crl.get_revoked_certificate_by_serial_number(old.serial_number) is not None
    assert crl.get_revoked_certificate_by_serial_number(new.serial_number) is None
    acl = api.settings.broker_acl_path.read_text()  # type: ignore[union-attr]
    assert f"user {certs.common_name(old.subject)}\n" not in acl
    assert f"user {certs.common_name(new.subject)}\n" in acl


async def test_a_reused_token_is_refused_with_the_date_it_was_used(api: EnrollApi) -> None:
    token = await api.token()
    first = await api.http.post("/api/enroll", json={"token": token, "csr_pem": csr()})
    assert first.status_code == 200
    api.clock.advance(3600)
    again = await api.http.post("/api/enroll", json={"token": token, "csr_pem": csr()})
    assert again.status_code == 403
    assert again.json()["detail"] == (
        "this enrollment token was already used on 2027-01-15 09:00; "
        "ask city operations for a new one"
    )


async def test_an_expired_token_is_refused(api: EnrollApi) -> None:
    token = await api.token()
    api.clock.advance(DAY)
    r = await api.http.post("/api/enroll", json={"token": token, "csr_pem": csr()})
    assert r.status_code == 403
    assert "expired on 2027-01-16 09:00" in r.json()["detail"]
    assert "ask city operations for a new one" in r.json()["detail"]


async def test_unknown_token_and_bad_csr_leave_the_token_unspent(api: EnrollApi) -> None:
    r = await api.http.post("/api/enroll", json={"token": "denen-enroll-nope", "csr_pem": csr()})
    assert r.status_code == 403
    assert "not known" in r.json()["detail"]
    token = await api.token()
    r = await api.http.post("/api/enroll", json={"token": token, "csr_pem": "hello"})
    assert r.status_code == 400
    assert "the token was not used" in r.json()["detail"]
    r = await api.http.post("/api/enroll", json={"token": token, "csr_pem": csr()})
    assert r.status_code == 200


async def test_revoke_writes_the_crl_and_drops_the_gateway_from_the_acl(api: EnrollApi) -> None:
    r = await api.http.post("/api/enroll", json={"token": await api.token(), "csr_pem": csr()})
    serial = x509.load_pem_x509_certificate(r.json()["certificate_pem"].encode()).serial_number
    url = "/api/gateways/gym-a/gw-1/revoke"
    assert (await api.http.post(url, headers=api.as_user("manager"))).status_code == 403
    r = await api.http.post(url, headers=api.as_user("ops"))
    assert r.status_code == 200, r.text
    assert r.json()["serials"] == [format(serial, "x")]
    assert r.json()["broker_reloaded"] is False  # no broker_pid_file in these settings
    crl = x509.load_pem_x509_crl(api.settings.crl_path.read_bytes())  # type: ignore[union-attr]
    ca = x509.load_pem_x509_certificate(api.ca.ca_cert.read_bytes())
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    assert "gym-a.gw-1" not in api.settings.broker_acl_path.read_text()  # type: ignore[union-attr]
    again = await api.http.post(url, headers=api.as_user("ops"))
    assert again.status_code == 404


async def test_a_cloud_without_a_ca_says_what_to_configure(tmp_path: Path) -> None:
    app = create_app(cloud_settings(tmp_path, None), clock=ManualClock(NOW))
    async with app.router.lifespan_context(app):
        with app.state.sessions.begin() as session:
            seed = seed_demo(session)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cloud") as http:
            r = await http.post(
                "/api/enrollment-tokens",
                json={"site": "gym-a", "gateway": "gw-1"},
                headers=basic("ops", seed.ops.api_token),
            )
            ca = await http.get("/api/enroll/ca")
    assert r.status_code == 503  # a token pins the CA: none without one
    assert "DENEN_CLOUD_CA_CERT_PATH" in r.json()["detail"]
    assert ca.status_code == 503
