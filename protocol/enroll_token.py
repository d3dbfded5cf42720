"""The enrollment token a technician types into a Pi: a one-time secret and the CA's pin.

Made by the cloud (``cloud.fleet.enrollment``), read by ``denen provision enroll``. It looks
like ``denen2-abcd-efgh-…`` (13 groups of four): base32 (RFC 4648, lowercase) of 16 random
bytes, the secret, then the first 16 bytes of the SHA-256 of the deployment CA certificate
(DER), the pin. Case, spaces and dashes are ignored when it is read back, so what was read
off a screen and typed with a slip of the shift key still works.

The pin is how the Pi knows it talks to *its* cloud before it trusts anything it is sent
(no trust on first use): enroll fetches the CA, compares its fingerprint with the pin, and
only then sends the secret. 128 bits of SHA-256 are kept, not 256, so the token stays short
enough to type; forging a CA with the same first 128 bits is a second preimage, 2^128 work.

Tokens from before the pin (``denen-enroll-…``) are recognised so the technician is told
to ask for a new one rather than that the token is mistyped.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from protocol.errors import DenenError

PREFIX = "denen2-"
OLD_PREFIX = "denen-enroll-"
SECRET_BYTES = 16
PIN_BYTES = 16
GROUP = 4
_BODY_CHARS = 52  # base32 of 32 bytes, without its "====" padding


class TokenFormatError(DenenError, ValueError):
    """Text that is not an enrollment token of this format; the message says what to do."""


@dataclass(frozen=True, slots=True)
class EnrollToken:
    """A parsed token: the one-time secret and the CA pin it carries."""

    secret: bytes
    pin: bytes

    def __str__(self) -> str:
        body = base64.b32encode(self.secret + self.pin).decode().rstrip("=").lower()
        groups = [body[i : i + GROUP] for i in range(0, len(body), GROUP)]
        return PREFIX + "-".join(groups)

    @property
    def canonical(self) -> str:
        """The one spelling of this token (what the cloud stores the hash of)."""
        return str(self)


def ca_pin(ca: x509.Certificate) -> bytes:
    """The pin of a CA certificate: the first 16 bytes of the SHA-256 of its DER."""
    return ca.fingerprint(hashes.SHA256())[:PIN_BYTES]


def pin_hex(pin: bytes) -> str:
    """A pin as people compare it: hex in pairs, ``ab:cd:…``."""
    return ":".join(f"{b:02x}" for b in pin)


def parse_token(text: str) -> EnrollToken:
    """Read a token as typed; say what is wrong with anything else."""
    cleaned = "".join(text.split()).lower()
    if cleaned.startswith(OLD_PREFIX):
        raise TokenFormatError(
            "this is an old enrollment token (denen-enroll-…): it does not carry the "
            "fingerprint of the cloud's CA, so this Pi could not check it talks to your "
            "cloud. Ask city operations to issue a new token (it starts with denen2-)"
        )
    if not cleaned.startswith(PREFIX):
        raise TokenFormatError(
            "this is not an enrollment token: a token starts with denen2- followed by "
            "groups of four letters and digits; copy it again from city operations"
        )
    body = cleaned.removeprefix(PREFIX).replace("-", "")
    if len(body) != _BODY_CHARS:
        raise TokenFormatError(
            f"this enrollment token has {len(body)} letters and digits after denen2-, "
            f"not {_BODY_CHARS}: a group was left out or typed twice; copy it again"
        )
    try:
        raw = base64.b32decode(body.upper() + "====")
    except binascii.Error:
        raise TokenFormatError(
            "this enrollment token holds a character that cannot be in one (only a-z and "
            "2-7 are): check letters like 0/o and 1/l, or copy it again"
        ) from None
    return EnrollToken(raw[:SECRET_BYTES], raw[SECRET_BYTES:])


def make_token(secret: bytes, ca: x509.Certificate) -> EnrollToken:
    """A token for ``secret`` (16 random bytes) that pins ``ca``."""
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"the secret must be {SECRET_BYTES} bytes")
    return EnrollToken(secret, ca_pin(ca))
