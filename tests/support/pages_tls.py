"""The clinic agent's pages over https in tests: a CA of the test's standing in for the
city's, and the pages' certificate from it for 127.0.0.1 and localhost."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from protocol import certs
from provisioning.pki import issue_server_files


@dataclass(frozen=True)
class PagesCa:
    """The city's CA as the reception's browser trusts it, and the agent's pages'
    certificate from it (for 127.0.0.1 and localhost)."""

    ca_cert: Path
    cert: Path
    key: Path

    @classmethod
    def make(cls, directory: Path) -> PagesCa:
        now = dt.datetime.now(dt.UTC)
        ca = certs.CertificateAuthority.create("City test CA", now=now, days=2)
        made = cls(directory / "ca.crt", directory / "pages.crt", directory / "pages.key")
        directory.mkdir(parents=True, exist_ok=True)
        made.ca_cert.write_bytes(certs.cert_pem(ca.cert))
        ips = [ipaddress.IPv4Address("127.0.0.1")]
        issue_server_files(ca, made.cert, made.key, hosts=["localhost"], ips=ips, now=now)
        return made

    def trust(self) -> ssl.SSLContext:
        """What a browser that trusts the city's CA checks: the chain and the address."""
        return ssl.create_default_context(cafile=str(self.ca_cert))
