"""The patient card number (Luhn check digit) and the card reader's line parser."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.patient_card import (
    MAX_LINE,
    CardLineParser,
    CardNumberError,
    CardRead,
    PatientCardNumber,
    RejectedLine,
    RejectReason,
    encode_card_line,
    luhn_check_digit,
    luhn_valid,
)
from tests import strategies as s

CARD = PatientCardNumber.issue(1, 1)


def test_luhn_matches_the_textbook_example() -> None:
    assert luhn_check_digit("7992739871") == 3
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398714")


def test_issued_numbers_have_the_documented_shape() -> None:
    assert CARD.digits == "3101000000000010"
    assert (CARD.network, CARD.facility, CARD.grouped) == ("31", "01", "3101 0000 0000 0010")
    assert PatientCardNumber.parse(" 3101-0000-0000-0010 ") == CARD


@given(s.patient_cards, st.integers(0, 15), st.integers(1, 9))
def test_every_single_digit_misread_is_caught(
    card: PatientCardNumber, pos: int, delta: int
) -> None:
    d = card.digits
    misread = d[:pos] + str((int(d[pos]) + delta) % 10) + d[pos + 1 :]
    with pytest.raises(CardNumberError) as err:
        PatientCardNumber(misread)
    assert err.value.reason is RejectReason.BAD_CHECK_DIGIT


def test_a_card_number_never_shows_in_repr_or_str() -> None:
    assert CARD.digits not in repr(CARD)
    assert CARD.digits not in str(CARD)
    assert CARD.digits not in f"{CARD} {CardRead(CARD)!r}"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("310100000000001", RejectReason.WRONG_LENGTH),
        ("31010000000000100", RejectReason.WRONG_LENGTH),
        ("3101OOOO00000010", RejectReason.NOT_DIGITS),
        ("\uff13\uff11" + "0" * 14, RejectReason.NOT_DIGITS),  # full-width digits
        ("3101000000000011", RejectReason.BAD_CHECK_DIGIT),
    ],
)
def test_bad_numbers_are_refused_with_a_reason(text: str, reason: RejectReason) -> None:
    with pytest.raises(CardNumberError) as err:
        PatientCardNumber(text)
    assert err.value.reason is reason


# --------------------------------------------------------------------- line parser


@given(st.lists(s.patient_cards, max_size=5), st.data())
def test_every_card_comes_out_whatever_the_chunking(
    cards: list[PatientCardNumber], data: st.DataObject
) -> None:
    stream = b"".join(encode_card_line(c) for c in cards)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    parser = CardLineParser()
    out = []
    last = 0
    for cut in [*cuts, len(stream)]:
        out += parser.feed(stream[last:cut])
        last = cut
    assert out == [CardRead(c) for c in cards]
    assert (parser.lines_rejected, parser.buffered) == (0, 0)


def test_lf_alone_and_blank_lines_are_fine() -> None:
    parser = CardLineParser()
    out = parser.feed(b"\r\n\n" + CARD.digits.encode() + b"\n\r\n  " + CARD.digits.encode() + b"\r")
    assert out == [CardRead(CARD), CardRead(CARD)]


def test_garbage_lines_are_refused_with_a_reason_and_no_content() -> None:
    parser = CardLineParser()
    misread = b"3101000000000011"
    out = parser.feed(b"hello\r\n" + misread + b"\r\n\xff\xfe\x00\r\n12\r\n" + CARD.digits.encode())
    out += parser.feed(b"\r\n")
    assert out == [
        RejectedLine(RejectReason.NOT_DIGITS, 5),
        RejectedLine(RejectReason.BAD_CHECK_DIGIT, 16),
        RejectedLine(RejectReason.NOT_TEXT, 3),
        RejectedLine(RejectReason.WRONG_LENGTH, 2),
        CardRead(CARD),
    ]
    assert parser.lines_rejected == 4


def test_an_overlong_line_is_refused_once_and_the_buffer_stays_bounded() -> None:
    parser = CardLineParser()
    out = parser.feed(b"7" * (MAX_LINE * 10))
    assert out == []
    assert parser.buffered <= MAX_LINE
    out = parser.feed(b"\r\n" + encode_card_line(CARD))
    assert out == [RejectedLine(RejectReason.TOO_LONG, MAX_LINE * 10), CardRead(CARD)]
