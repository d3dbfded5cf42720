"""``denen provision lock pair``: pair a keypad lock at the door, over a serial cable or BLE.

Steps: read the lock (GET_INFO, unauthenticated), make three random keys, wait for the
technician to press the pairing button while offering PAIR (keys and time) every second,
check that the lock's answer is sealed with the new link key, then over the authenticated
link: read the lock again (paired, clock set), load a one-off test PIN into the last slot,
let the technician type it (the lock's UNLOCKED event for that slot proves the keypad, the
PIN check and the bolt), and clear the slot. The link key goes to the agent's key store;
the PIN key and the offline secret stay in memory (:attr:`PairingResult.keys`), for the
command to send straight to the cloud (:mod:`provisioning.cloud_keys`): with them and an
access snapshot every PIN could be worked out, so they are never written on the Pi.

Over BLE the link is encrypted with LE Secure Connections before anything is sent: the
lock shows a 6-digit passkey on its display and the technician types it
(:attr:`PairingOptions.passkey`); the bond lets the agent reconnect later without it. The
lock bonds only inside its pairing window, so over BLE the button comes first.

When someone else paired the lock in the same window (the lock answers PAIR with
``CONFIRM_CODE`` and shows a 6-digit code), the technician is told so and types the code
(:attr:`PairingOptions.confirm_code`); our PAIR then replaces the other keys.

Provisioning may use the agent's transports and its key store (the file format the agent
reads): :mod:`edge.transports`, :mod:`edge.lock_keys` and the request channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edge.devices.lock_channel import LinkStats, LockChannel
from edge.errors import EdgeError, LockRejected
from edge.lock_keys import LockKeyRecord, LockKeyStore
from edge.transports import BleCentral, open_transport
from edge.transports.ble import PasskeyPrompt
from protocol.clock import Clock, is_trusted_time
from protocol.errors import DenenError, ProtocolError
from protocol.lock_auth import KEY_ID_LINK, LockSecrets, PairRequest
from protocol.lock_gatt import PASSKEY_DIGITS
from protocol.lock_wire import (
    FrameType,
    LockInfo,
    NackCode,
    SlotEntry,
    decode_events,
    decode_slots,
)
from protocol.messages import LockEventKind
from protocol.pin import generate_pin, pin_tag

TEST_WINDOW_S = 600
CLOCK_TOLERANCE_S = 5


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()  # progress lines must show while we wait for the button


class PairingError(DenenError):
    """Pairing did not complete; the message says what to do."""


@dataclass(frozen=True, slots=True)
class PairingResult:
    lock_id: str
    info: LockInfo
    key_path: Path
    keypad_tested: bool
    keys: LockSecrets = field(repr=False)


@dataclass
class PairingOptions:
    """How long to wait for the button and the keypad, and whether to test the keypad."""

    button_wait_s: float = 120.0
    keypad_wait_s: float = 120.0
    keypad_test: bool = True
    request_timeout_s: float = 1.0
    say: Callable[[str], None] = _say
    passkey: PasskeyPrompt = field(default_factory=lambda: ask_passkey)
    confirm_code: PasskeyPrompt = field(default_factory=lambda: ask_confirm_code)


async def ask_passkey() -> int:
    """Ask the technician for the BLE passkey the lock shows on its display."""
    return await ask_code("lock", "the BLE code")


async def ask_confirm_code() -> int:
    """Ask the technician for the confirm code the lock shows after a second PAIR."""
    return await ask_code("lock", "the confirm code")


async def ask_code(device: str, what: str) -> int:
    """Ask the technician for a 6-digit code ``device`` shows on its display."""
    prompt = f"type the 6-digit code the {device} shows on its display: "
    text = (await asyncio.to_thread(input, prompt)).strip()  # stdin blocks: not on the loop
    if len(text) != PASSKEY_DIGITS or not text.isdigit():
        raise PairingError(f"{what} has 6 digits, as the {device}'s display shows")
    return int(text)


async def pair_lock(
    lock_id: str,
    spec: str,
    *,
    state_dir: Path,
    clock: Clock,
    options: PairingOptions,
    ble: BleCentral | None = None,
) -> PairingResult:
    """Pair the lock on ``spec`` (``serial:/dev/ttyUSB0``, ``ble:AA:…`` through ``ble``) as
    ``lock_id``; see the module."""
    now = clock.now()
    if not is_trusted_time(now):
        when = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        raise PairingError(
            f"this Pi's clock says {when}: not a trusted time, and pairing sets the lock's "
            "clock; get network time (or fit an RTC), check with `denen provision doctor`, "
            "then pair again"
        )
    store = LockKeyStore(state_dir)
    if spec.startswith("ble:"):
        options.say("BLE: the lock bonds only in its pairing window: press its pairing button now")
    try:
        transport = await open_transport(
            spec, lock_id=lock_id, ble=ble, passkey=_announced(options)
        )
    except EdgeError as exc:
        raise PairingError(str(exc)) from exc
    channel = LockChannel(
        lock_id,
        transport,
        link=None,
        stats=LinkStats(),
        timeout_s=options.request_timeout_s,
        retries=3,
    )
    reader = asyncio.create_task(channel.run_reader(), name=f"pair-{lock_id}-rx")
    try:
        return await _pair(lock_id, channel, store, clock, options)
    except (EdgeError, ProtocolError) as exc:
        raise PairingError(str(exc)) from exc
    finally:
        reader.cancel()
        # a line that hung up ends the reader with LockUnreachable: requests said so already
        with contextlib.suppress(asyncio.CancelledError, EdgeError):
            await reader
        await transport.close()


def _announced(options: PairingOptions) -> PasskeyPrompt:
    async def prompt() -> int:
        options.say("BLE: the lock shows a 6-digit code on its display (LE Secure Connections)")
        return await options.passkey()

    return prompt


async def _pair(
    lock_id: str, channel: LockChannel, store: LockKeyStore, clock: Clock, o: PairingOptions
) -> PairingResult:
    reply = await channel.request(FrameType.GET_INFO, b"", FrameType.INFO, authenticated=False)
    info = LockInfo.decode(reply.payload)
    state = "already paired: pairing again replaces its keys" if info.paired else "not paired"
    o.say(f"lock: {info.model}, firmware {info.firmware}, {info.slot_count} slots, {state}")
    keys = LockSecrets.generate()
    record = LockKeyRecord(lock_id, keys.link_key, 0, int(clock.now()), info.model, info.firmware)
    channel.link = store.link(record)
    await _offer_pair(channel, keys, clock, o)
    o.say("paired: the lock answered under the new key")

    reply = await channel.request(FrameType.GET_INFO, b"", FrameType.INFO)
    info = LockInfo.decode(reply.payload)
    if not info.paired or abs(info.clock - clock.now()) > CLOCK_TOLERANCE_S:
        raise PairingError("the lock did not keep the keys or the time: press reset, pair again")
    o.say(f"clock set: {dt.datetime.fromtimestamp(info.clock, dt.UTC):%Y-%m-%d %H:%M:%S} UTC")

    tested = await _test_slot(channel, keys, info, clock, o)
    return PairingResult(lock_id, info, store.path(lock_id), tested, keys)


async def _offer_pair(
    channel: LockChannel, keys: LockSecrets, clock: Clock, o: PairingOptions
) -> None:
    """Offer PAIR every second until the lock takes it or the wait is over."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + o.button_wait_s
    next_prompt = loop.time()
    lost_answer = False
    confirm: int | None = None
    while True:
        if lost_answer and await _answers_under_new_key(channel):
            return  # an earlier PAIR got through; only its answer was lost
        payload = PairRequest(keys, int(clock.now()), confirm).encode()
        try:
            reply = await channel.request(
                FrameType.PAIR, payload, FrameType.ACK, authenticated=False, retries=1
            )
        except LockRejected as exc:
            if exc.code == NackCode.CONFIRM_CODE and confirm is None:
                confirm = await _confirm_code(o)
                continue
            if exc.code != NackCode.NOT_PAIRING:
                raise
            if confirm is not None:
                raise PairingError(
                    "the lock refused the confirm code and closed its pairing window: press "
                    "the pairing button again and run this command again"
                ) from exc
        except EdgeError:
            lost_answer = True
        else:
            if reply.key_id != KEY_ID_LINK:
                raise PairingError("the lock took PAIR but did not answer under the new key")
            if confirm is not None:
                o.say("the confirm code was right: our keys replaced the other pairing")
            return
        left = deadline - loop.time()
        if left <= 0:
            raise PairingError(
                f"the lock did not accept pairing within {o.button_wait_s:.0f} s: "
                "press the pairing button on the lock, then run this command again"
            )
        if loop.time() >= next_prompt:
            o.say(f"press the pairing button on the lock ... ({left:.0f} s left)")
            next_prompt = loop.time() + 10
        await asyncio.sleep(min(1.0, left))


async def _confirm_code(o: PairingOptions) -> int:
    o.say(
        "WARNING: this lock was already paired in this pairing window, by someone else or "
        "an earlier run of this command. "
        "Our pairing replaces theirs once you confirm: the lock shows a 6-digit code"
    )
    return await o.confirm_code()


async def _answers_under_new_key(channel: LockChannel) -> bool:
    with contextlib.suppress(EdgeError, ProtocolError):
        await channel.request(FrameType.GET_INFO, b"", FrameType.INFO, retries=1)
        return True
    return False


async def _test_slot(
    channel: LockChannel, keys: LockSecrets, info: LockInfo, clock: Clock, o: PairingOptions
) -> bool:
    """Load a one-off PIN into the last slot, optionally wait for it to open, clear it."""
    slot = info.slot_count - 1  # the agent fills slots from 0 and reloads them all anyway
    now = int(clock.now())
    pin = generate_pin(6)
    entry = SlotEntry(slot, now - 60, now + TEST_WINDOW_S, None, pin_tag(keys.pin_key, pin))
    await channel.request(FrameType.SET_SLOT, entry.encode_set(), FrameType.ACK)
    try:
        reply = await channel.request(FrameType.GET_SLOTS, b"", FrameType.SLOTS)
        if slot not in {e.slot for e in decode_slots(reply.payload)}:
            raise PairingError("the lock did not keep the test PIN: check its firmware")
        o.say("authenticated round trip: ok (test PIN loaded)")
        if not o.keypad_test:
            return False
        # the technician is the one person told this PIN; it works for 10 minutes at most
        o.say(f"type {pin}# on the lock's keypad: the door should unlock")
        await _wait_for_unlock(channel, slot, info.event_head, o.keypad_wait_s)
        o.say("keypad test: ok (the lock reported the unlock)")
        return True
    finally:
        with contextlib.suppress(EdgeError, ProtocolError):
            await channel.request(FrameType.CLEAR_SLOT, bytes([slot]), FrameType.ACK)
            o.say("test PIN cleared")


async def _wait_for_unlock(channel: LockChannel, slot: int, after: int, wait_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while loop.time() < deadline:
        # read without acknowledging: the agent collects these events for the audit log
        reply = await channel.request(FrameType.GET_EVENTS, b"\xff", FrameType.EVENTS)
        for event in decode_events(reply.payload):
            if event.seq > after and event.slot == slot:
                if event.kind is LockEventKind.UNLOCKED:
                    return
                if event.kind is LockEventKind.DENIED_OUTSIDE_WINDOW:
                    raise PairingError("the lock refused the test PIN: its clock is wrong")
        await asyncio.sleep(0.5)
    raise PairingError(
        f"no unlock with the test PIN within {wait_s:.0f} s: type it again, or run with "
        "--skip-keypad-test and check the keypad and bolt separately"
    )
