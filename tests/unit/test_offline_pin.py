"""Offline PINs as a scheme: issue, verify, window edges at hour granularity, other locks,
typos, random digit strings, and the revocation codec. Pure, no lock involved."""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import FrameError, LocalProtocolError
from protocol.lock_wire import (
    MAX_REVOCATIONS_PER_FRAME,
    decode_revocations,
    encode_revocations,
)
from protocol.offline_pin import (
    CLOCK_GRACE_S,
    DEFAULT_MAX_HOURS,
    HOUR_S,
    LOOKAHEAD_H,
    MAX_HOURS,
    NONCES,
    OFFLINE_PIN_LEN,
    START_PERIOD_H,
    TAG_SPACE,
    OfflinePinError,
    OfflinePinId,
    OfflinePinStatus,
    free_nonce,
    issue_offline_pin,
    match_short_id,
    verify_offline_pin,
)
from tests.fuzzing import fuzz_settings

SECRET = bytes([9]) * 32
OTHER = bytes([10]) * 32
H0 = 500_000  # an hour index: 2027-01-15T08:00Z
T0 = H0 * HOUR_S
VALID, OUTSIDE, INVALID = (
    OfflinePinStatus.VALID,
    OfflinePinStatus.OUTSIDE_WINDOW,
    OfflinePinStatus.INVALID,
)

# strategies for this module's types (the wire types' strategies live in tests/strategies.py)
hour_indexes = st.integers(420_000, 1_000_000)  # 2017 .. 2084
offline_ids = st.builds(
    OfflinePinId,
    start_hour=hour_indexes,
    hours=st.integers(1, MAX_HOURS),
    nonce=st.integers(0, NONCES - 1),
)
secrets_32 = st.binary(min_size=32, max_size=32)


def status(code: str, now: float, secret: bytes = SECRET) -> OfflinePinStatus:
    return verify_offline_pin(secret, code, now).status


# ------------------------------------------------------------------ issue and verify


def test_code_is_twelve_digits_and_opens_its_own_window() -> None:
    pin = issue_offline_pin(SECRET, T0 + 600, T0 + 2 * HOUR_S, nonce=0)
    assert len(pin.code) == OFFLINE_PIN_LEN
    assert pin.code.isdigit()
    assert pin.id == OfflinePinId(H0, 2, 0)
    check = verify_offline_pin(SECRET, pin.code, T0 + HOUR_S)
    assert check.valid
    assert check.id == pin.id


def test_repr_never_shows_the_code() -> None:
    pin = issue_offline_pin(SECRET, T0, T0 + HOUR_S, nonce=3)
    assert pin.code not in repr(pin)
    assert pin.code not in str(pin)


@settings(max_examples=300)
@given(secrets_32, offline_ids, st.data())
def test_round_trip_anywhere_in_the_window(
    secret: bytes, pid: OfflinePinId, data: st.DataObject
) -> None:
    pin = issue_offline_pin(secret, pid.start, pid.end, nonce=pid.nonce, max_hours=MAX_HOURS)
    assert pin.id == pid
    now = data.draw(st.integers(pid.start - CLOCK_GRACE_S, pid.end + CLOCK_GRACE_S - 1))
    assert verify_offline_pin(secret, pin.code, now) == verify_offline_pin(
        secret, pin.code, float(now)
    )
    check = verify_offline_pin(secret, pin.code, now)
    assert (check.status, check.id) == (VALID, pid)


def test_start_is_rounded_down_and_end_up_to_the_hour() -> None:
    pin = issue_offline_pin(SECRET, T0 + 1, T0 + HOUR_S + 1, nonce=0)
    assert (pin.id.start, pin.id.end) == (T0, T0 + 2 * HOUR_S)
    assert status(pin.code, T0) is VALID
    assert status(pin.code, T0 + 2 * HOUR_S - 1) is VALID


def test_window_edges_with_the_clock_grace() -> None:
    pin = issue_offline_pin(SECRET, T0, T0 + 3 * HOUR_S, nonce=0)
    start, end = T0 - CLOCK_GRACE_S, T0 + 3 * HOUR_S + CLOCK_GRACE_S
    assert status(pin.code, start - 1) is OUTSIDE
    assert status(pin.code, start) is VALID
    assert status(pin.code, end - 1) is VALID
    assert status(pin.code, end) is OUTSIDE


def test_recognised_as_outside_from_lookahead_before_to_a_period_after() -> None:
    pin = issue_offline_pin(SECRET, T0, T0 + HOUR_S, nonce=0)
    # typed a day early, or days late: a genuine code, just not now (no lockout count)
    assert status(pin.code, T0 - LOOKAHEAD_H * HOUR_S) is OUTSIDE
    last_recognised = T0 + (START_PERIOD_H - LOOKAHEAD_H) * HOUR_S - 1
    assert status(pin.code, last_recognised) is OUTSIDE
    # further away the digits name another week's hour, and the tag no longer matches
    assert status(pin.code, T0 - (LOOKAHEAD_H + 1) * HOUR_S) is INVALID
    assert status(pin.code, last_recognised + 1) is INVALID


def test_the_same_digits_a_week_later_do_not_open() -> None:
    pin = issue_offline_pin(SECRET, T0, T0 + 2 * HOUR_S, nonce=0)
    for weeks in (1, 2, 52):
        assert status(pin.code, T0 + HOUR_S + weeks * START_PERIOD_H * HOUR_S) is INVALID


def test_a_code_for_another_lock_is_invalid() -> None:
    pin = issue_offline_pin(OTHER, T0, T0 + HOUR_S, nonce=0)
    check = verify_offline_pin(SECRET, pin.code, T0 + 60)
    assert (check.status, check.id) == (INVALID, None)


def test_every_single_digit_typo_is_invalid() -> None:
    pin = issue_offline_pin(SECRET, T0, T0 + 2 * HOUR_S, nonce=5)
    for i, c in enumerate(pin.code):
        for d in "0123456789":
            if d != c:
                typo = pin.code[:i] + d + pin.code[i + 1 :]
                assert status(typo, T0 + 60) is INVALID, (i, d)


def test_swapped_neighbours_are_invalid() -> None:
    pin = issue_offline_pin(SECRET, T0, T0 + 2 * HOUR_S, nonce=1)
    for i in range(OFFLINE_PIN_LEN - 1):
        swapped = pin.code[:i] + pin.code[i + 1] + pin.code[i] + pin.code[i + 2 :]
        if swapped != pin.code:
            assert status(swapped, T0 + 60) is INVALID


def test_nonces_give_distinct_codes_for_one_window() -> None:
    codes = {issue_offline_pin(SECRET, T0, T0 + HOUR_S, nonce=n).code for n in range(NONCES)}
    assert len(codes) == NONCES
    assert all(status(c, T0) is VALID for c in codes)


def test_a_longer_window_is_a_different_code() -> None:
    short = issue_offline_pin(SECRET, T0, T0 + HOUR_S, nonce=0)
    long = issue_offline_pin(SECRET, T0, T0 + 2 * HOUR_S, nonce=0)
    assert short.code != long.code
    assert status(short.code, T0 + HOUR_S + 60 * 10) is OUTSIDE
    assert status(long.code, T0 + HOUR_S + 60 * 10) is VALID


def test_codes_of_one_window_share_no_visible_structure() -> None:
    # the header is spread by the tag: neighbours' codes do not share leading digits
    codes = [issue_offline_pin(SECRET, T0, T0 + HOUR_S, nonce=n).code for n in range(NONCES)]
    assert len({c[:3] for c in codes}) > 1
    assert len({c[-3:] for c in codes}) > 1


# ------------------------------------------------------------------ issuing limits


@pytest.mark.parametrize(
    ("start", "end", "match"),
    [
        (T0, T0, "end after"),
        (T0, T0 - 1, "end after"),
        (T0, T0 + DEFAULT_MAX_HOURS * HOUR_S + 1, "at most 24"),
        # 24 hours long, but half past to half past: 25 whole hours once rounded
        (T0 + 1800, T0 + 1800 + DEFAULT_MAX_HOURS * HOUR_S, "at most 24"),
        (-HOUR_S, T0, "non-negative"),
        (float("nan"), T0, "finite"),
    ],
)
def test_issue_refuses_bad_windows(start: float, end: float, match: str) -> None:
    with pytest.raises(OfflinePinError, match=match):
        issue_offline_pin(SECRET, start, end, nonce=0)


def test_max_hours_is_configurable_up_to_the_scheme_limit() -> None:
    pin = issue_offline_pin(SECRET, T0, T0 + MAX_HOURS * HOUR_S, nonce=0, max_hours=MAX_HOURS)
    assert pin.id.hours == MAX_HOURS
    assert status(pin.code, T0 + (MAX_HOURS - 1) * HOUR_S) is VALID
    with pytest.raises(OfflinePinError, match="max_hours"):
        issue_offline_pin(SECRET, T0, T0 + HOUR_S, nonce=0, max_hours=MAX_HOURS + 1)
    with pytest.raises(OfflinePinError):
        issue_offline_pin(SECRET, T0, T0 + 4 * HOUR_S, nonce=0, max_hours=3)


@pytest.mark.parametrize("nonce", [-1, NONCES])
def test_issue_refuses_a_nonce_out_of_range(nonce: int) -> None:
    with pytest.raises(OfflinePinError, match="nonce"):
        issue_offline_pin(SECRET, T0, T0 + HOUR_S, nonce=nonce)


def test_a_short_secret_is_a_local_bug() -> None:
    with pytest.raises(OfflinePinError, match="secret"):
        issue_offline_pin(b"short", T0, T0 + HOUR_S, nonce=0)
    with pytest.raises(OfflinePinError, match="secret"):
        verify_offline_pin(b"", "0" * OFFLINE_PIN_LEN, T0)


def test_free_nonce_skips_codes_already_issued_for_the_window() -> None:
    used = [OfflinePinId(H0, 2, 0), OfflinePinId(H0, 2, 1), OfflinePinId(H0, 3, 2)]
    assert free_nonce(H0, 2, used) == 2
    assert free_nonce(H0 + 1, 2, used) == 0
    full = [OfflinePinId(H0, 2, n) for n in range(NONCES)]
    with pytest.raises(OfflinePinError, match="widen"):
        free_nonce(H0, 2, full)


# ------------------------------------------------------------------ guessing


@fuzz_settings(3000)
@given(st.text(max_size=20), st.integers(0, 2**32 - 1))
def test_verify_never_raises_on_any_text(code: str, now: int) -> None:
    check = verify_offline_pin(SECRET, code, now)
    assert check.status in OfflinePinStatus


@fuzz_settings(3000)
@given(
    st.text(alphabet="0123456789", min_size=OFFLINE_PIN_LEN, max_size=OFFLINE_PIN_LEN),
    st.integers(T0 - 10 * 8760 * HOUR_S, T0 + 50 * 8760 * HOUR_S),
)
def test_random_twelve_digit_strings_do_not_verify(code: str, now: int) -> None:
    # a guess succeeds with odds 1 / TAG_SPACE (~1e-7): 3,000 tries find none
    assert verify_offline_pin(SECRET, code, now).status is INVALID


def test_ten_thousand_random_guesses_at_a_busy_hour_find_nothing() -> None:
    # eight live codes for this very hour; guesses aimed at it still never land
    live = {issue_offline_pin(SECRET, T0, T0 + 2 * HOUR_S, nonce=n).code for n in range(NONCES)}
    rng = random.Random(20240601)  # seeded: the same guesses every run
    guesses = (f"{rng.randrange(10**OFFLINE_PIN_LEN):012d}" for _ in range(10_000))
    hits = [g for g in guesses if g not in live and status(g, T0 + 60) is not INVALID]
    assert hits == []
    assert 1 / TAG_SPACE < 1e-7


# ------------------------------------------------------------------ short ids


@given(offline_ids, offline_ids)
def test_codes_open_at_the_same_moment_never_share_a_short_id(
    a: OfflinePinId, b: OfflinePinId
) -> None:
    overlap = a.start - CLOCK_GRACE_S < b.end + CLOCK_GRACE_S and (
        b.start - CLOCK_GRACE_S < a.end + CLOCK_GRACE_S
    )
    if overlap and a != b:
        assert a.short_id != b.short_id
    assert 0 <= a.short_id < 2**16


def test_match_short_id_picks_the_code_nearest_the_event() -> None:
    now_code = OfflinePinId(H0, 2, 0)
    # serial + 2**16 (= 113 hours, 56 more hours of length): the same short id, 113 h later
    later = OfflinePinId(H0 + 113, 2 + 56, 0)
    assert later.short_id == now_code.short_id
    candidates = [later, now_code, OfflinePinId(H0, 2, 1)]
    assert match_short_id(candidates, now_code.short_id, T0 + 60) == now_code
    assert match_short_id(candidates, now_code.short_id, later.start + 60) == later
    unused = (now_code.short_id + 1000) % 2**16
    assert match_short_id(candidates, unused, T0) is None


# ------------------------------------------------------------------ revocation frame


@given(st.lists(offline_ids, max_size=MAX_REVOCATIONS_PER_FRAME))
def test_revocation_list_round_trip(revoked: list[OfflinePinId]) -> None:
    assert decode_revocations(encode_revocations(revoked)) == revoked


def test_revocation_list_must_fit_a_frame() -> None:
    too_many = [OfflinePinId(H0, 1, 0)] * (MAX_REVOCATIONS_PER_FRAME + 1)
    with pytest.raises(LocalProtocolError):
        encode_revocations(too_many)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "empty"),
        (b"\x02" + bytes(6), "for 2 codes"),
        (b"\x01" + (H0).to_bytes(4, "big") + b"\x00\x00", "revocation 0"),  # zero hours
        (b"\x01" + (H0).to_bytes(4, "big") + bytes([MAX_HOURS + 1, 0]), "revocation 0"),
        (b"\x01" + (H0).to_bytes(4, "big") + bytes([1, NONCES]), "nonce"),
    ],
)
def test_revocation_decoder_says_what_is_wrong(payload: bytes, reason: str) -> None:
    with pytest.raises(FrameError, match=reason):
        decode_revocations(payload)


@fuzz_settings(2000)
@given(st.binary(max_size=400))
def test_revocation_decoder_raises_only_frame_errors(raw: bytes) -> None:
    with contextlib.suppress(FrameError):
        decode_revocations(raw)
