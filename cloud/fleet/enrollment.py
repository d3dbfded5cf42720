"""Gateway identity: one-time enrollment tokens, CSR signing, renewal, revocation.

City ops create a token for a site and gateway (valid 24 hours, usable once; only its
SHA-256 is stored; it pins the CA, see :mod:`protocol.enroll_token`). The Pi sends the
token with a CSR; the cloud signs the CSR's key as a client certificate whose CN *it*
chooses, one per certificate (``{site}.{gw}.{tag}``, :mod:`protocol.certs`), records the
serial, and adds that CN to the broker ACL. Enrolling a gateway again revokes what it
held before: a replaced Pi is shut out. Revoking marks certificates revoked, writes a new
CRL and drops their CNs from the ACL; the broker picks both up on SIGHUP (see
``provisioning/broker_config.py`` for what was measured on Mosquitto 2.0.11), then the
cloud closes the connection a revoked certificate still holds (:mod:`cloud.fleet.kick`).

Renewal (:mod:`cloud.fleet.renewal`) signs a new key over the gateway's own MQTT link and
revokes the old certificate once the gateway is connected with the new one.

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

from cryptography import x509
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from cloud.errors import InvalidRequestError, NotFoundError, RefusedError, UnavailableError
from cloud.fleet.kick import kick_blocking
from cloud.fleet.models import EnrollmentToken, GatewayCertificate
from cloud.localtime import format_local
from cloud.settings import CloudSettings
from protocol import certs
from protocol.acl import render_acl
from protocol.clock import Clock
from protocol.enroll_token import SECRET_BYTES, TokenFormatError, make_token, parse_token

log = logging.getLogger(__name__)

CRL_DAYS = 365
ASK_OPS = "ask city operations for a new one"


def token_hash(token: str) -> str:
    """What is stored for a token: the SHA-256 of its one spelling (128 random bits)."""
    try:
        spelling = parse_token(token).canonical
    except TokenFormatError:
        spelling = token.strip()  # an old token: refused by enroll, never matches a new one
    return hashlib.sha256(spelling.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenIssued:
    token: str
    site: str
    gateway: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate just signed for a gateway."""

    certificate_pem: str
    serial: str
    tag: str
    not_after: int


@dataclass(frozen=True, slots=True)
class Enrolled:
    certificate_pem: str
    ca_pem: str
    site: str
    gateway: str
    serial: str
    not_after: int
    replaced: list[str]  # serials of the certificates this enrollment revoked


@dataclass(frozen=True, slots=True)
class Revoked:
    site: str
    gateway: str
    serials: list[str]
    broker_reloaded: bool
    connection_closed: bool  # False: the broker could not be reached to close it


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
            certs.certificate_identity(site, gateway, certs.new_tag())  # ids fit in a CN
        except certs.CertificateError as exc:
            raise InvalidRequestError(str(exc)) from None
        token = str(make_token(secrets.token_bytes(SECRET_BYTES), self._ca_cert()))
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
            try:
                issued = self._issue(session, row.site, row.gateway, csr_pem, now)
            except certs.CertificateError as exc:
                raise InvalidRequestError(f"{exc}; the token was not used") from None
            spent = session.execute(
                update(EnrollmentToken)
                .where(EnrollmentToken.id == row.id, EnrollmentToken.used_at.is_(None))
                .values(used_at=now)
            )
            if spent.rowcount != 1:  # type: ignore[attr-defined]  # CursorResult at runtime
                raise RefusedError(f"this enrollment token was used a moment ago; {ASK_OPS}")
            site, gateway = row.site, row.gateway
            replaced = self._revoke_rows(session, site, gateway, now, keep=issued.serial)
        log.info("gateway %s/%s enrolled, certificate serial %s", site, gateway, issued.serial)
        if replaced:
            log.warning(
                "gateway %s/%s enrolled again: its earlier certificates are revoked (serials %s)",
                site,
                gateway,
                ", ".join(replaced),
            )
        self._update_broker()
        if replaced:
            kick_blocking(self._settings, site, gateway)
        return Enrolled(
            certificate_pem=issued.certificate_pem,
            ca_pem=certs.cert_pem(self._ca_cert()).decode(),
            site=site,
            gateway=gateway,
            serial=issued.serial,
            not_after=issued.not_after,
            replaced=replaced,
        )

    # ------------------------------------------------------------ renew

    def renew(self, site: str, gateway: str, csr_pem: str) -> Issued:
        """Sign a new key for a gateway that asked over its own (authenticated) link.

        The certificates it holds stay valid until it is connected with the new one
        (:meth:`confirm_in_use`); a gateway with no valid certificate gets nothing."""
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            if not self._active_serials(session, site, gateway, now):
                raise RefusedError(
                    f"gateway {site}/{gateway} holds no valid certificate to renew; "
                    "enroll it again with a new token"
                )
            issued = self._issue(session, site, gateway, csr_pem, now)
        log.info("gateway %s/%s renewed, certificate serial %s", site, gateway, issued.serial)
        self._update_broker()
        return issued

    def confirm_in_use(self, site: str, gateway: str, tag: str) -> list[str]:
        """The gateway is connected with its certificate ``tag`` (only a connection made
        with it can say so, see :mod:`protocol.acl`): revoke every other one it holds.

        No kick: the connection holding the gateway's client id is this new one."""
        now = int(self._clock.now())
        cn = certs.certificate_identity(site, gateway, tag)
        with self._sessions.begin() as session:
            current = session.scalars(
                select(GatewayCertificate).where(
                    GatewayCertificate.common_name == cn,
                    GatewayCertificate.site == site,
                    GatewayCertificate.gateway == gateway,
                    GatewayCertificate.revoked_at.is_(None),
                )
            ).one_or_none()
            if current is None:
                return []
            older = self._revoke_rows(session, site, gateway, now, keep=current.serial)
        if older:
            log.warning(
                "gateway %s/%s connected with its new certificate %s; revoked %s",
                site,
                gateway,
                cn,
                ", ".join(older),
            )
            self._update_broker()
        return older

    # ------------------------------------------------------------ revoke

    def revoke(self, site: str, gateway: str) -> Revoked:
        """Revoke every certificate of the gateway; rewrite the CRL and ACL; reload the
        broker; close the connection the gateway still has."""
        if self._settings.crl_path is None:
            raise UnavailableError(
                "revocation needs DENEN_CLOUD_CRL_PATH (the broker's crlfile) to be set"
            )
        self._ca()  # fail before changing anything if the CA is not configured
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            serials = self._revoke_rows(session, site, gateway, now)
            if not serials:
                raise NotFoundError(
                    f"gateway {site}/{gateway} has no certificate that is not already revoked"
                )
        log.warning("gateway %s/%s revoked (serials %s)", site, gateway, ", ".join(serials))
        reloaded = self._update_broker()
        kicked = kick_blocking(self._settings, site, gateway)
        return Revoked(site, gateway, serials, reloaded, kicked)

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

    def active_identities(self) -> list[str]:
        """The CNs of certificates that are neither revoked nor expired (the ACL's users)."""
        now = int(self._clock.now())
        with self._sessions() as session:
            rows = session.scalars(
                select(GatewayCertificate.common_name).where(
                    GatewayCertificate.revoked_at.is_(None), GatewayCertificate.not_after > now
                )
            ).all()
        return sorted(set(rows))

    # ------------------------------------------------------------ helpers

    def _issue(self, session: Session, site: str, gateway: str, csr_pem: str, now: int) -> Issued:
        """Sign ``csr_pem`` under a CN of its own and record it (in ``session``)."""
        ca = self._ca()
        taken = set(
            session.scalars(
                select(GatewayCertificate.common_name).where(
                    GatewayCertificate.site == site, GatewayCertificate.gateway == gateway
                )
            )
        )
        tag = certs.new_tag()
        while certs.certificate_identity(site, gateway, tag) in taken:  # 1 in 4 billion
            tag = certs.new_tag()
        cn = certs.certificate_identity(site, gateway, tag)
        cert = ca.sign_csr(
            csr_pem.encode(),
            cn,
            now=dt.datetime.fromtimestamp(now, dt.UTC),
            days=self._settings.gateway_cert_days,
        )
        serial = format(cert.serial_number, "x")
        not_after = int(cert.not_valid_after_utc.timestamp())
        session.add(
            GatewayCertificate(
                serial=serial,
                site=site,
                gateway=gateway,
                common_name=cn,
                not_after=not_after,
                issued_at=now,
            )
        )
        return Issued(certs.cert_pem(cert).decode(), serial, tag, not_after)

    @staticmethod
    def _active_serials(session: Session, site: str, gateway: str, now: int) -> list[str]:
        return list(
            session.scalars(
                select(GatewayCertificate.serial).where(
                    GatewayCertificate.site == site,
                    GatewayCertificate.gateway == gateway,
                    GatewayCertificate.revoked_at.is_(None),
                    GatewayCertificate.not_after > now,
                )
            )
        )

    @staticmethod
    def _revoke_rows(
        session: Session, site: str, gateway: str, now: int, *, keep: str | None = None
    ) -> list[str]:
        """Mark the gateway's unrevoked certificates (but ``keep``) revoked; their serials."""
        serials = [
            serial
            for serial in session.scalars(
                select(GatewayCertificate.serial).where(
                    GatewayCertificate.site == site,
                    GatewayCertificate.gateway == gateway,
                    GatewayCertificate.revoked_at.is_(None),
                )
            )
            if serial != keep
        ]
        if serials:
            session.execute(
                update(GatewayCertificate)
                .where(GatewayCertificate.serial.in_(serials))
                .values(revoked_at=now)
            )
        return serials

    def ca_pem(self) -> str:
        """The CA certificate (public): a Pi checks it against its token's pin."""
        return certs.cert_pem(self._ca_cert()).decode()

    def _paths(self) -> tuple[Path, Path]:
        cert_path, key_path = self._settings.ca_cert_path, self._settings.ca_key_path
        if cert_path is None or key_path is None:
            raise UnavailableError(
                "enrollment is not set up on this cloud: set DENEN_CLOUD_CA_CERT_PATH and "
                "DENEN_CLOUD_CA_KEY_PATH to the files from `denen provision ca init`"
            )
        return cert_path, key_path

    def _ca_cert(self) -> x509.Certificate:
        cert_path, _ = self._paths()
        try:
            return certs.load_cert(cert_path.read_bytes())
        except OSError as exc:
            raise UnavailableError(f"cannot read the CA: {exc.strerror or exc}") from exc
        except certs.CertificateError as exc:
            raise UnavailableError(f"the CA certificate is not usable: {exc}") from exc

    def _ca(self) -> certs.CertificateAuthority:
        cert_path, key_path = self._paths()
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
            acl = render_acl(self.active_identities())
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
