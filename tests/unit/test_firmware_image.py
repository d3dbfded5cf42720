"""Signed firmware images: the format, versions, every refusal, and the parser fuzzed."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from protocol import firmware_image as fi
from protocol import firmware_transfer as ft
from protocol.errors import FrameError, LocalProtocolError
from protocol.framing import MAX_PAYLOAD
from tests import strategies as s
from tests.fuzzing import fuzz_settings

KEY = s.TEST_RELEASE_KEY
TRUSTED = fi.TrustedKeys.of([KEY.public_key()])
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(32))
MARKER = b"PAYLOAD-MARKER-\x00\xff-never-in-a-message"
PAYLOAD = MARKER * 40
FUZZ = fuzz_settings(1500)


def image(
    *,
    kind: fi.DeviceKind = fi.DeviceKind.LOCK,
    model: str = "RL-2000",
    version: str = "1.4.2",
    payload: bytes = PAYLOAD,
    key: Ed25519PrivateKey = KEY,
) -> fi.FirmwareImage:
    return fi.build_image(key, kind=kind, model=model, version=version, payload=payload)


def verify(
    data: fi.FirmwareImage | bytes, *, running: str = "1.4.1", max_payload: int = 1 << 20
) -> fi.FirmwareImage:
    """Check ``data`` as an RL-2000 lock running ``running`` would."""
    return fi.verify_image(
        data,
        TRUSTED,
        kind=fi.DeviceKind.LOCK,
        model="RL-2000",
        running=running,
        max_payload=max_payload,
    )


def refusal_of(
    data: fi.FirmwareImage | bytes, *, running: str = "1.4.1", max_payload: int = 1 << 20
) -> fi.ImageError:
    with pytest.raises(fi.ImageError) as info:
        verify(data, running=running, max_payload=max_payload)
    message = str(info.value)
    assert MARKER.decode(errors="ignore")[:14] not in message  # never the payload's bytes
    assert MARKER.hex()[:20] not in message
    return info.value


# ------------------------------------------------------------------------ versions


def test_versions_compare_as_numbers_not_as_text() -> None:
    v = fi.FirmwareVersion.parse
    assert v("1.10.0") > v("1.9.9") > v("1.9.0") > v("0.99.99")
    assert str(v("1.4.2")) == "1.4.2"
    assert fi.is_newer("1.4.2", "sim-1.4.1")
    assert not fi.is_newer("1.4.2", "1.4.2")
    assert not fi.is_newer("1.4.1", "1.4.2")


@pytest.mark.parametrize("text", ["1.4", "1.4.2.1", "v1.4.2", "01.4.2", "1.4.-2", "", "1.4.65536"])
def test_a_version_that_is_not_major_minor_patch_is_refused(text: str) -> None:
    with pytest.raises(LocalProtocolError):
        fi.FirmwareVersion.parse(text)


def test_a_running_firmware_may_carry_a_label_before_its_version() -> None:
    assert fi.running_version("sim-0.1.0") == fi.FirmwareVersion(0, 1, 0)
    assert fi.running_version("2.0.1") == fi.FirmwareVersion(2, 0, 1)
    with pytest.raises(LocalProtocolError):
        fi.running_version("latest")


# ---------------------------------------------------------------------- round trips


@given(s.firmware_images)
def test_an_image_round_trips_through_bytes_and_verifies(img: fi.FirmwareImage) -> None:
    parsed = fi.FirmwareImage.from_bytes(bytes(img))
    assert parsed == img
    assert fi.parse_head(img.head) == (img.header, img.signature)
    h = img.header
    if h.version > fi.FirmwareVersion(0, 0, 0):
        fi.verify_image(parsed, TRUSTED, kind=h.kind, model=h.model, running="0.0.0")


@given(st.integers(0, 0xFFFFFFFF), st.binary(min_size=1, max_size=ft.MAX_CHUNK))
def test_chunk_round_trip(offset: int, data: bytes) -> None:
    assert ft.decode_chunk(ft.encode_chunk(offset, data)) == (offset, data)


def test_transfer_payloads_refuse_what_does_not_fit() -> None:
    assert fi.HEAD_MAX <= MAX_PAYLOAD  # UPDATE_BEGIN always fits one frame
    with pytest.raises(LocalProtocolError):
        ft.encode_chunk(0, bytes(ft.MAX_CHUNK + 1))
    with pytest.raises(LocalProtocolError):
        ft.encode_chunk(0, b"")
    assert ft.decode_progress(ft.encode_progress(3, 9)) == (3, 9)
    with pytest.raises(FrameError):
        ft.decode_progress(bytes.fromhex("0000000900000003"))  # 9 of 3


def test_the_release_key_id_names_the_public_key() -> None:
    img = image()
    assert img.header.key_id == fi.key_id(KEY.public_key())
    pem = KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert fi.key_id(fi.load_public_key(pem)) == img.header.key_id
    with pytest.raises(ValueError, match="not a PEM"):
        fi.load_public_key(b"-----BEGIN NONSENSE-----")


# ------------------------------------------------------------------------ refusals


def test_a_good_image_is_accepted() -> None:
    assert verify(bytes(image())).header.version == fi.FirmwareVersion(1, 4, 2)


def test_an_image_for_the_other_kind_of_device_is_refused() -> None:
    img = image(kind=fi.DeviceKind.DISPLAY)
    err = refusal_of(img)
    assert err.refusal is fi.Refusal.WRONG_KIND
    assert str(err) == "image is for a display, not a lock"


def test_an_image_for_another_model_is_refused() -> None:
    err = refusal_of(image(model="RL-3000"))
    assert err.refusal is fi.Refusal.WRONG_MODEL
    assert "'RL-3000'" in str(err)


@pytest.mark.parametrize("running", ["1.4.2", "1.5.0", "sim-2.0.0"])
def test_a_downgrade_or_the_same_version_is_refused(running: str) -> None:
    err = refusal_of(image(), running=running)
    assert err.refusal is fi.Refusal.NOT_NEWER
    assert "1.4.2 is not newer" in str(err)


def test_an_image_signed_by_an_unknown_key_is_refused() -> None:
    assert refusal_of(image(key=OTHER_KEY)).refusal is fi.Refusal.UNKNOWN_KEY
    with pytest.raises(fi.ImageError, match="trusts no release key"):
        fi.check_header(
            image().header,
            fi.TrustedKeys(),
            kind=fi.DeviceKind.LOCK,
            model="RL-2000",
            running="0.0.1",
        )


def test_a_forged_signature_is_refused() -> None:
    img = image()
    forged = replace(img, signature=bytes([img.signature[0] ^ 1]) + img.signature[1:])
    assert refusal_of(forged).refusal is fi.Refusal.BAD_SIGNATURE


def test_a_header_changed_after_signing_is_refused() -> None:
    img = image()
    # a bigger version number written over the signed one: the signature no longer fits
    newer = replace(img, header=replace(img.header, version=fi.FirmwareVersion(9, 0, 0)))
    assert refusal_of(newer).refusal is fi.Refusal.BAD_SIGNATURE


def test_a_payload_changed_after_signing_is_refused() -> None:
    img = image()
    corrupted = replace(img, payload=img.payload[:-1] + b"X")
    assert refusal_of(corrupted).refusal is fi.Refusal.HASH_MISMATCH


def test_an_image_too_large_for_the_device_is_refused() -> None:
    assert refusal_of(image(), max_payload=100).refusal is fi.Refusal.TOO_LARGE


def test_every_truncation_of_an_image_is_refused_as_truncated() -> None:
    data = bytes(image(payload=MARKER))
    for cut in range(len(data)):
        assert refusal_of(data[:cut]).refusal is fi.Refusal.TRUNCATED, cut


def test_bytes_after_the_signature_are_refused() -> None:
    assert refusal_of(bytes(image()) + b"\x00").refusal is fi.Refusal.MALFORMED


def test_something_that_is_not_an_image_is_refused() -> None:
    assert refusal_of(b"MZ\x90\x00" + bytes(200)).refusal is fi.Refusal.MALFORMED
    data = bytearray(bytes(image()))
    data[4] = 2  # a format this code does not know
    assert refusal_of(bytes(data)).refusal is fi.Refusal.MALFORMED


# -------------------------------------------------------------------------- fuzzing


@FUZZ
@given(st.binary(max_size=400))
def test_image_parsers_raise_only_image_errors(raw: bytes) -> None:
    for parse in (fi.FirmwareImage.from_bytes, fi.parse_head):
        with contextlib.suppress(fi.ImageError):
            parse(raw)
    for decode in (ft.decode_chunk, ft.decode_commit, ft.decode_progress):
        with contextlib.suppress(FrameError):
            decode(raw)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4))
def test_a_mutated_image_is_refused_or_is_the_signed_one(flips: list[tuple[int, int]]) -> None:
    signed = bytes(image(payload=MARKER * 4))
    data = bytearray(signed)
    for pos, value in flips:
        data[pos % len(data)] = value
    try:
        accepted = verify(bytes(data))
    except fi.ImageError:
        return
    assert bytes(accepted) == signed
