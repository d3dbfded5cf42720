"""Lock keys sealed to the cloud's pairing key open only there, only for the gateway and
lock they were sealed for, and only unaltered."""

from __future__ import annotations

import secrets

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from protocol.errors import MessageError
from protocol.sealed import CloudLockKeys, associated_data, open_sealed, seal

KEYS = CloudLockKeys(secrets.token_bytes(32), secrets.token_bytes(32))
AAD = associated_data("gym-a", "gw-1", "gym-a-1")


def test_the_cloud_opens_what_was_sealed_to_it() -> None:
    cloud = X25519PrivateKey.generate()
    blob = seal(cloud.public_key().public_bytes_raw(), KEYS, AAD)
    assert KEYS.pin_key not in blob
    assert KEYS.pin_key.hex().encode() not in blob
    assert open_sealed(cloud, blob, AAD) == KEYS


@pytest.mark.parametrize(
    "aad",
    [
        associated_data("gym-b", "gw-1", "gym-a-1"),  # moved to another gateway's topic
        associated_data("gym-a", "gw-1", "gym-a-2"),  # relabelled as another lock
    ],
)
def test_a_blob_for_another_gateway_or_lock_does_not_open(aad: bytes) -> None:
    cloud = X25519PrivateKey.generate()
    blob = seal(cloud.public_key().public_bytes_raw(), KEYS, AAD)
    with pytest.raises(MessageError, match="do not open"):
        open_sealed(cloud, blob, aad)


def test_another_key_or_a_flipped_bit_does_not_open() -> None:
    cloud = X25519PrivateKey.generate()
    blob = seal(cloud.public_key().public_bytes_raw(), KEYS, AAD)
    with pytest.raises(MessageError, match="do not open"):
        open_sealed(X25519PrivateKey.generate(), blob, AAD)
    flipped = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(MessageError, match="do not open"):
        open_sealed(cloud, flipped, AAD)
    with pytest.raises(MessageError, match="too short"):
        open_sealed(cloud, blob[:40], AAD)
