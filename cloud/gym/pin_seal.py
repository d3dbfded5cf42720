"""Slot PINs at rest: AES-GCM under a key derived from the cloud's secret key, bound to
their grant's id (a sealed PIN copied onto another grant does not open).

The cloud needs the PIN itself, not only a tag: the snapshot carries a keyed tag per lock
(``protocol.pin.pin_tag``) and a lock added later needs tags of PINs issued before it;
the citizen's booking page shows the PIN. A copy of the database without the secret key
holds no PIN. Changing ``DENEN_CLOUD_SECRET_KEY`` makes the sealed PINs unreadable: cancel
and re-approve the bookings of the next days, or keep the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cloud.errors import CloudError

VERSION = "v1"
_NONCE_LEN = 12


class PinSealError(CloudError, ValueError):
    """A sealed PIN that this secret key cannot open (another key, or altered)."""


def _key(secret_key: str) -> bytes:
    # a key of its own: a leaked session key or survey signature tells nothing about it
    return hmac.new(secret_key.encode(), b"denen-pin-seal-v1", hashlib.sha256).digest()


class PinSeal:
    """Seal and open slot PINs with the key derived from ``secret_key``."""

    def __init__(self, secret_key: str) -> None:
        self._aead = AESGCM(_key(secret_key))

    def seal(self, grant_id: str, pin: str) -> str:
        """``v1.<base64url(nonce | ciphertext | tag)>``, at most 60 characters."""
        nonce = os.urandom(_NONCE_LEN)
        sealed = self._aead.encrypt(nonce, pin.encode(), grant_id.encode())
        return f"{VERSION}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open(self, grant_id: str, sealed: str) -> str:
        """The PIN in ``sealed``; :class:`PinSealError` if this key did not seal it for
        ``grant_id``."""
        version, _, data = sealed.partition(".")
        try:
            raw = base64.urlsafe_b64decode(data) if version == VERSION else b""
            pin = self._aead.decrypt(raw[:_NONCE_LEN], raw[_NONCE_LEN:], grant_id.encode())
        except (ValueError, InvalidTag):
            raise PinSealError(
                f"the PIN of grant {grant_id} cannot be read with this DENEN_CLOUD_SECRET_KEY "
                "(was the key changed?); cancel the booking and approve a new one"
            ) from None
        return pin.decode()
