"""`denen provision ca init`, `ca pages-cert` and `broker-config`: files, modes, names,
refusals."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from protocol import certs
from protocol.acl import render_acl
from provisioning import pki
from provisioning.broker_config import backlog_messages
from provisioning.cli import main as denen


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ca_init_writes_keys_0600_in_a_0700_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ca"
    args = ["provision", "ca", "init", "--out", str(out), "--broker-host", "mqtt.example.city"]
    assert denen([*args, "--broker-ip", "203.0.113.10"]) == 0
    printed = capsys.readouterr().out
    assert "[1/4]" in printed
    assert "[4/4]" in printed
    assert "PRIVATE KEY" not in printed
    files = pki.CaFiles(out)
    assert mode(out) == 0o700
    for key in (files.ca_key, files.server_key, files.cloud_key):
        assert mode(key) == 0o600, key
    for public in (files.ca_cert, files.server_cert, files.cloud_cert, files.crl):
        assert mode(public) == 0o644, public

    ca = pki.load_ca(files)
    server = certs.load_cert(files.server_cert.read_bytes())
    server.verify_directly_issued_by(ca.cert)
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["mqtt.example.city", "localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("203.0.113.10"),
        ipaddress.ip_address("127.0.0.1"),
    ]
    cloud = certs.load_cert(files.cloud_cert.read_bytes())
    assert certs.common_name(cloud.subject) == "cloud"
    crl = x509.load_pem_x509_crl(files.crl.read_bytes())
    assert len(crl) == 0


def test_ca_init_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ca"
    assert denen(["provision", "ca", "init", "--out", str(out)]) == 0
    first = (out / "ca.crt").read_bytes()
    assert denen(["provision", "ca", "init", "--out", str(out)]) == 1
    assert "--force" in capsys.readouterr().err
    assert (out / "ca.crt").read_bytes() == first
    assert denen(["provision", "ca", "init", "--out", str(out), "--force"]) == 0
    assert (out / "ca.crt").read_bytes() != first


def test_pages_cert_names_the_address_the_reception_browses_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ca_dir, out = tmp_path / "ca", tmp_path / "pi"
    assert denen(["provision", "ca", "init", "--out", str(ca_dir)]) == 0
    pages = ["provision", "ca", "pages-cert", "--ca-dir", str(ca_dir), "--out", str(out)]
    assert denen(pages) == 1
    assert "pass --ip (the Pi's LAN address)" in capsys.readouterr().err
    assert not out.exists()
    assert denen([*pages, "--ip", "192.168.10.5", "--host", "clinic-a-gw-1.local"]) == 0
    assert "set [clinic] tls_cert and tls_key" in capsys.readouterr().out
    assert (mode(out / "pages.key"), mode(out / "pages.crt")) == (0o600, 0o644)
    cert = certs.load_cert((out / "pages.crt").read_bytes())
    cert.verify_directly_issued_by(pki.load_ca(pki.CaFiles(ca_dir)).cert)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["clinic-a-gw-1.local"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.168.10.5")]


def test_no_loopback_and_a_bad_ip_are_reported(tmp_path: Path) -> None:
    with pytest.raises(pki.PkiError, match="needs a name"):
        pki.init_ca(tmp_path / "a", include_loopback=False)
    with pytest.raises(pki.PkiError, match="not an IP address"):
        pki.init_ca(tmp_path / "b", broker_ips=["mqtt.example.city"])


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for step in (["ca", "init"], ["ca", "pages-cert"], ["enroll"], ["broker-config"]):
        with pytest.raises(SystemExit):
            denen(["provision", *step, "--help"])
        assert "example:" in capsys.readouterr().out


def test_broker_config_is_mutual_tls_with_a_crl_and_an_acl(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    assert denen(["provision", "ca", "init", "--out", str(ca)]) == 0
    out = tmp_path / "prod"
    args = ["provision", "broker-config", "--out", str(out), "--ca-dir", str(ca)]
    assert denen([*args, "--paths-as", "/mosquitto/config", "--gateway", "gym-a/gw-1"]) == 0
    conf = (out / "mosquitto.conf").read_text().splitlines()
    for line in (
        "listener 8883 0.0.0.0",
        "require_certificate true",
        "use_identity_as_username true",
        "allow_anonymous false",
        "persistence true",
        "crlfile /mosquitto/config/crl.pem",
        "acl_file /mosquitto/config/acl",
        f"max_queued_messages {backlog_messages()}",
    ):
        assert line in conf
    assert (out / "acl").read_text() == render_acl(["gym-a.gw-1"])
    assert mode(out / "server.key") == 0o600
    assert denen([*args, "--gateway", "gym-a"]) == 1


def test_acl_confines_each_certificate_to_its_gateways_subtree() -> None:
    acl = render_acl(["gym-b.gw-2.0000beef", "gym-a.gw-1"])
    assert acl.index("user cloud") < acl.index("user gym-a.gw-1") < acl.index("user gym-b.gw-2")
    assert "user gym-b.gw-2.0000beef\n" in acl
    assert "topic readwrite denen/v1/gym-b/gw-2/#" in acl
    assert acl.count("topic read denen/v1/broadcast/#") == 2
    assert "pattern" not in acl
    for bad in ("gym/a.gw-1", "gym-a.gw-1.NOTHEX12", "gym-a"):
        with pytest.raises(certs.CertificateError):
            render_acl([bad])


def test_only_a_certificate_itself_may_say_it_is_in_use() -> None:
    acl = render_acl(
        ["gym-a.gw-1.000000aa", "gym-a.gw-1.000000bb", "gym-a.gw-1", "gym-b.gw-1.000000cc"]
    )
    blocks = {b.split("\n")[0]: b for b in acl.split("\n\n")}
    assert (
        "topic deny denen/v1/gym-a/gw-1/cert/in-use/000000bb" in blocks["user gym-a.gw-1.000000aa"]
    )
    assert "in-use/000000aa" not in blocks["user gym-a.gw-1.000000aa"]
    untagged = blocks["user gym-a.gw-1"]
    assert "in-use/000000aa" in untagged
    assert "in-use/000000bb" in untagged
    assert "deny" not in blocks["user gym-b.gw-1.000000cc"]  # alone: nothing to tell apart


def test_certificate_names_fit_in_a_common_name() -> None:
    assert certs.parse_identity(certs.certificate_identity("gym-a", "gw-1", "0123abcd")) == (
        "gym-a",
        "gw-1",
        "0123abcd",
    )
    with pytest.raises(certs.CertificateError, match="too long together"):
        certs.certificate_identity("s" * 30, "g" * 30, "0123abcd")
