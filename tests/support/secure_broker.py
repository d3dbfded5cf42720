"""A private Mosquitto with the production TLS config (provisioning.broker_config), its
CA (provisioning.pki) and helpers to mint client certificates and connect with them."""

from __future__ import annotations

import contextlib
import datetime as dt
import ssl
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt

from protocol import certs
from protocol.acl import render_acl
from provisioning import pki
from provisioning.broker import Mosquitto, free_port
from provisioning.broker_config import BrokerConfig, render_config

GATEWAYS = (("gym-a", "gw-1"), ("gym-b", "gw-1"))


def acl_for(gateways: Iterable[tuple[str, str]]) -> str:
    """The ACL for ``gateways`` whose certificates are named ``{site}.{gw}`` (as
    :meth:`SecureBroker.gateway` makes them); the cloud names each certificate its own."""
    return render_acl(certs.gateway_identity(site, gw) for site, gw in gateways)


@dataclass(frozen=True)
class Identity:
    """A client certificate and its key on disk."""

    cn: str
    cert: Path
    key: Path

    @property
    def serial(self) -> int:
        return certs.load_cert(self.cert.read_bytes()).serial_number


@dataclass
class SecureBroker:
    """The broker, its CA directory and the files it reloads (acl, crl.pem)."""

    broker: Mosquitto
    ca: pki.CaFiles
    acl: Path
    crl: Path

    @property
    def port(self) -> int:
        return self.broker.port

    @property
    def authority(self) -> certs.CertificateAuthority:
        return pki.load_ca(self.ca)

    @property
    def cloud(self) -> Identity:
        return Identity(certs.CLOUD_IDENTITY, self.ca.cloud_cert, self.ca.cloud_key)

    def issue(
        self,
        cn: str,
        *,
        name: str | None = None,
        not_after: dt.datetime | None = None,
        authority: certs.CertificateAuthority | None = None,
    ) -> Identity:
        """A client certificate for ``cn`` (from another CA, or already expired, if asked)."""
        stem = name or cn
        out = Identity(cn, self.ca.directory / f"{stem}.crt", self.ca.directory / f"{stem}.key")
        now = dt.datetime.now(dt.UTC)
        ca = authority or self.authority
        pki.issue_client_files(ca, cn, out.cert, out.key, now=now, not_after=not_after)
        return out

    def gateway(self, site: str, gateway: str) -> Identity:
        """A valid certificate for a gateway (CN ``{site}.{gw}``)."""
        return self.issue(certs.gateway_identity(site, gateway))

    def allow(self, gateways: Iterable[tuple[str, str]]) -> None:
        """Rewrite the ACL for ``gateways`` and reload the broker."""
        self.acl.write_text(acl_for(gateways))
        self.broker.reload()

    def revoke(self, *identities: Identity, keep: Iterable[tuple[str, str]] = ()) -> None:
        """What the cloud does: a CRL listing ``identities``, an ACL of only the ``keep``
        gateways, then one reload."""
        now = dt.datetime.now(dt.UTC)
        crl = self.authority.crl(
            [(i.serial, now) for i in identities], now=now, next_update_days=30
        )
        self.crl.write_bytes(certs.crl_pem(crl))
        self.acl.write_text(acl_for(keep))
        self.broker.reload()

    def tls_context(self, identity: Identity | None) -> ssl.SSLContext:
        """Trust our CA (hostname checked: localhost); present ``identity`` if given."""
        ctx = ssl.create_default_context(cafile=str(self.ca.ca_cert))
        if identity is not None:
            ctx.load_cert_chain(identity.cert, identity.key)
        return ctx

    def client(
        self, identity: Identity | None, identifier: str, *, timeout: float = 5
    ) -> aiomqtt.Client:
        """An MQTT 5 client over TLS to ``localhost``; not yet connected."""
        return aiomqtt.Client(
            "localhost",
            self.port,
            identifier=identifier,
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=self.tls_context(identity),
            timeout=timeout,
        )


@contextlib.contextmanager
def running_secure_broker(
    directory: Path, gateways: Iterable[tuple[str, str]] = GATEWAYS
) -> Iterator[SecureBroker]:
    """CA + generated TLS config + ACL for ``gateways``; the broker runs until exit."""
    ca = pki.init_ca(directory / "ca", days=30)
    port = free_port()
    acl, data = directory / "broker" / "acl", directory / "broker" / "data"
    data.mkdir(parents=True)
    acl.write_text(acl_for(gateways))
    config = BrokerConfig(
        cafile=ca.ca_cert,
        certfile=ca.server_cert,
        keyfile=ca.server_key,
        crlfile=ca.crl,
        acl_file=acl,
        persistence_location=data,
        port=port,
        bind_address="127.0.0.1",
        max_queued_messages=10_000,
        log_dest=None,
    )
    broker = Mosquitto(directory / "broker", port=port, config=render_config(config))
    broker.start()
    try:
        yield SecureBroker(broker, ca, acl, ca.crl)
    finally:
        broker.stop()
