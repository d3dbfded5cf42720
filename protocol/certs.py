"""X.509 for the deployment's own CA, sans-IO: build certificates, sign CSRs, build CRLs.

Shared by the technician's CLI (``provisioning.pki`` creates the CA and writes the files)
and the cloud (which signs gateway CSRs at enrollment and writes the CRL). Nothing here
touches a file or the clock: callers pass ``now`` and get PEM bytes back.

Identities (the certificate CN, which Mosquitto turns into the MQTT username with
``use_identity_as_username``): the cloud is ``cloud``; each certificate of a gateway has
its own, ``{site}.{gw}.{tag}`` with a random tag, e.g. ``gym-a.gw-1.3f09a2c4`` (see
``protocol/acl.py`` for why not ``gym-a/gw-1``). Its own, because the broker's ACL is by
username and a revoked certificate's open connection keeps its username: were it the
gateway's, the next enrollment of that gateway would give the old connection its rights
back. Certificates issued before the tag have ``{site}.{gw}`` and still work.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from protocol.errors import DenenError
from protocol.ids import is_slug

CLOUD_IDENTITY = "cloud"
IDENTITY_SEPARATOR = "."
TAG_BYTES = 4
TAG_RE = re.compile(r"[0-9a-f]{8}")
MAX_CN = 64  # X.520 upper bound; cryptography refuses a longer common name
CLOCK_SKEW = dt.timedelta(minutes=5)  # not_before in the past: a Pi's clock may lag a little
MIN_RSA_BITS = 2048

PrivateKey = ec.EllipticCurvePrivateKey
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class CertificateError(DenenError, ValueError):
    """A CSR, certificate or key that cannot be used; the message says why."""


def gateway_identity(site: str, gateway: str) -> str:
    """A gateway's name in certificates, ``{site}.{gw}``: the CN of those issued before
    each certificate had its own (:func:`certificate_identity`)."""
    for kind, value in (("site", site), ("gateway", gateway)):
        if not is_slug(value):
            raise CertificateError(f"{kind} id {value!r} is not a slug [a-z0-9-]{{1,40}}")
    return f"{site}{IDENTITY_SEPARATOR}{gateway}"


def new_tag() -> str:
    """A fresh certificate tag: 8 random hex digits."""
    return secrets.token_hex(TAG_BYTES)


def certificate_identity(site: str, gateway: str, tag: str) -> str:
    """The CN (and MQTT username) of one certificate of a gateway: ``{site}.{gw}.{tag}``."""
    if TAG_RE.fullmatch(tag) is None:
        raise CertificateError(f"certificate tag {tag!r} is not {TAG_BYTES * 2} hex digits")
    cn = f"{gateway_identity(site, gateway)}{IDENTITY_SEPARATOR}{tag}"
    if len(cn) > MAX_CN:
        room = MAX_CN - len(tag) - 2
        raise CertificateError(
            f"site id {site!r} and gateway id {gateway!r} are too long together for a "
            f"certificate name: at most {room} characters between them; choose shorter ids"
        )
    return cn


def parse_identity(cn: str) -> tuple[str, str, str | None]:
    """``(site, gateway, tag)`` of a gateway's CN; the tag is None for an untagged one."""
    parts = cn.split(IDENTITY_SEPARATOR)
    if len(parts) == 2:  # site and gateway
        gateway_identity(parts[0], parts[1])
        return parts[0], parts[1], None
    if len(parts) == 3:  # site, gateway and tag
        certificate_identity(*parts)
        return parts[0], parts[1], parts[2]
    raise CertificateError(f"{cn!r} is not a gateway identity site.gateway[.tag]")


def generate_key() -> PrivateKey:
    """A fresh EC P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted: protect it with file modes (0600)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_key(pem: bytes) -> PrivateKey:
    """Parse an EC private key written by :func:`key_pem`."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"not a readable unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError("expected an EC private key (denen makes P-256 keys)")
    return key


def cert_pem(cert: x509.Certificate) -> bytes:
    """The certificate as PEM."""
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert(pem: bytes) -> x509.Certificate:
    """Parse one PEM certificate."""
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise CertificateError(f"not a PEM certificate: {exc}") from exc


def common_name(name: x509.Name) -> str:
    """The CN of a subject, or ``""``."""
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=ca,
        crl_sign=ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """The deployment's CA: its key and self-signed certificate."""

    key: PrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, name: str, *, now: dt.datetime, days: int) -> CertificateAuthority:
        """A new self-signed CA valid for ``days``."""
        key = generate_key()
        subject = _name(name)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @classmethod
    def from_pem(cls, cert: bytes, key: bytes) -> CertificateAuthority:
        """Load a CA from its PEM certificate and key; refuse a mismatched pair."""
        ca = cls(load_key(key), load_cert(cert))
        if ca.cert.public_key() != ca.key.public_key():
            raise CertificateError("the CA key does not belong to the CA certificate")
        return ca

    def issue(
        self,
        cn: str,
        public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
        *,
        not_before: dt.datetime,
        not_after: dt.datetime,
        server: bool = False,
        dns_names: Iterable[str] = (),
        ips: Iterable[IpAddress] = (),
    ) -> x509.Certificate:
        """A leaf certificate for ``cn``: client auth, or server auth with SANs."""
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(ip) for ip in ips]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def issue_for(
        self, cn: str, public_key: ec.EllipticCurvePublicKey, *, now: dt.datetime, days: int
    ) -> x509.Certificate:
        """A client certificate for ``cn`` valid from now (less clock skew) for ``days``."""
        return self.issue(
            cn, public_key, not_before=now - CLOCK_SKEW, not_after=now + dt.timedelta(days=days)
        )

    def sign_csr(self, csr_pem: bytes, cn: str, *, now: dt.datetime, days: int) -> x509.Certificate:
        """Sign a CSR's key as a client certificate for ``cn``.

        Only the CSR's public key is used (after its self-signature is checked): the
        subject and extensions the requester asked for are ignored, the CA chooses them.
        """
        public_key = check_csr(csr_pem)
        return self.issue(
            cn, public_key, not_before=now - CLOCK_SKEW, not_after=now + dt.timedelta(days=days)
        )

    def crl(
        self,
        revoked: Sequence[tuple[int, dt.datetime]],
        *,
        now: dt.datetime,
        next_update_days: int,
    ) -> x509.CertificateRevocationList:
        """A CRL listing ``(serial, revoked_at)``; an empty list is a valid (empty) CRL.

        OpenSSL refuses every client once the CRL is past ``next_update``: write a new
        one (any revocation does) before then.
        """
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - CLOCK_SKEW)
            .next_update(now + dt.timedelta(days=next_update_days))
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .add_extension(x509.CRLNumber(int(now.timestamp())), critical=False)
        )
        for serial, when in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
            )
        return builder.sign(self.key, hashes.SHA256())


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    """The CRL as PEM (what Mosquitto's ``crlfile`` reads)."""
    return crl.public_bytes(serialization.Encoding.PEM)


def make_csr(key: PrivateKey, cn: str) -> bytes:
    """A PEM CSR for ``key``; the CA ignores ``cn`` and sets its own."""
    csr = x509.CertificateSigningRequestBuilder().subject_name(_name(cn)).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def check_csr(csr_pem: bytes) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """The public key of a well-formed, self-signed CSR with a strong enough key."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise CertificateError(
            "csr_pem is not a PEM certificate signing request; "
            "`denen provision enroll` makes one for you"
        ) from exc
    try:
        valid = csr.is_signature_valid
    except InvalidSignature:  # pragma: no cover - older cryptography raised instead
        valid = False
    if not valid:
        raise CertificateError("the CSR's signature does not match its key")
    key = csr.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.key_size < 256:
            raise CertificateError("EC keys must be at least P-256")
        return key
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise CertificateError(f"RSA keys must have at least {MIN_RSA_BITS} bits")
        return key
    raise CertificateError("the CSR's key must be EC (P-256) or RSA")
