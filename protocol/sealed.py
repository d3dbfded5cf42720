"""Lock keys sealed to the cloud: what a pairing sends, readable by the cloud alone.

A lock's PIN key and offline secret are made on the Pi at pairing (:mod:`protocol.lock_auth`)
and must reach the cloud without lying on the Pi's disk or in the broker's store (the
broker sees payloads in the clear and keeps queued ones in its persistence file). So the
pairing seals them to the cloud's X25519 public key, which the cloud publishes retained on
:data:`protocol.topics.PAIRING_KEY` (only the cloud may write there): an ephemeral X25519
key agreement, HKDF-SHA256, then ChaCha20-Poly1305. The additional data binds the blob to
the topic's site and gateway and to the lock id, so a blob moved to another gateway's topic,
or relabelled as another lock, does not open.

Layout: ``ephemeral public key (32) | nonce (12) | ciphertext and tag``.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protocol.errors import LocalProtocolError, MessageError
from protocol.lock_auth import KEY_LEN

PUBLIC_KEY_LEN = 32
NONCE_LEN = 12
_INFO = b"denen lock keys v1"


@dataclass(frozen=True, slots=True)
class CloudLockKeys:
    """The two keys of a lock the cloud needs (the link key stays with the agent). ``repr``
    hides them."""

    pin_key: bytes = field(repr=False)
    offline_secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        for name in ("pin_key", "offline_secret"):
            if len(getattr(self, name)) != KEY_LEN:
                raise LocalProtocolError(f"{name} must be {KEY_LEN} bytes")


def associated_data(site: str, gateway: str, lock_id: str) -> bytes:
    """What a sealed blob is bound to: the sending gateway's topic and the lock."""
    return f"{site}/{gateway}/{lock_id}".encode()


def _key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO + ephemeral + recipient)
    return hkdf.derive(shared)


def seal(recipient: bytes, keys: CloudLockKeys, aad: bytes) -> bytes:
    """Seal ``keys`` to the cloud's raw X25519 public key ``recipient``."""
    if len(recipient) != PUBLIC_KEY_LEN:
        raise LocalProtocolError(f"the cloud's pairing key must be {PUBLIC_KEY_LEN} bytes")
    ephemeral = X25519PrivateKey.generate()
    ephemeral_pub = ephemeral.public_key().public_bytes_raw()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient))
    nonce = secrets.token_bytes(NONCE_LEN)
    body = json.dumps(
        {"pin_key": keys.pin_key.hex(), "offline_secret": keys.offline_secret.hex()}
    ).encode()
    sealed = ChaCha20Poly1305(_key(shared, ephemeral_pub, recipient)).encrypt(nonce, body, aad)
    return ephemeral_pub + nonce + sealed


def open_sealed(private: X25519PrivateKey, blob: bytes, aad: bytes) -> CloudLockKeys:
    """The keys in ``blob``; :class:`MessageError` when it was not sealed to ``private``
    for ``aad`` (another key, another gateway or lock, or altered)."""
    if len(blob) <= PUBLIC_KEY_LEN + NONCE_LEN:
        raise MessageError("sealed lock keys: too short")
    ephemeral_pub = blob[:PUBLIC_KEY_LEN]
    nonce = blob[PUBLIC_KEY_LEN : PUBLIC_KEY_LEN + NONCE_LEN]
    recipient = private.public_key().public_bytes_raw()
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(ephemeral_pub))
        body = ChaCha20Poly1305(_key(shared, ephemeral_pub, recipient)).decrypt(
            nonce, blob[PUBLIC_KEY_LEN + NONCE_LEN :], aad
        )
    except (InvalidTag, ValueError):
        raise MessageError(
            "sealed lock keys do not open: not sealed to this cloud's pairing key, or for "
            "another gateway or lock"
        ) from None
    try:
        raw = json.loads(body)
        return CloudLockKeys(bytes.fromhex(raw["pin_key"]), bytes.fromhex(raw["offline_secret"]))
    except (ValueError, KeyError, TypeError, LocalProtocolError):
        raise MessageError("sealed lock keys: the content is not two 32-byte keys") from None
