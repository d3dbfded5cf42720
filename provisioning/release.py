"""Release signing: the Ed25519 key pair firmware images are signed with, and signing.

The private key (``release.key``, PKCS#8 PEM, mode 0600) belongs on the release manager's
machine, never on a gateway, a device or the cloud; devices get the public key
(``release.pub``) baked into their firmware (the simulators: ``--release-key``). The image
format is :mod:`protocol.firmware_image`.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.errors import DenenError
from protocol.firmware_image import (
    DeviceKind,
    FirmwareImage,
    FirmwareVersion,
    build_image,
    key_id,
)
from provisioning.pki import write_private, write_public

PRIVATE_NAME = "release.key"
PUBLIC_NAME = "release.pub"


class ReleaseError(DenenError, ValueError):
    """A key or payload that cannot be used; the message says what to do."""


@dataclass(frozen=True, slots=True)
class ReleaseKeyFiles:
    private: Path
    public: Path
    key_id: str  # hex, as an image names its key


def keygen(directory: Path, *, force: bool = False) -> ReleaseKeyFiles:
    """A new release key pair in ``directory`` (made 0700); refuses to replace one."""
    private, public = directory / PRIVATE_NAME, directory / PUBLIC_NAME
    if private.exists() and not force:
        raise ReleaseError(
            f"{private} already exists: devices that trust it would refuse images signed by a "
            "new key. Use another --out, or --force if you really mean to replace it."
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
    except OSError as exc:
        raise ReleaseError(f"cannot create {directory}: {exc.strerror or exc}") from exc
    key = Ed25519PrivateKey.generate()
    write_private(
        private,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    write_public(
        public,
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    return ReleaseKeyFiles(private, public, key_id(key.public_key()).hex())


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The release private key; refused when group or others may read it."""
    try:
        mode = path.stat().st_mode
        pem = path.read_bytes()
    except OSError as exc:
        raise ReleaseError(f"cannot read the release key {path}: {exc.strerror or exc}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ReleaseError(f"{path} is readable by others: `chmod 600 {path}` first")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ReleaseError(f"{path} is not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ReleaseError(f"{path} is not an Ed25519 key (make one with `denen release keygen`)")
    return key


def sign_release(
    key_path: Path, *, kind: str, model: str, version: str, payload_path: Path, out: Path
) -> FirmwareImage:
    """Sign the payload file as ``kind`` ``model`` firmware ``version``; write the image."""
    key = load_private_key(key_path)
    try:
        payload = payload_path.read_bytes()
    except OSError as exc:
        raise ReleaseError(f"cannot read {payload_path}: {exc.strerror or exc}") from exc
    try:
        image = build_image(
            key,
            kind=DeviceKind[kind.upper()],
            model=model,
            version=FirmwareVersion.parse(version),
            payload=payload,
        )
    except KeyError:
        raise ReleaseError(f"--kind {kind!r}: lock or display") from None
    except ValueError as exc:
        raise ReleaseError(str(exc)) from None
    write_public(out, bytes(image))
    return image
