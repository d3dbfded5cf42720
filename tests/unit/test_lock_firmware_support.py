"""Helpers shared by the lock firmware unit tests (no tests here): build a lock, send frames.

Named test_* only because this layer owns the test_lock_firmware* files.
"""

from __future__ import annotations

import weakref
from typing import Any

from firmware_sim.lock import LockFirmware
from firmware_sim.lock.pairing import PairingRecord
from protocol.clock import ManualClock
from protocol.lock_auth import KEY_ID_LINK, Direction, LinkAuth, LockSecrets
from protocol.lock_wire import (
    FrameType,
    LockFrame,
    SlotEntry,
    WireEvent,
    decode_events,
    decode_nack,
    encode_u32,
)
from protocol.messages import LockEventKind
from protocol.pin import pin_tag

PIN_KEY = bytes(range(32))
SECRETS = LockSecrets(bytes([7]) * 32, PIN_KEY, bytes([9]) * 32)
T0 = 1_800_000_000  # the ManualClock's default start
GRANT = "0190f1d2-8a3b-7c4d-9e5f-0123456789ab"

# the agent's end of each lock's link, so that request() speaks like a paired agent
_AGENTS: weakref.WeakKeyDictionary[LockFirmware, LinkAuth] = weakref.WeakKeyDictionary()


def make_lock(*, paired: bool = True, **kwargs: Any) -> tuple[LockFirmware, ManualClock]:
    """A lock on a ManualClock at T0; paired with SECRETS unless ``paired=False``."""
    clock = ManualClock(T0)
    fw = LockFirmware(clock, PairingRecord(SECRETS) if paired else None, **kwargs)
    _AGENTS[fw] = LinkAuth(SECRETS.link_key, Direction.TO_LOCK)
    return fw, clock


def agent_of(fw: LockFirmware) -> LinkAuth:
    return _AGENTS[fw]


def send(fw: LockFirmware, frame: LockFrame) -> LockFrame:
    """Hand ``frame`` to the lock as is; its one answer."""
    replies = fw.receive(frame)
    assert len(replies) == 1
    assert replies[0].seq == frame.seq
    return replies[0]


def sealed(fw: LockFirmware, ftype: FrameType, payload: bytes = b"", seq: int = 7) -> LockFrame:
    """A request sealed by the lock's agent (not sent)."""
    return agent_of(fw).seal(LockFrame(ftype, seq, payload))


def request(fw: LockFirmware, ftype: FrameType, payload: bytes = b"", seq: int = 7) -> LockFrame:
    """An authenticated request; its answer, checked as the agent checks it."""
    frame = sealed(fw, ftype, payload, seq)
    reply = send(fw, frame)
    if reply.key_id == KEY_ID_LINK:
        agent_of(fw).check(reply, bound=frame.counter)
    return reply


def nack_of(reply: LockFrame) -> tuple[int, str]:
    assert reply.type is FrameType.NACK
    return decode_nack(reply.payload)


def set_time(fw: LockFirmware, epoch: int = T0) -> None:
    assert request(fw, FrameType.SET_TIME, encode_u32(epoch)).type is FrameType.ACK


def set_slot(
    fw: LockFirmware,
    pin: str,
    *,
    slot: int = 0,
    start: int = T0 - 3600,
    end: int = T0 + 3600,
    grant_id: str | None = GRANT,
) -> LockFrame:
    entry = SlotEntry(slot, start, end, grant_id, pin_tag(PIN_KEY, pin))
    return request(fw, FrameType.SET_SLOT, entry.encode_set())


def type_keys(fw: LockFirmware, keys: str) -> None:
    for key in keys:
        fw.press(key)


def events(fw: LockFirmware, limit: int = 255) -> list[WireEvent]:
    reply = request(fw, FrameType.GET_EVENTS, bytes([limit]))
    assert reply.type is FrameType.EVENTS
    return decode_events(reply.payload)


def kinds(fw: LockFirmware) -> list[LockEventKind]:
    return [e.kind for e in events(fw)]


def ready_lock(pin: str = "482913", **kwargs: Any) -> tuple[LockFirmware, ManualClock]:
    """A lock with its clock set and ``pin`` in slot 0, its setup events acknowledged."""
    fw, clock = make_lock(**kwargs)
    set_time(fw)
    assert set_slot(fw, pin).type is FrameType.ACK
    fw.events.ack(fw.events.head)
    fw.take_unsolicited()
    return fw, clock
