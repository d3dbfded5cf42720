"""The parsers added at the trust boundaries, fed random and mutated input: each raises
only its own documented error (which the caller turns into a clear answer), never anything
else, and never accepts what it should not.

The MQTT 5 codec reads what the broker sends the cloud; the enrollment token is typed by a
technician; sealed lock keys arrive from any gateway; a card's QR code from any phone.
"""

from __future__ import annotations

import contextlib

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from cloud.clinic.card_qr import CardQrError, read_card_qr, sign_card_qr
from protocol import mqtt5 as mw
from protocol.enroll_token import TokenFormatError, parse_token
from protocol.errors import MessageError
from protocol.patient_card import PatientCardNumber
from protocol.sealed import CloudLockKeys, associated_data, open_sealed, seal
from tests.fuzzing import fuzz_settings
from tests.strategies import mqtt_packets

FUZZ = fuzz_settings(2000)
CLOUD_KEY = X25519PrivateKey.from_private_bytes(bytes(range(32)))
AAD = associated_data("gym-a", "gw-1", "gym-a-1")
QR_KEY = b"q" * 32
CARD = PatientCardNumber("3101000000010019")


def _mutate(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for pos, value in flips:
        if out:
            out[pos % len(out)] = value
    return bytes(out)


@FUZZ
@given(
    st.lists(mqtt_packets, max_size=3),
    st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=8),
    st.binary(max_size=64),
)
def test_the_mqtt_parser_raises_only_wire_errors_on_mutated_streams(
    packets: list[mw.Packet], flips: list[tuple[int, int]], noise: bytes
) -> None:
    stream = _mutate(b"".join(bytes(p) for p in packets), flips) + noise
    parser = mw.PacketParser(max_packet=4096)
    with contextlib.suppress(mw.MqttWireError):
        parser.feed(stream)
    assert parser.buffered <= len(stream)


@FUZZ
@given(st.text(max_size=120))
def test_an_enrollment_token_is_read_or_refused_with_a_reason(text: str) -> None:
    reason = ""
    try:
        parse_token(text)
    except TokenFormatError as exc:
        reason = str(exc)
    else:
        return
    assert reason  # says what is wrong and what to do


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_never_open_as_sealed_lock_keys(blob: bytes) -> None:
    try:
        open_sealed(CLOUD_KEY, blob, AAD)
    except MessageError:
        return
    raise AssertionError("random bytes opened as sealed lock keys")


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=4))
def test_altered_sealed_lock_keys_never_open(flips: list[tuple[int, int]]) -> None:
    keys = CloudLockKeys(b"p" * 32, b"o" * 32)
    blob = seal(CLOUD_KEY.public_key().public_bytes_raw(), keys, AAD)
    altered = _mutate(blob, flips)
    try:
        opened = open_sealed(CLOUD_KEY, altered, AAD)
    except MessageError:
        return
    assert altered == blob  # only the untouched blob opens (a flip may write the same byte)
    assert opened == keys


@FUZZ
@given(st.text(max_size=120))
def test_a_card_qr_code_is_the_signed_card_or_refused(text: str) -> None:
    try:
        card = read_card_qr(QR_KEY, text)
    except CardQrError:
        return
    assert text.strip() == sign_card_qr(QR_KEY, text.strip().split(":")[2], card)


@FUZZ
@given(st.integers(0, 200), st.characters(codec="ascii"))
def test_a_card_qr_code_with_one_character_changed_is_refused(pos: int, new: str) -> None:
    real = sign_card_qr(QR_KEY, "clinic-a", CARD)
    i = pos % len(real)
    altered = real[:i] + new + real[i + 1 :]
    try:
        card = read_card_qr(QR_KEY, altered)
    except CardQrError:
        return
    assert (altered, card) == (real, CARD)  # only the character it already had
