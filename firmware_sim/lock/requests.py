"""How the lock answers each request frame from the gateway.

Every answer carries the request's ``seq``. Anything the wire gets wrong (a payload of the
wrong size, a slot that does not exist, a frame type the lock does not take) becomes a
NACK with a message saying what was wrong; nothing here raises on bad input.

Authentication comes first (:mod:`firmware_sim.lock.pairing`): an unauthenticated frame
gets only GET_INFO answered (so a technician's doctor can read model, firmware and
whether the lock is paired) and PAIR inside the button window; an authenticated one must
pass its MAC and counter check, and its counter is stored before the lock acts on it (a
lock that cannot store it answers ``BUSY`` and does nothing). The answer to an accepted
request is sealed with the link key and bound to the request's counter. A refusal is an
*unauthenticated* NACK: the lock cannot seal an answer to someone without the key, and the
NACK tells the sender nothing it did not know (its frame had no effect); its message names
no key, MAC or counter. Every refusal is counted and reported (a ``frames_refused`` event).

Firmware updates (UPDATE_BEGIN / CHUNK / COMMIT) go through the lock's
:class:`~firmware_sim.update_receiver.UpdateReceiver`; the lock reboots into a committed
image only while its door is locked and closed. ``UNLOCK`` (the fleet's emergency remote
unlock) is authenticated like any request: no key, no door.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from firmware_sim.lock.pairing import FlashError
from firmware_sim.pairing_window import PairRefused, Refusal
from firmware_sim.update_receiver import TransferError
from protocol.clock import is_trusted_time
from protocol.errors import FrameError
from protocol.firmware_image import ImageError
from protocol.firmware_transfer import encode_progress
from protocol.lock_auth import KEY_ID_NONE, AuthError, PairRequest
from protocol.lock_wire import (
    ALL_SLOTS,
    IMAGE_NACKS,
    MAX_EVENTS_PER_FRAME,
    FrameType,
    LockFrame,
    NackCode,
    SlotEntry,
    decode_revocations,
    decode_u32,
    encode_events,
    encode_nack,
    encode_slots,
    encode_unlock_ack,
)

if TYPE_CHECKING:
    from firmware_sim.lock.firmware import LockFirmware


class Nack(Exception):  # noqa: N818 - it is the frame's name, not an error about one
    """Raised inside a handler to answer with a NACK."""

    def __init__(self, code: NackCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


Reply = tuple[FrameType, bytes]


PAIR_HINT = "press the pairing button on the lock, then pair within 60 s"
NOT_PAIRED_HINT = "the lock is not paired: run `denen provision lock pair` at the door"
FLASH_HINT = (
    "nothing done: the lock could not store its counter; send the request again, and "
    "if this repeats the lock's storage is failing (replace or reset the lock)"
)


def answer(fw: LockFirmware, frame: LockFrame) -> LockFrame:
    """The one frame the lock sends back for ``frame``."""
    if frame.type is FrameType.PAIR:
        return _pair(fw, frame)
    if frame.key_id == KEY_ID_NONE:
        if frame.type is FrameType.GET_INFO:
            return _plain(fw, frame)
        fw.pairing.refuse()
        if not fw.pairing.paired:
            return _nack(frame, NackCode.NOT_PAIRED, NOT_PAIRED_HINT)
        return _nack(frame, NackCode.AUTH_FAILED, "frame is not authenticated")
    try:
        fw.pairing.check(frame)
    except AuthError as exc:
        code = NackCode.AUTH_FAILED if fw.pairing.paired else NackCode.NOT_PAIRED
        return _nack(frame, code, exc.reason)
    except FlashError:
        return _nack(frame, NackCode.BUSY, FLASH_HINT)
    ftype, payload = _handle(fw, frame)
    return fw.pairing.seal(LockFrame(ftype, frame.seq, payload), bound=frame.counter)


def _nack(frame: LockFrame, code: NackCode, message: str) -> LockFrame:
    return LockFrame(FrameType.NACK, frame.seq, encode_nack(code, message))


def _plain(fw: LockFirmware, frame: LockFrame) -> LockFrame:
    ftype, payload = _handle(fw, frame)
    return LockFrame(ftype, frame.seq, payload)


def _handle(fw: LockFirmware, frame: LockFrame) -> Reply:
    handler = HANDLERS.get(frame.type)
    if handler is None:
        return FrameType.NACK, encode_nack(
            NackCode.BAD_REQUEST, f"{frame.type.name} is not a request"
        )
    try:
        return handler(fw, frame.payload)
    except Nack as nack:
        return FrameType.NACK, encode_nack(nack.code, nack.message)
    except FrameError as exc:
        return FrameType.NACK, encode_nack(NackCode.BAD_REQUEST, str(exc))


def _pair(fw: LockFirmware, frame: LockFrame) -> LockFrame:
    """PAIR: keys in clear, so only inside the window opened by the button on the lock."""
    if fw.pairing.window_remaining() <= 0:
        fw.pairing.refuse()
        return _nack(frame, NackCode.NOT_PAIRING, f"pairing is closed: {PAIR_HINT}")
    if frame.key_id != KEY_ID_NONE:
        return _nack(frame, NackCode.BAD_REQUEST, "PAIR travels unauthenticated (key 0)")
    try:
        request = PairRequest.decode(frame.payload)
    except FrameError as exc:
        return _nack(frame, NackCode.BAD_REQUEST, str(exc))
    if not is_trusted_time(request.time):
        return _nack(frame, NackCode.BAD_REQUEST, "PAIR time is before 2024: not trusted")
    try:
        fresh = fw.pairing.window.admit(request.keys.link_key, request.confirm)
    except PairRefused as exc:
        fw.pairing.refuse()
        return _nack(frame, PAIR_REFUSALS[exc.refusal], exc.message)
    if fresh:
        fw.pairing.pair(request)
        fw.slots.clear()  # their tags were made with the old PIN key
        fw.revocations.clear()  # the new offline secret already voids every old offline PIN
        fw.set_time(request.time)
    return fw.pairing.seal(LockFrame(FrameType.ACK, frame.seq))


PAIR_REFUSALS = {
    Refusal.CLOSED: NackCode.NOT_PAIRING,
    Refusal.CONFIRM: NackCode.CONFIRM_CODE,
    Refusal.WRONG_CODE: NackCode.NOT_PAIRING,
}


def _no_payload(payload: bytes, what: str) -> None:
    if payload:
        raise Nack(NackCode.BAD_REQUEST, f"{what} takes no payload, got {len(payload)} bytes")


def _get_info(fw: LockFirmware, payload: bytes) -> Reply:
    _no_payload(payload, "GET_INFO")
    return FrameType.INFO, fw.info().encode()


def _set_time(fw: LockFirmware, payload: bytes) -> Reply:
    epoch = decode_u32(payload, "SET_TIME")
    if not is_trusted_time(epoch):
        raise Nack(NackCode.BAD_REQUEST, f"time {epoch} is before 2024: not a trusted time")
    fw.set_time(epoch)
    return FrameType.ACK, b""


def _set_slot(fw: LockFirmware, payload: bytes) -> Reply:
    entry = SlotEntry.decode_set(payload)
    if entry.slot >= fw.slot_count:
        raise Nack(NackCode.NO_SUCH_SLOT, f"slot {entry.slot} >= slot count {fw.slot_count}")
    if entry.end <= entry.start:
        raise Nack(NackCode.BAD_REQUEST, f"slot {entry.slot}: window ends before it starts")
    fw.slots[entry.slot] = entry
    return FrameType.ACK, b""


def _clear_slot(fw: LockFirmware, payload: bytes) -> Reply:
    if len(payload) != 1:
        raise Nack(NackCode.BAD_REQUEST, f"CLEAR_SLOT payload has {len(payload)} bytes, not 1")
    slot = payload[0]
    if slot == ALL_SLOTS:
        fw.slots.clear()
    elif slot >= fw.slot_count:
        raise Nack(NackCode.NO_SUCH_SLOT, f"slot {slot} >= slot count {fw.slot_count}")
    else:
        fw.slots.pop(slot, None)
    return FrameType.ACK, b""


def _get_events(fw: LockFirmware, payload: bytes) -> Reply:
    if len(payload) != 1:
        raise Nack(NackCode.BAD_REQUEST, f"GET_EVENTS payload has {len(payload)} bytes, not 1")
    events = fw.events.oldest(min(payload[0], MAX_EVENTS_PER_FRAME))
    return FrameType.EVENTS, encode_events(events)


def _ack_events(fw: LockFirmware, payload: bytes) -> Reply:
    fw.events.ack(decode_u32(payload, "ACK_EVENTS"))
    return FrameType.ACK, b""


def _get_slots(fw: LockFirmware, payload: bytes) -> Reply:
    _no_payload(payload, "GET_SLOTS")
    return FrameType.SLOTS, encode_slots([fw.slots[s] for s in sorted(fw.slots)])


def _revoke_offline(fw: LockFirmware, payload: bytes) -> Reply:
    """The whole revocation list, replacing the last one; expired entries are dropped."""
    revoked = decode_revocations(payload)
    if not fw.revocations.replace(revoked, fw.lock_time()):
        raise Nack(
            NackCode.REVOCATIONS_FULL,
            f"more than {fw.revocations.capacity} live revocations: offline PINs are "
            "refused until a list that fits arrives",
        )
    return FrameType.ACK, b""


def _unlock(fw: LockFirmware, payload: bytes) -> Reply:
    """The emergency remote unlock: authenticated like every request that reaches here."""
    _no_payload(payload, "UNLOCK")
    seq = fw.remote_unlock()
    return FrameType.ACK, encode_unlock_ack(seq, fw.events.boot)


DOOR_HINT = "the door is unlocked or open: the lock updates only when locked and closed"


def _updating(step: Callable[[], tuple[int, int]]) -> Reply:
    """Run one update step; its refusals become the NACK that names them."""
    try:
        received, total = step()
    except ImageError as exc:
        raise Nack(IMAGE_NACKS[exc.refusal], exc.message) from None
    except TransferError as exc:
        raise Nack(NackCode.UPDATE_SEQUENCE, str(exc)) from None
    return FrameType.UPDATE_ACK, encode_progress(received, total)


def _update_begin(fw: LockFirmware, payload: bytes) -> Reply:
    """The image's header and signature: checked now, before any payload is sent."""

    def begin() -> tuple[int, int]:
        progress = fw.updates.begin(payload, fw.firmware)
        if not fw.door_secure():
            fw.updates.abandon()
            raise Nack(NackCode.DOOR_IN_USE, DOOR_HINT)
        return progress

    return _updating(begin)


def _update_chunk(fw: LockFirmware, payload: bytes) -> Reply:
    return _updating(lambda: fw.updates.chunk(payload))


def _update_commit(fw: LockFirmware, payload: bytes) -> Reply:
    """Hash and signature of the whole image, then the reboot into it (door permitting)."""

    def commit() -> tuple[int, int]:
        header = fw.updates.commit(payload, fw.firmware)
        if header is None:  # a repeated COMMIT: the lock already runs it
            installed = fw.updates.installed
            size = 0 if installed is None else installed.payload_len
            return size, size
        if not fw.door_secure():
            raise Nack(NackCode.DOOR_IN_USE, DOOR_HINT)  # the verified image waits
        fw.reboot_into(fw.updates.installed_now())
        return header.payload_len, header.payload_len

    return _updating(commit)


HANDLERS: dict[FrameType, Callable[[LockFirmware, bytes], Reply]] = {
    FrameType.GET_INFO: _get_info,
    FrameType.SET_TIME: _set_time,
    FrameType.SET_SLOT: _set_slot,
    FrameType.CLEAR_SLOT: _clear_slot,
    FrameType.GET_EVENTS: _get_events,
    FrameType.ACK_EVENTS: _ack_events,
    FrameType.GET_SLOTS: _get_slots,
    FrameType.REVOKE_OFFLINE: _revoke_offline,
    FrameType.UPDATE_BEGIN: _update_begin,
    FrameType.UPDATE_CHUNK: _update_chunk,
    FrameType.UPDATE_COMMIT: _update_commit,
    FrameType.UNLOCK: _unlock,
}
