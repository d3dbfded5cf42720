"""Attack: an id that ends in a newline ("gym-a\\n"). ``re.match`` with ``$`` once let it
through, and it wrote a broken line into the broker's ACL. Every surface that takes a site
or gateway id must refuse it with a message that says what an id may be."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.main import main as denen_cloud
from provisioning.cli import main as denen
from tests.security.conftest import Cloud

EVIL = "gym-a\n"


async def test_http_facility_registration_refuses_a_newline_site(cloud: Cloud) -> None:
    r = await cloud.http.post(
        "/api/facilities",
        json={"name": "Gym Evil", "site": EVIL, "gateway": "gw-1"},
        headers=cloud.as_user("ops"),
    )
    assert r.status_code == 422, r.text
    assert "pattern" in r.text


async def test_http_enrollment_token_refuses_a_newline_site(cloud: Cloud) -> None:
    r = await cloud.http.post(
        "/api/enrollment-tokens",
        json={"site": EVIL, "gateway": "gw-1"},
        headers=cloud.as_user("ops"),
    )
    assert r.status_code == 422, r.text


async def test_http_fleet_site_refuses_a_newline_site(cloud: Cloud) -> None:
    r = await cloud.http.put(
        "/api/fleet/sites/gym-a%0A",
        json={"name": "Gym Evil"},
        headers=cloud.as_user("ops"),
    )
    # the path's own schema refuses it, naming the field and the pattern
    assert r.status_code == 422, r.text
    assert "path.site" in r.json()["detail"]
    assert "pattern" in r.json()["detail"]
    listed = await cloud.http.get("/api/fleet/sites", headers=cloud.as_user("ops"))
    assert EVIL not in [s["site"] for s in listed.json()]


def _cloud_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DENEN_CLOUD_DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("DENEN_CLOUD_SECRET_KEY", "s" * 40)
    monkeypatch.setenv("DENEN_CLOUD_METRICS_TOKEN", "m" * 32)


def test_cli_add_facility_refuses_a_newline_site(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _cloud_env(monkeypatch, tmp_path)
    assert denen_cloud(["add-facility", "Gym Evil", "--site", EVIL, "--gateway", "gw-1"]) == 1
    assert "must be a slug" in capsys.readouterr().err


def test_cli_enrollment_token_refuses_a_newline_gateway(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _cloud_env(monkeypatch, tmp_path)
    argv = ["create-enrollment-token", "--site", "gym-a", "--gateway", "gw-1\n"]
    assert denen_cloud(argv) == 1
    assert "is not a slug" in capsys.readouterr().err


def test_broker_config_acl_never_gets_a_newline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = tmp_path / "ca"
    assert denen(["provision", "ca", "init", "--out", str(ca)]) == 0
    out = tmp_path / "broker"
    args = ["provision", "broker-config", "--out", str(out), "--ca-dir", str(ca)]
    assert denen([*args, "--gateway", "gym-a\n/gw-1"]) == 1
    assert "is not a slug" in capsys.readouterr().err
    assert not (out / "acl").exists()
    assert denen([*args, "--gateway", "gym-a/gw-1"]) == 0
    acl = (out / "acl").read_text()
    assert "user gym-a.gw-1\ntopic readwrite denen/v1/gym-a/gw-1/#\n" in acl
