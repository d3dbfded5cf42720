"""The gateway renews its own certificate before it expires, over its MQTT link.

Once two thirds of the certificate's life have passed (by the agent's clock), the agent
makes a new key next to the current one (``gateway.next.key``, 0600; it never leaves the
Pi) and publishes a CSR for it on ``cert/renew``; again at every connect and every
``check_every_s`` until a certificate comes back on ``cert``. That certificate is taken
only if it is for the pending key, from the CA the agent trusts and for this gateway;
then key and certificate replace the current pair and the link reconnects with them. On
every connect the agent says which certificate it is connected with
(``cert/in-use/{tag}``): that is what makes the cloud revoke the old one
(:mod:`cloud.fleet.renewal`). Were the old one revoked first, a Pi that missed the answer
would be locked out.

A crash between replacing the key and the certificate leaves ``gateway.next.crt``: the
next start (:meth:`CertRenewal.recover`) finishes the swap.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from cryptography import x509

from edge.config import TlsConfig
from protocol import certs, messages, topics
from protocol.clock import Clock
from protocol.errors import MessageError
from protocol.messages import CertInUseData, CertIssuedData, CertRenewalData, MessageType

log = logging.getLogger(__name__)

RENEW_AT = 2 / 3  # of the certificate's lifetime
CHECK_EVERY_S = 3600.0
Publish = Callable[[str, bytes], Awaitable[bool]]


class CertRenewalError(OSError):
    """The certificate files cannot be read or written; the message says which."""


def _write(path: Path, data: bytes, mode: int) -> Path:
    """Write ``data`` next to ``path`` with ``mode`` from the first byte; return the temp
    file, for the caller to move in place when everything it needs is written."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return tmp


class CertRenewal:
    """Renewal of one gateway's client certificate (``[mqtt.tls]`` cert and key)."""

    def __init__(
        self,
        tls: TlsConfig,
        site: str,
        gateway: str,
        clock: Clock,
        *,
        check_every_s: float = CHECK_EVERY_S,
    ) -> None:
        if tls.cert is None or tls.key is None:
            raise ValueError("renewal needs [mqtt.tls] cert and key")
        self.cert_path: Path = tls.cert
        self.key_path: Path = tls.key
        self.ca_path = tls.ca
        self.site = site
        self.gateway = gateway
        self.clock = clock
        self.check_every_s = check_every_s
        self.renewed = 0  # certificates switched to, for tests and logs

    @property
    def next_key_path(self) -> Path:
        return self.key_path.with_name(self.key_path.stem + ".next.key")

    @property
    def next_cert_path(self) -> Path:
        return self.cert_path.with_name(self.cert_path.stem + ".next.crt")

    # ------------------------------------------------------------ reading

    def current(self) -> x509.Certificate:
        try:
            return certs.load_cert(self.cert_path.read_bytes())
        except OSError as exc:
            raise CertRenewalError(f"cannot read {self.cert_path}: {exc.strerror}") from exc

    def due(self) -> bool:
        """Whether two thirds of the current certificate's life have passed."""
        cert = self.current()
        start = cert.not_valid_before_utc.timestamp()
        end = cert.not_valid_after_utc.timestamp()
        return self.clock.now() >= start + (end - start) * RENEW_AT

    def _pending_key(self) -> certs.PrivateKey:
        """The key waiting for its certificate, made now if there is none."""
        try:
            return certs.load_key(self.next_key_path.read_bytes())
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise CertRenewalError(f"cannot read {self.next_key_path}: {exc.strerror}") from exc
        key = certs.generate_key()
        os.replace(_write(self.next_key_path, certs.key_pem(key), 0o600), self.next_key_path)
        log.info("made the key for the next certificate in %s", self.next_key_path)
        return key

    # ------------------------------------------------------------ messages

    def connect_messages(self) -> list[tuple[str, bytes]]:
        """What to publish (QoS 1) on every connect: which certificate this connection
        uses, and the renewal request while one is due."""
        out: list[tuple[str, bytes]] = []
        try:
            cert = self.current()
            _, _, tag = certs.parse_identity(certs.common_name(cert.subject))
            if tag is not None:
                data = CertInUseData(serial=format(cert.serial_number, "x"))
                payload = messages.make(MessageType.CERT_IN_USE, data, ts=self.clock.now())
                out.append((topics.cert_in_use(self.site, self.gateway, tag), payload))
            if self.due():
                out.append(self.request())
        except (CertRenewalError, certs.CertificateError) as exc:
            log.error("certificate renewal: %s", exc)  # noqa: TRY400 - expected failure, no traceback
        return out

    def request(self) -> tuple[str, bytes]:
        """The renewal request for the pending key."""
        csr = certs.make_csr(self._pending_key(), "denen-gateway").decode()
        payload = messages.make(
            MessageType.CERT_RENEWAL, CertRenewalData(csr_pem=csr), ts=self.clock.now()
        )
        return topics.cert_renew(self.site, self.gateway), payload

    async def run(self, publish: Publish) -> None:
        """Ask for a new certificate every ``check_every_s`` while one is due."""
        while True:
            await asyncio.sleep(self.check_every_s)
            try:
                if not self.due():
                    continue
                topic, payload = self.request()
            except (CertRenewalError, certs.CertificateError) as exc:
                log.error("certificate renewal: %s", exc)  # noqa: TRY400 - expected failure, no traceback
                continue
            if await publish(topic, payload):
                log.info("asked the cloud to renew this gateway's certificate")

    # ------------------------------------------------------------ the answer

    def take(self, payload: bytes) -> bool:
        """Install the certificate in ``payload`` if it is the one we asked for; True when
        the link must reconnect to use it."""
        try:
            _, data = messages.parse(payload)
        except MessageError as exc:
            log.warning("ignoring a malformed certificate message: %s", exc)
            return False
        if not isinstance(data, CertIssuedData):
            log.warning("ignoring a %s message on the certificate topic", type(data).__name__)
            return False
        try:
            cert = self._check(data)
        except (CertRenewalError, certs.CertificateError, ValueError, TypeError) as exc:
            log.warning("not taking the certificate %s: %s", data.serial, exc)
            return False
        if cert is None:
            return False
        try:
            self._install(certs.cert_pem(cert))
        except OSError as exc:
            log.error("could not install the new certificate: %s", exc)  # noqa: TRY400 - expected failure, no traceback
            return False
        self.renewed += 1
        log.warning(
            "switched to the renewed certificate %s (valid until %s); reconnecting",
            data.serial,
            cert.not_valid_after_utc.isoformat(),
        )
        return True

    def _check(self, data: CertIssuedData) -> x509.Certificate | None:
        if not self.next_key_path.exists():
            log.info("certificate %s arrived with no renewal pending; ignored", data.serial)
            return None
        cert = certs.load_cert(data.certificate_pem.encode())
        key = certs.load_key(self.next_key_path.read_bytes())
        if cert.public_key() != key.public_key():
            raise certs.CertificateError("it is for another key than the one this Pi made")
        try:
            ca = certs.load_cert(self.ca_path.read_bytes())
        except OSError as exc:
            raise CertRenewalError(f"cannot read {self.ca_path}: {exc.strerror}") from exc
        cert.verify_directly_issued_by(ca)
        site, gateway, _ = certs.parse_identity(certs.common_name(cert.subject))
        if (site, gateway) != (self.site, self.gateway):
            raise certs.CertificateError(f"it names {site}/{gateway}, not this gateway")
        if cert.not_valid_after_utc.timestamp() <= self.clock.now():
            raise certs.CertificateError("it has already expired")
        return cert

    def _install(self, cert_pem: bytes) -> None:
        """Certificate first (as ``.next.crt``), then the key, then the certificate."""
        os.replace(_write(self.next_cert_path, cert_pem, 0o644), self.next_cert_path)
        os.replace(self.next_key_path, self.key_path)
        os.replace(self.next_cert_path, self.cert_path)

    def recover(self) -> None:
        """Finish a swap a crash interrupted (the key moved, its certificate not yet)."""
        if not self.next_cert_path.exists() or self.next_key_path.exists():
            return
        try:
            cert = certs.load_cert(self.next_cert_path.read_bytes())
            key = certs.load_key(self.key_path.read_bytes())
        except (OSError, certs.CertificateError) as exc:
            log.error("cannot finish the certificate swap: %s", exc)  # noqa: TRY400 - expected failure, no traceback
            return
        if cert.public_key() == key.public_key():
            os.replace(self.next_cert_path, self.cert_path)
            log.warning("finished switching to the renewed certificate")
