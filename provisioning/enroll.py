"""``denen provision enroll``: give this Pi its own identity with a one-time token.

The private key is made here and never leaves the Pi; the cloud gets a CSR and answers
with a certificate whose CN it chose (``{site}.{gw}``), the CA certificate and the broker's
address. Nothing is written until the answer checks out; then ``OUT`` holds::

    gateway.key (0600)  gateway.crt  ca.crt  site.toml (edge config with [mqtt.tls])
"""

from __future__ import annotations

import json
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


def _post_json(url: str, body: dict[str, str]) -> dict[str, object]:
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked by the caller
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
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
    parsed = urllib.parse.urlsplit(cloud_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise EnrollError(f"--cloud {cloud_url!r} is not an http(s) URL, e.g. https://denen.city")
    out = out.resolve()
    if (out / "gateway.key").exists() and not force:
        raise EnrollError(
            f"{out / 'gateway.key'} exists: this Pi is already enrolled. To enroll it again "
            "(with a new token), pass --force"
        )
    say("[1/3] making this Pi's private key (it never leaves the Pi)")
    key = certs.generate_key()
    csr = certs.make_csr(key, "denen-gateway")
    say(f"[2/3] asking {parsed.netloc} to sign it")
    data = _post_json(
        urllib.parse.urljoin(cloud_url.rstrip("/") + "/", "api/enroll"),
        {"token": token.strip(), "csr_pem": csr.decode()},
    )
    cert_pem = str(_field(data, "certificate_pem", str)).encode()
    ca_pem = str(_field(data, "ca_pem", str)).encode()
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

    say(f"[3/3] writing {out}/gateway.key, gateway.crt, ca.crt and site.toml")
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
