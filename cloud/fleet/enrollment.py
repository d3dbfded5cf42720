"""Gateway identity: one-time enrollment tokens, CSR signing, revocation.

City ops create a token for a site and gateway (valid 24 hours, usable once; only its
SHA-256 is stored). The Pi sends the token with a CSR; the cloud signs the CSR's key as a
client certificate whose CN *it* chooses (``{site}.{gw}``), records the serial, and adds
the gateway to the broker ACL. Revoking marks the gateway's certificates revoked, writes a
new CRL and drops the gateway from the ACL; the broker picks both up on SIGHUP (see
``provisioning/broker_config.py`` for what was measured on Mosquitto 2.0.11).

Known trade-off: the cloud holds the issuing CA's private key (``ca_key_path``), so a
compromised cloud can mint gateway certificates. The alternatives (an offline CA with an
intermediate per cloud, or an HSM/KMS signer) keep the same API and are not built yet.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import secrets
import signal
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from cloud.errors import InvalidRequestError, NotFoundError, RefusedError, UnavailableError
from cloud.fleet.models import EnrollmentToken, GatewayCertificate
from cloud.localtime import format_local
from cloud.settings import CloudSettings
from protocol import certs
from protocol.acl import render_acl
from protocol.clock import Clock

log = logging.getLogger(__name__)

TOKEN_PREFIX = "denen-enroll-"  # noqa: S105 - a prefix, so scanners and people spot one
CRL_DAYS = 365
ASK_OPS = "ask city operations for a new one"


def token_hash(token: str) -> str:
    """What is stored for a token: its SHA-256 (the token has 192 random bits)."""
    return hashlib.sha256(token.strip().encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenIssued:
    token: str
    site: str
    gateway: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class Enrolled:
    certificate_pem: str
    ca_pem: str
    site: str
    gateway: str
    serial: str
    not_after: int


@dataclass(frozen=True, slots=True)
class Revoked:
    site: str
    gateway: str
    serials: list[str]
    broker_reloaded: bool


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    os.replace(tmp, path)


class EnrollmentService:
    """Tokens, enrollment and revocation; the broker files it keeps up to date."""

    def __init__(
        self, sessions: sessionmaker[Session], clock: Clock, settings: CloudSettings
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._settings = settings

    # ------------------------------------------------------------ tokens

    def create_token(self, site: str, gateway: str, created_by: str) -> TokenIssued:
        """A new one-time token for ``site``/``gateway``; the clear token is returned once."""
        try:
            certs.gateway_identity(site, gateway)
        except certs.CertificateError as exc:
            raise InvalidRequestError(str(exc)) from None
        token = TOKEN_PREFIX + secrets.token_urlsafe(24)
        now = int(self._clock.now())
        expires = now + self._settings.enrollment_token_ttl_s
        with self._sessions.begin() as session:
            session.add(
                EnrollmentToken(
                    token_hash=token_hash(token),
                    site=site,
                    gateway=gateway,
                    created_by=created_by,
                    created_at=now,
                    expires_at=expires,
                )
            )
        log.info("enrollment token created for %s/%s by %s", site, gateway, created_by)
        return TokenIssued(token, site, gateway, expires)

    # ------------------------------------------------------------ enroll

    def enroll(self, token: str, csr_pem: str) -> Enrolled:
        """Spend ``token`` and sign ``csr_pem`` for the gateway the token was made for."""
        now = int(self._clock.now())
        zone = self._settings.zone
        with self._sessions.begin() as session:
            row = session.scalars(
                select(EnrollmentToken).where(EnrollmentToken.token_hash == token_hash(token))
            ).one_or_none()
            if row is None:
                raise RefusedError(
                    f"this enrollment token is not known; check it was copied in full, or {ASK_OPS}"
                )
            if row.used_at is not None:
                raise RefusedError(
                    "this enrollment token was already used on "
                    f"{format_local(row.used_at, zone)}; {ASK_OPS}"
                )
            if row.expires_at <= now:
                raise RefusedError(
                    f"this enrollment token expired on {format_local(row.expires_at, zone)}; "
                    f"{ASK_OPS}"
                )
            ca = self._ca()
            cn = certs.gateway_identity(row.site, row.gateway)
            try:
                cert = ca.sign_csr(
                    csr_pem.encode(),
                    cn,
                    now=dt.datetime.fromtimestamp(now, dt.UTC),
                    days=self._settings.gateway_cert_days,
                )
            except certs.CertificateError as exc:
                raise InvalidRequestError(f"{exc}; the token was not used") from None
            spent = session.execute(
                update(EnrollmentToken)
                .where(EnrollmentToken.id == row.id, EnrollmentToken.used_at.is_(None))
                .values(used_at=now)
            )
            if spent.rowcount != 1:  # type: ignore[attr-defined]  # CursorResult at runtime
                raise RefusedError(f"this enrollment token was used a moment ago; {ASK_OPS}")
            serial = format(cert.serial_number, "x")
            not_after = int(cert.not_valid_after_utc.timestamp())
            session.add(
                GatewayCertificate(
                    serial=serial,
                    site=row.site,
                    gateway=row.gateway,
                    common_name=cn,
                    not_after=not_after,
                    issued_at=now,
                )
            )
            site, gateway = row.site, row.gateway
        log.info("gateway %s/%s enrolled, certificate serial %s", site, gateway, serial)
        self._update_broker()
        return Enrolled(
            certificate_pem=certs.cert_pem(cert).decode(),
            ca_pem=certs.cert_pem(ca.cert).decode(),
            site=site,
            gateway=gateway,
            serial=serial,
            not_after=not_after,
        )

    # ------------------------------------------------------------ revoke

    def revoke(self, site: str, gateway: str) -> Revoked:
        """Revoke every certificate of the gateway; rewrite the CRL and ACL; reload the broker."""
        if self._settings.crl_path is None:
            raise UnavailableError(
                "revocation needs DENEN_CLOUD_CRL_PATH (the broker's crlfile) to be set"
            )
        self._ca()  # fail before changing anything if the CA is not configured
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            serials = list(
                session.scalars(
                    select(GatewayCertificate.serial).where(
                        GatewayCertificate.site == site,
                        GatewayCertificate.gateway == gateway,
                        GatewayCertificate.revoked_at.is_(None),
                    )
                )
            )
            if not serials:
                raise NotFoundError(
                    f"gateway {site}/{gateway} has no certificate that is not already revoked"
                )
            session.execute(
                update(GatewayCertificate)
                .where(GatewayCertificate.serial.in_(serials))
                .values(revoked_at=now)
            )
        log.warning("gateway %s/%s revoked (serials %s)", site, gateway, ", ".join(serials))
        reloaded = self._update_broker()
        return Revoked(site, gateway, serials, reloaded)

    def write_crl(self) -> Path:
        """Write a fresh CRL (also before the old one's ``nextUpdate`` runs out)."""
        path = self._settings.crl_path
        if path is None:
            raise UnavailableError("set DENEN_CLOUD_CRL_PATH to where the broker reads its CRL")
        ca = self._ca()
        now = int(self._clock.now())
        with self._sessions() as session:
            rows = session.execute(
                select(GatewayCertificate.serial, GatewayCertificate.revoked_at).where(
                    GatewayCertificate.revoked_at.is_not(None)
                )
            ).all()
        revoked = [
            (int(serial, 16), dt.datetime.fromtimestamp(int(at or now), dt.UTC))
            for serial, at in rows
        ]
        crl = ca.crl(revoked, now=dt.datetime.fromtimestamp(now, dt.UTC), next_update_days=CRL_DAYS)
        _write_atomically(path, certs.crl_pem(crl))
        return path

    def enrolled_gateways(self) -> list[tuple[str, str]]:
        """Gateways holding a certificate that is neither revoked nor expired."""
        now = int(self._clock.now())
        with self._sessions() as session:
            rows = session.execute(
                select(GatewayCertificate.site, GatewayCertificate.gateway)
                .where(GatewayCertificate.revoked_at.is_(None), GatewayCertificate.not_after > now)
                .distinct()
            ).all()
        return sorted((site, gw) for site, gw in rows)

    # ------------------------------------------------------------ helpers

    def _ca(self) -> certs.CertificateAuthority:
        cert_path, key_path = self._settings.ca_cert_path, self._settings.ca_key_path
        if cert_path is None or key_path is None:
            raise UnavailableError(
                "enrollment is not set up on this cloud: set DENEN_CLOUD_CA_CERT_PATH and "
                "DENEN_CLOUD_CA_KEY_PATH to the files from `denen provision ca init`"
            )
        try:
            return certs.CertificateAuthority.from_pem(
                cert_path.read_bytes(), key_path.read_bytes()
            )
        except OSError as exc:
            raise UnavailableError(f"cannot read the CA: {exc.strerror or exc}") from exc
        except certs.CertificateError as exc:
            raise UnavailableError(f"the CA files are not usable: {exc}") from exc

    def _update_broker(self) -> bool:
        """Rewrite the ACL and CRL the broker reads, then SIGHUP it; True if signalled."""
        if self._settings.broker_acl_path is not None:
            acl = render_acl(self.enrolled_gateways())
            _write_atomically(self._settings.broker_acl_path, acl.encode())
        if self._settings.crl_path is not None:
            self.write_crl()
        pid_file = self._settings.broker_pid_file
        if pid_file is None:
            return False
        try:
            os.kill(int(pid_file.read_text().strip()), signal.SIGHUP)
        except (OSError, ValueError) as exc:
            log.error(  # noqa: TRY400 - expected failure, no traceback
                "could not signal the broker (pid file %s): %s; send it SIGHUP by hand",
                pid_file,
                exc,
            )
            return False
        return True
