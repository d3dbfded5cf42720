"""The deployment's CA on disk: ``denen provision ca init`` without the command line.

Layout of the CA directory (mode 0700; private keys 0600, everything else 0644)::

    ca.crt  ca.key           the CA (the cloud signs gateway CSRs with it)
    server.crt  server.key   the broker's TLS certificate (SANs: broker names and IPs)
    cloud.crt  cloud.key     the cloud's own MQTT client identity (CN ``cloud``)
    crl.pem                  an empty CRL; Mosquitto's ``crlfile`` needs one from day one

The certificate maths lives in :mod:`protocol.certs`, shared with the cloud.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from protocol import certs
from protocol.errors import DenenError

CA_NAME = "Denen deployment CA"
DEFAULT_CA_DAYS = 3650
DEFAULT_LEAF_DAYS = 825
CRL_DAYS = 365
DEFAULT_HOSTS = ("localhost",)
DEFAULT_IPS = ("127.0.0.1",)
Progress = Callable[[str], None]


class PkiError(DenenError, OSError):
    """The CA directory cannot be created or read; the message says what to do."""


@dataclass(frozen=True, slots=True)
class CaFiles:
    """Where ``init_ca`` put everything."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.directory / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"

    @property
    def cloud_cert(self) -> Path:
        return self.directory / "cloud.crt"

    @property
    def cloud_key(self) -> Path:
        return self.directory / "cloud.key"

    @property
    def crl(self) -> Path:
        return self.directory / "crl.pem"


def write_private(path: Path, data: bytes) -> None:
    """Write a secret with mode 0600 from the first byte (no window where it is readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_public(path: Path, data: bytes) -> None:
    """Write a certificate or config file, mode 0644, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    os.replace(tmp, path)


def parse_ips(values: Sequence[str]) -> list[certs.IpAddress]:
    """IP addresses from the command line; say which one is wrong."""
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_address(value))
        except ValueError:
            raise PkiError(f"--broker-ip {value!r} is not an IP address") from None
    return out


def init_ca(
    directory: Path,
    *,
    broker_hosts: Sequence[str] = (),
    broker_ips: Sequence[str] = (),
    include_loopback: bool = True,
    days: int = DEFAULT_CA_DAYS,
    leaf_days: int = DEFAULT_LEAF_DAYS,
    force: bool = False,
    now: dt.datetime | None = None,
    progress: Progress | None = None,
) -> CaFiles:
    """Create the CA, the broker's server certificate and the cloud's client certificate."""
    say = progress or (lambda _msg: None)
    files = CaFiles(directory)
    if files.ca_key.exists() and not force:
        raise PkiError(
            f"{files.ca_key} already exists: a new CA would lock out every enrolled gateway. "
            "Use another --out, or pass --force if you really mean to start over."
        )
    now = now or dt.datetime.now(dt.UTC)
    hosts = list(dict.fromkeys([*broker_hosts, *(DEFAULT_HOSTS if include_loopback else ())]))
    ips = parse_ips(list(dict.fromkeys([*broker_ips, *(DEFAULT_IPS if include_loopback else ())])))
    if not hosts and not ips:
        raise PkiError("the broker certificate needs a name: pass --broker-host or --broker-ip")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
    except OSError as exc:
        raise PkiError(f"cannot create {directory}: {exc.strerror or exc}") from exc

    say(f"[1/4] CA key and certificate ({days} days) in {directory}")
    ca = certs.CertificateAuthority.create(CA_NAME, now=now, days=days)
    write_private(files.ca_key, certs.key_pem(ca.key))
    write_public(files.ca_cert, certs.cert_pem(ca.cert))

    names = ", ".join([*hosts, *(str(ip) for ip in ips)])
    say(f"[2/4] broker server certificate for {names}")
    issue_server_files(
        ca,
        files.server_cert,
        files.server_key,
        hosts=hosts,
        ips=ips,
        now=now,
        days=min(leaf_days, days),
    )

    say(f"[3/4] the cloud's MQTT client certificate (CN {certs.CLOUD_IDENTITY})")
    issue_client_files(ca, certs.CLOUD_IDENTITY, files.cloud_cert, files.cloud_key, now=now)

    say("[4/4] an empty certificate revocation list")
    crl = ca.crl([], now=now, next_update_days=CRL_DAYS)
    write_public(files.crl, certs.crl_pem(crl))
    return files


def load_ca(files: CaFiles) -> certs.CertificateAuthority:
    """The CA written by :func:`init_ca`."""
    try:
        return certs.CertificateAuthority.from_pem(
            files.ca_cert.read_bytes(), files.ca_key.read_bytes()
        )
    except OSError as exc:
        raise PkiError(
            f"cannot read the CA in {files.directory}: {exc.strerror or exc}; "
            "run `denen provision ca init` first"
        ) from exc


def issue_server_files(
    ca: certs.CertificateAuthority,
    cert_path: Path,
    key_path: Path,
    *,
    hosts: Sequence[str],
    ips: Sequence[certs.IpAddress],
    now: dt.datetime,
    days: int = DEFAULT_LEAF_DAYS,
) -> None:
    """A server key (0600) and certificate for ``hosts`` and ``ips`` (its SANs; the first
    is its CN), signed by ``ca``: the broker's, or a clinic agent's pages'."""
    key = certs.generate_key()
    cert = ca.issue(
        hosts[0] if hosts else str(ips[0]),
        key.public_key(),
        not_before=now - certs.CLOCK_SKEW,
        not_after=now + dt.timedelta(days=days),
        server=True,
        dns_names=hosts,
        ips=ips,
    )
    write_private(key_path, certs.key_pem(key))
    write_public(cert_path, certs.cert_pem(cert))


def issue_client_files(
    ca: certs.CertificateAuthority,
    cn: str,
    cert_path: Path,
    key_path: Path,
    *,
    now: dt.datetime,
    days: int = DEFAULT_LEAF_DAYS,
    not_after: dt.datetime | None = None,
) -> None:
    """A client key (0600) and certificate for ``cn``, signed by ``ca``.

    ``not_after`` overrides ``days`` (tests use it to make an expired certificate).
    """
    key = certs.generate_key()
    end = not_after or now + dt.timedelta(days=days)
    start = min(now - certs.CLOCK_SKEW, end - dt.timedelta(days=1))
    cert = ca.issue(cn, key.public_key(), not_before=start, not_after=end)
    write_private(key_path, certs.key_pem(key))
    write_public(cert_path, certs.cert_pem(cert))
