"""Signed firmware images for locks and displays, sans-IO: bytes in, checked values out.

An image is ``header || payload || signature``::

    header     magic 4 "DNFW" | format 1 | kind 1 | key_id 8 | major 2 | minor 2 | patch 2
               | payload_len 4 | sha256 32 | model_len 1 | model n (UTF-8, 1..32 bytes)
    payload    payload_len bytes: what the device flashes
    signature  64: Ed25519 by a release key over header || payload

All integers are big-endian. ``key_id`` is the first 8 bytes of SHA-256 of the raw 32-byte
release public key: a device that trusts several keys (a rotation) picks the one to check
with, and refuses an image from a key it does not hold before a byte of payload arrives.

The release tool (``denen release sign``) builds images; a device checks one in two halves,
because it receives the payload in chunks: :func:`check_header` as soon as the header is
in (kind, model, newer version, known key, size), :func:`check_payload` once every byte is
(SHA-256, then signature). :func:`verify_image` does both on a whole image. Every refusal
is an :class:`ImageError` with a :class:`Refusal` and a message that may name the header's
fields but never holds payload or signature bytes.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum, IntEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.errors import LocalProtocolError, RemoteProtocolError

MAGIC = b"DNFW"
IMAGE_FORMAT = 1
KEY_ID_LEN = 8
SHA256_LEN = 32
SIGNATURE_LEN = 64
MODEL_MAX_BYTES = 32
VERSION_PART_MAX = 0xFFFF
_FIXED = struct.Struct(">4sBB8sHHHI32sB")
HEADER_MAX = _FIXED.size + MODEL_MAX_BYTES
# what a device needs before the payload: the header and the signature (UPDATE_BEGIN)
HEAD_MAX = HEADER_MAX + SIGNATURE_LEN
PAYLOAD_MAX = 0xFFFFFFFF

_VERSION = re.compile(r"(0|[1-9][0-9]{0,4})\.(0|[1-9][0-9]{0,4})\.(0|[1-9][0-9]{0,4})")
# what a running firmware may call itself: "1.4.2", or with a label, "sim-0.1.0"
_RUNNING = re.compile(r"(?:[A-Za-z][A-Za-z0-9_]*-)?(" + _VERSION.pattern + ")")


class DeviceKind(IntEnum):
    LOCK = 1
    DISPLAY = 2


class Refusal(Enum):
    """Why an image (or a part of one) is refused."""

    MALFORMED = "malformed"  # not an image: magic, format, field values
    TRUNCATED = "truncated"  # ends before its header, payload or signature does
    TOO_LARGE = "too_large"  # more payload than the device can hold
    WRONG_KIND = "wrong_kind"  # a display image offered to a lock, or the other way
    WRONG_MODEL = "wrong_model"
    UNKNOWN_KEY = "unknown_key"  # signed by a key the device does not trust
    BAD_SIGNATURE = "bad_signature"
    HASH_MISMATCH = "hash_mismatch"  # the payload is not the one the header names
    NOT_NEWER = "not_newer"  # a downgrade, or the version already running


class ImageError(RemoteProtocolError):
    """An image refused for ``refusal``; ``str()`` is safe to log and to send in a NACK."""

    def __init__(self, refusal: Refusal, message: str) -> None:
        super().__init__(message)
        self.refusal = refusal
        self.message = message


# ------------------------------------------------------------------------- versions


@dataclass(frozen=True, slots=True, order=True)
class FirmwareVersion:
    """``MAJOR.MINOR.PATCH``, each 0..65535; ordered as numbers (1.10.0 > 1.9.9)."""

    major: int
    minor: int
    patch: int

    def __post_init__(self) -> None:
        for part in (self.major, self.minor, self.patch):
            if not 0 <= part <= VERSION_PART_MAX:
                raise LocalProtocolError(f"a version part must be 0..{VERSION_PART_MAX}")

    @classmethod
    def parse(cls, text: str) -> FirmwareVersion:
        """``"1.4.2"`` → version; ``ValueError`` (a LocalProtocolError) for anything else."""
        match = _VERSION.fullmatch(text)
        if match is None:
            raise LocalProtocolError(f"version {text[:40]!r} is not MAJOR.MINOR.PATCH like 1.4.2")
        return cls(*(int(part) for part in match.groups()))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def running_version(firmware: str) -> FirmwareVersion:
    """The version in what a device reports as its firmware: ``"1.4.2"`` or ``"sim-0.1.0"``."""
    match = _RUNNING.fullmatch(firmware)
    if match is None:
        raise LocalProtocolError(
            f"firmware {firmware[:40]!r} does not end in a version like 1.4.2 (e.g. sim-1.4.2)"
        )
    return FirmwareVersion.parse(match.group(1))


def is_newer(candidate: FirmwareVersion | str, running: FirmwareVersion | str) -> bool:
    """Whether ``candidate`` may replace ``running`` (strictly newer: no downgrade)."""
    new = candidate if isinstance(candidate, FirmwareVersion) else running_version(candidate)
    old = running if isinstance(running, FirmwareVersion) else running_version(running)
    return new > old


# ----------------------------------------------------------------------------- keys


def key_id(public_key: Ed25519PublicKey) -> bytes:
    """The 8 bytes an image names its release key by."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:KEY_ID_LEN]


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """A release public key from PEM (``release.pub``); ``ValueError`` when it is not one."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise LocalProtocolError("not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise LocalProtocolError("not an Ed25519 public key")
    return key


@dataclass(frozen=True, slots=True)
class TrustedKeys:
    """The release public keys a device accepts images from, by key id."""

    by_id: Mapping[bytes, Ed25519PublicKey] = field(default_factory=dict)

    @classmethod
    def of(cls, keys: Iterable[Ed25519PublicKey]) -> TrustedKeys:
        return cls({key_id(k): k for k in keys})

    def __len__(self) -> int:
        return len(self.by_id)


# --------------------------------------------------------------------------- header


def _check_model(model: str) -> bytes:
    raw = model.encode()
    if not 1 <= len(raw) <= MODEL_MAX_BYTES or not model.isprintable():
        raise LocalProtocolError(f"a model is 1..{MODEL_MAX_BYTES} printable UTF-8 bytes")
    return raw


@dataclass(frozen=True, slots=True)
class ImageHeader:
    """What an image says about itself; covered by the signature with the payload."""

    kind: DeviceKind
    model: str
    version: FirmwareVersion
    payload_len: int
    sha256: bytes = field(repr=False)
    key_id: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_model(self.model)
        if not 0 <= self.payload_len <= PAYLOAD_MAX:
            raise LocalProtocolError("payload_len does not fit in 32 bits")
        if len(self.sha256) != SHA256_LEN or len(self.key_id) != KEY_ID_LEN:
            raise LocalProtocolError("sha256 is 32 bytes and key_id 8")

    def encode(self) -> bytes:
        model = _check_model(self.model)
        v = self.version
        return (
            _FIXED.pack(
                MAGIC,
                IMAGE_FORMAT,
                self.kind,
                self.key_id,
                v.major,
                v.minor,
                v.patch,
                self.payload_len,
                self.sha256,
                len(model),
            )
            + model
        )

    @classmethod
    def decode_prefix(cls, data: bytes) -> tuple[ImageHeader, int]:
        """The header at the start of ``data`` and its length; ImageError when it is not one."""
        if len(data) < _FIXED.size:
            raise ImageError(Refusal.TRUNCATED, f"image of {len(data)} bytes ends in its header")
        magic, fmt, kind, kid, major, minor, patch, length, digest, model_len = _FIXED.unpack_from(
            data
        )
        if magic != MAGIC:
            raise ImageError(Refusal.MALFORMED, "not a Denen firmware image (magic bytes)")
        if fmt != IMAGE_FORMAT:
            raise ImageError(Refusal.MALFORMED, f"image format {fmt} is not {IMAGE_FORMAT}")
        try:
            device = DeviceKind(kind)
        except ValueError:
            raise ImageError(Refusal.MALFORMED, f"unknown device kind {kind}") from None
        if not 1 <= model_len <= MODEL_MAX_BYTES:
            raise ImageError(Refusal.MALFORMED, f"model of {model_len} bytes")
        end = _FIXED.size + model_len
        if len(data) < end:
            raise ImageError(Refusal.TRUNCATED, f"image of {len(data)} bytes ends in its header")
        try:
            model = data[_FIXED.size : end].decode()
            header = cls(device, model, FirmwareVersion(major, minor, patch), length, digest, kid)
        except (UnicodeDecodeError, LocalProtocolError):
            raise ImageError(Refusal.MALFORMED, "the model is not printable UTF-8") from None
        return header, end

    def describe(self) -> str:
        """``lock RL-2000 1.4.2`` — for messages and logs."""
        return f"{self.kind.name.lower()} {self.model!r} {self.version}"


# ---------------------------------------------------------------------------- image


@dataclass(frozen=True, slots=True)
class FirmwareImage:
    header: ImageHeader
    payload: bytes = field(repr=False)
    signature: bytes = field(repr=False)

    def __bytes__(self) -> bytes:
        return self.header.encode() + self.payload + self.signature

    @property
    def head(self) -> bytes:
        """What a device takes before the payload (``UPDATE_BEGIN``): header and signature."""
        return self.header.encode() + self.signature

    @classmethod
    def from_bytes(cls, data: bytes) -> FirmwareImage:
        """Parse a whole image (no signature check); ImageError saying what is wrong."""
        header, off = ImageHeader.decode_prefix(data)
        need = off + header.payload_len + SIGNATURE_LEN
        if len(data) < need:
            raise ImageError(
                Refusal.TRUNCATED, f"image of {len(data)} bytes, its header says {need}"
            )
        if len(data) > need:
            raise ImageError(Refusal.MALFORMED, f"{len(data) - need} bytes after the signature")
        payload = data[off : off + header.payload_len]
        return cls(header, bytes(payload), bytes(data[off + header.payload_len :]))


def build_image(
    private_key: Ed25519PrivateKey,
    *,
    kind: DeviceKind,
    model: str,
    version: FirmwareVersion | str,
    payload: bytes,
) -> FirmwareImage:
    """Sign ``payload`` as ``model``'s firmware ``version`` (the release tool, and tests)."""
    header = ImageHeader(
        kind,
        model,
        version if isinstance(version, FirmwareVersion) else FirmwareVersion.parse(version),
        len(payload),
        hashlib.sha256(payload).digest(),
        key_id(private_key.public_key()),
    )
    return FirmwareImage(header, payload, private_key.sign(header.encode() + payload))


def parse_head(data: bytes) -> tuple[ImageHeader, bytes]:
    """``UPDATE_BEGIN``'s payload → (header, signature); ImageError when it is not that."""
    header, off = ImageHeader.decode_prefix(data)
    if len(data) != off + SIGNATURE_LEN:
        raise ImageError(
            Refusal.TRUNCATED if len(data) < off + SIGNATURE_LEN else Refusal.MALFORMED,
            f"image head of {len(data)} bytes: a header and a 64-byte signature expected",
        )
    return header, bytes(data[off:])


def check_header(
    header: ImageHeader,
    trusted: TrustedKeys,
    *,
    kind: DeviceKind,
    model: str,
    running: FirmwareVersion | str,
    max_payload: int = PAYLOAD_MAX,
) -> None:
    """What a device checks before it takes a byte of payload; raises :class:`ImageError`."""
    if header.kind is not kind:
        raise ImageError(
            Refusal.WRONG_KIND,
            f"image is for a {header.kind.name.lower()}, not a {kind.name.lower()}",
        )
    if header.model != model:
        raise ImageError(
            Refusal.WRONG_MODEL, f"image is for model {header.model!r}, this is {model!r}"
        )
    if not is_newer(header.version, running):
        old = running if isinstance(running, FirmwareVersion) else running_version(running)
        raise ImageError(
            Refusal.NOT_NEWER, f"version {header.version} is not newer than the running {old}"
        )
    if header.payload_len > max_payload:
        raise ImageError(
            Refusal.TOO_LARGE, f"payload of {header.payload_len} bytes > {max_payload}"
        )
    if not trusted.by_id:
        raise ImageError(Refusal.UNKNOWN_KEY, "this device trusts no release key")
    if header.key_id not in trusted.by_id:
        raise ImageError(Refusal.UNKNOWN_KEY, "image is signed by a release key not trusted here")


def check_payload(
    header: ImageHeader, payload: bytes, signature: bytes, trusted: TrustedKeys
) -> None:
    """Hash, then signature, of a fully received image; raises :class:`ImageError`."""
    if len(payload) != header.payload_len:
        raise ImageError(Refusal.TRUNCATED, f"{len(payload)} of {header.payload_len} payload bytes")
    if hashlib.sha256(payload).digest() != header.sha256:
        raise ImageError(Refusal.HASH_MISMATCH, "payload SHA-256 differs from the header's")
    key = trusted.by_id.get(header.key_id)
    if key is None:
        raise ImageError(Refusal.UNKNOWN_KEY, "image is signed by a release key not trusted here")
    try:
        key.verify(signature, header.encode() + payload)
    except InvalidSignature:
        raise ImageError(Refusal.BAD_SIGNATURE, "signature does not verify") from None


def verify_image(
    image: FirmwareImage | bytes,
    trusted: TrustedKeys,
    *,
    kind: DeviceKind,
    model: str,
    running: FirmwareVersion | str,
    max_payload: int = PAYLOAD_MAX,
) -> FirmwareImage:
    """Parse (if bytes) and check a whole image as a device would; the image, or ImageError."""
    parsed = image if isinstance(image, FirmwareImage) else FirmwareImage.from_bytes(image)
    check_header(
        parsed.header, trusted, kind=kind, model=model, running=running, max_payload=max_payload
    )
    check_payload(parsed.header, parsed.payload, parsed.signature, trusted)
    return parsed
