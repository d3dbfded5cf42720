"""Frame authentication and the PAIR payload, pure (protocol.lock_auth)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given

from protocol.errors import FrameError
from protocol.framing import crc16
from protocol.lock_auth import (
    COUNTER_MAX,
    KEY_ID_LINK,
    AuthError,
    CounterExhaustedError,
    Direction,
    LinkAuth,
    LockSecrets,
    PairRequest,
    frame_mac,
)
from protocol.lock_wire import FrameType, LockFrame
from tests.strategies import frames

KEY = bytes(range(32))


def pair() -> tuple[LinkAuth, LinkAuth]:
    return LinkAuth(KEY, Direction.TO_LOCK), LinkAuth(KEY, Direction.TO_AGENT)


@given(frames)
def test_a_sealed_frame_round_trips_and_checks(frame: LockFrame) -> None:
    agent, lock = pair()
    sent = agent.seal(frame)
    assert (sent.key_id, sent.counter) == (KEY_ID_LINK, 1)
    received = LockFrame.from_bytes(bytes(sent))
    assert lock.check(received) == sent
    assert lock.recv_counter == 1


def test_every_tampered_byte_is_refused() -> None:
    agent, _ = pair()
    raw = bytes(agent.seal(LockFrame(FrameType.SET_SLOT, 3, bytes(41))))
    for i in range(4, len(raw) - 2):  # every body byte; the CRC is recomputed by a forger
        tampered = bytearray(raw)
        tampered[i] ^= 0x01
        try:
            frame = LockFrame.from_bytes(_fix_crc(bytes(tampered)))
        except FrameError:
            continue  # no longer a frame at all (version, type)
        _, lock = pair()
        with pytest.raises(AuthError):
            lock.check(frame)


def _fix_crc(raw: bytes) -> bytes:
    return raw[:-2] + crc16(raw[2:-2]).to_bytes(2, "big")


def test_a_replayed_frame_is_refused_and_the_counter_stays() -> None:
    agent, lock = pair()
    first = agent.seal(LockFrame(FrameType.CLEAR_SLOT, 1, b"\xff"))
    second = agent.seal(LockFrame(FrameType.GET_SLOTS, 2))
    lock.check(first)
    lock.check(second)
    for old in (first, second):
        with pytest.raises(AuthError, match="replay"):
            lock.check(old)
    assert lock.recv_counter == 2


def test_an_older_frame_arriving_late_is_refused() -> None:
    agent, lock = pair()
    older, newer = (
        agent.seal(LockFrame(FrameType.GET_INFO, 1)),
        agent.seal(LockFrame(FrameType.GET_INFO, 2)),
    )
    lock.check(newer)
    with pytest.raises(AuthError):
        lock.check(older)


def test_a_wrong_key_or_no_key_is_refused() -> None:
    agent = LinkAuth(bytes(32), Direction.TO_LOCK)
    _, lock = pair()
    with pytest.raises(AuthError, match="MAC"):
        lock.check(agent.seal(LockFrame(FrameType.GET_INFO, 1)))
    with pytest.raises(AuthError, match="not authenticated"):
        lock.check(LockFrame(FrameType.GET_INFO, 1))
    with pytest.raises(AuthError, match="key 2"):
        lock.check(LockFrame(FrameType.GET_INFO, 1, key_id=2, counter=5))


def test_a_frame_reflected_back_to_its_sender_is_refused() -> None:
    agent, _ = pair()
    sent = agent.seal(LockFrame(FrameType.ACK, 1))
    other_agent = LinkAuth(KEY, Direction.TO_LOCK)  # receives TO_AGENT frames
    with pytest.raises(AuthError):
        other_agent.check(sent)


def test_a_reply_is_bound_to_its_request() -> None:
    agent, lock = pair()
    req1 = agent.seal(LockFrame(FrameType.GET_SLOTS, 1))
    lock.check(req1)
    reply1 = lock.seal(LockFrame(FrameType.SLOTS, 1, b"\x00"), bound=req1.counter)
    req2 = agent.seal(LockFrame(FrameType.GET_SLOTS, 1))
    # a fresh agent (restarted, forgot the lock's counter) still refuses the old reply
    fresh = LinkAuth(KEY, Direction.TO_LOCK, send_counter=agent.send_counter)
    with pytest.raises(AuthError):
        fresh.check(reply1, bound=req2.counter)
    assert agent.check(reply1, bound=req1.counter) == reply1


def test_the_counter_never_rolls_over() -> None:
    agent = LinkAuth(KEY, Direction.TO_LOCK, send_counter=COUNTER_MAX - 1)
    lock = LinkAuth(KEY, Direction.TO_AGENT, recv_counter=COUNTER_MAX - 1)
    last = agent.seal(LockFrame(FrameType.GET_INFO, 1))
    assert last.counter == COUNTER_MAX
    lock.check(last)
    with pytest.raises(CounterExhaustedError, match="pair the lock again"):
        agent.seal(LockFrame(FrameType.GET_INFO, 2))
    # a forger's wrapped counter 0 with a valid MAC would still be a replay
    wrapped = replace(last, counter=0)
    wrapped = replace(wrapped, mac=frame_mac(KEY, Direction.TO_LOCK, wrapped))
    with pytest.raises(AuthError):
        lock.check(wrapped)


def test_pair_request_round_trip_and_keys_are_random() -> None:
    a, b = LockSecrets.generate(), LockSecrets.generate()
    assert len({a.link_key, a.pin_key, a.offline_secret, b.link_key}) == 4
    request = PairRequest(a, 1_800_000_000)
    assert PairRequest.decode(request.encode()) == request
    assert a.link_key.hex() not in repr(a)
    with pytest.raises(FrameError):
        PairRequest.decode(request.encode()[:-1])


def test_a_pair_request_carries_a_confirm_code_when_it_has_one() -> None:
    request = PairRequest(LockSecrets.generate(), 1_800_000_000, confirm=42)
    assert PairRequest.decode(request.encode()) == request
    assert len(request.encode()) == len(PairRequest(request.keys, request.time).encode()) + 4
    with pytest.raises(FrameError, match="with a confirm code"):
        PairRequest.decode(request.encode()[:-2])
