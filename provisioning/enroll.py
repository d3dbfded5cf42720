"""``denen provision enroll``: give this Pi its own identity with a one-time token.

The private key is made here and never leaves the Pi; the cloud gets a CSR and answers
with a certificate whose CN it chose (``{site}.{gw}.{tag}``), the CA certificate and the
broker's address. Nothing is written until the answer checks out; then ``OUT`` holds::

    gateway.key (0600)  gateway.crt  ca.crt  site.toml (edge config with [mqtt.tls])

Before the token leaves the Pi, the cloud must prove it is the one the token was made
by: the token pins the CA (:mod:`protocol.enroll_token`), enroll fetches the CA from
``--cloud`` and compares. Over https the cloud's own TLS certificate must then check out
against the system's CAs or that pinned CA; plain http is refused except to this machine
(127.0.0.0/8, ::1), where nothing crosses a network.
"""

from __future__ import annotations

import ipaddress
import json
import ssl
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge.config import parse_config
from edge.errors import ConfigError
from protocol import certs
from protocol.enroll_token import TokenFormatError, ca_pin, parse_token, pin_hex
from protocol.errors import DenenError
from provisioning.pki import write_private, write_public

DEFAULT_STATE_DIR = Path("/var/lib/denen-agent")
TIMEOUT_S = 30.0
Progress = Callable[[str], None]


class EnrollError(DenenError, RuntimeError):
    """Enrollment did not happen; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Enrollment:
    site: str
    gateway: str
    site_toml: Path
    cert: Path
    key: Path
    ca: Path
    mqtt_host: str
    mqtt_port: int


def _request_json(
    url: str, body: dict[str, str] | None, context: ssl.SSLContext | None
) -> dict[str, object]:
    """GET (``body`` None) or POST JSON; every failure is an :class:`EnrollError`."""
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked by check_cloud_url
        url,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        method="GET" if body is None else "POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=context) as response:  # noqa: S310
            data = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("detail", exc.reason)
        except (ValueError, AttributeError):
            detail = exc.reason
        raise EnrollError(f"the cloud refused the enrollment ({exc.code}): {detail}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise EnrollError(
            f"cannot reach the cloud at {url}: {reason}; check --cloud and the network"
        ) from None
    except ValueError as exc:
        raise EnrollError(f"the cloud at {url} did not answer with JSON: {exc}") from None
    if not isinstance(data, dict):
        raise EnrollError(f"the cloud at {url} sent an unexpected answer")
    return data


def check_cloud_url(cloud_url: str) -> urllib.parse.SplitResult:
    """``--cloud`` as a URL: https, or plain http to this machine only."""
    parsed = urllib.parse.urlsplit(cloud_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or not parsed.hostname:
        raise EnrollError(f"--cloud {cloud_url!r} is not an http(s) URL, e.g. https://denen.city")
    if parsed.scheme == "http" and not _is_loopback(parsed.hostname):
        raise EnrollError(
            f"refusing plain http to {parsed.hostname}: the token and this Pi's certificate "
            "would cross the network where anyone on the way can read or change them. Use "
            f"https://{parsed.netloc}{parsed.path} (plain http only to 127.0.0.1 or ::1, "
            "a cloud on this same machine). Nothing was sent"
        )
    return parsed


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback  # 127.0.0.0/8 and ::1
    except ValueError:
        return False  # a name: whatever it resolves to today, it is not checked


def _fetch_pinned_ca(base: str, pin: bytes, https: bool) -> bytes:
    """The cloud's CA, once its fingerprint matches the token's pin."""
    # not yet verified, on purpose: the CA is public and is checked against the pin below,
    # before anything secret is sent; only then does it become something we trust
    unverified = None
    if https:
        unverified = ssl.create_default_context()
        unverified.check_hostname = False
        unverified.verify_mode = ssl.CERT_NONE
    data = _request_json(base + "api/enroll/ca", None, unverified)
    ca_pem = str(_field(data, "ca_pem", str)).encode()
    try:
        ca = certs.load_cert(ca_pem)
    except certs.CertificateError as exc:
        raise EnrollError(f"the cloud sent a CA that is not a certificate: {exc}") from None
    if ca_pin(ca) != pin:
        raise EnrollError(
            f"the cloud at {base} has another CA than the one this token was made for "
            f"(token pins {pin_hex(pin)}, the cloud shows {pin_hex(ca_pin(ca))}). "
            "This is not your city's cloud, or the token is for another deployment: the "
            "token was not sent. Check --cloud, and ask city operations if it is right"
        )
    return ca_pem


def _pinned_context(ca_pem: bytes) -> ssl.SSLContext:
    """The system's CAs and the pinned CA, hostname checked: the cloud's https certificate
    must check out against one of them (a public certificate, or one from the city's CA)."""
    context = ssl.create_default_context()
    context.load_verify_locations(cadata=ca_pem.decode())
    return context


def _field(data: dict[str, object], name: str, kind: type) -> object:
    value = data.get(name)
    if not isinstance(value, kind):
        raise EnrollError(f"the cloud's answer has no valid {name!r}; is --cloud a Denen cloud?")
    return value


def site_toml(site: str, gateway: str, *, state_dir: Path, host: str, port: int, out: Path) -> str:
    """The agent's config after enrollment: the broker over mutual TLS, no locks yet."""
    q = json.dumps  # a JSON string is a valid TOML basic string
    return (
        "# Written by `denen provision enroll`; pair locks with `denen provision lock pair`.\n"
        f"site = {q(site)}\ngateway = {q(gateway)}\nstate_dir = {q(str(state_dir))}\n\n"
        f"[mqtt]\nhost = {q(host)}\nport = {port}\n\n"
        f"[mqtt.tls]\nca = {q(str(out / 'ca.crt'))}\ncert = {q(str(out / 'gateway.crt'))}\n"
        f"key = {q(str(out / 'gateway.key'))}\n"
    )


def enroll(
    token: str,
    cloud_url: str,
    out: Path,
    *,
    state_dir: Path = DEFAULT_STATE_DIR,
    force: bool = False,
    progress: Progress | None = None,
) -> Enrollment:
    """Make a key, spend ``token`` at ``cloud_url``, write the certificate and site.toml."""
    say = progress or (lambda _msg: None)
    parsed = check_cloud_url(cloud_url)
    try:
        pinned = parse_token(token)
    except TokenFormatError as exc:
        raise EnrollError(str(exc)) from None
    out = out.resolve()
    if (out / "gateway.key").exists() and not force:
        raise EnrollError(
            f"{out / 'gateway.key'} exists: this Pi is already enrolled. To enroll it again "
            "(with a new token), pass --force"
        )
    base = cloud_url.rstrip("/") + "/"
    https = parsed.scheme == "https"
    say(f"[1/4] checking that {parsed.netloc} has the CA this token was made for")
    ca_pem = _fetch_pinned_ca(base, pinned.pin, https)
    say("[2/4] making this Pi's private key (it never leaves the Pi)")
    key = certs.generate_key()
    csr = certs.make_csr(key, "denen-gateway")
    say(f"[3/4] asking {parsed.netloc} to sign it")
    data = _request_json(
        urllib.parse.urljoin(base, "api/enroll"),
        {"token": pinned.canonical, "csr_pem": csr.decode()},
        _pinned_context(ca_pem) if https else None,
    )
    cert_pem = str(_field(data, "certificate_pem", str)).encode()
    if str(_field(data, "ca_pem", str)).encode().strip() != ca_pem.strip():
        raise EnrollError("the cloud answered with another CA than it showed; do not use it")
    try:
        cert, ca = certs.load_cert(cert_pem), certs.load_cert(ca_pem)
        cert.verify_directly_issued_by(ca)
    except (certs.CertificateError, ValueError, TypeError) as exc:
        raise EnrollError(f"the cloud sent a certificate that does not check out: {exc}") from None
    if cert.public_key() != key.public_key():
        raise EnrollError("the cloud signed a different key than ours; do not use this cloud")
    site, gateway = str(_field(data, "site", str)), str(_field(data, "gateway", str))
    host, port = str(_field(data, "mqtt_host", str)), int(str(_field(data, "mqtt_port", int)))
    text = site_toml(site, gateway, state_dir=state_dir, host=host, port=port, out=out)
    try:
        parse_config(tomllib.loads(text), source="site.toml")
    except ConfigError as exc:
        raise EnrollError(f"the cloud's answer does not make a valid site.toml: {exc}") from None

    say(f"[4/4] writing {out}/gateway.key, gateway.crt, ca.crt and site.toml")
    write_private(out / "gateway.key", certs.key_pem(key))
    write_public(out / "gateway.crt", cert_pem)
    write_public(out / "ca.crt", ca_pem)
    write_public(out / "site.toml", text.encode())
    return Enrollment(
        site=site,
        gateway=gateway,
        site_toml=out / "site.toml",
        cert=out / "gateway.crt",
        key=out / "gateway.key",
        ca=out / "ca.crt",
        mqtt_host=host,
        mqtt_port=port,
    )
