"""The keypad lock's firmware as a sans-IO state machine.

No I/O and no asyncio: keys, door movements and wire frames go in, events and frames come
out, and time comes from an injected :class:`~protocol.clock.Clock`. The state rules live
in :mod:`firmware_sim.lock.states`; the wire requests are answered by
:mod:`firmware_sim.lock.requests`. A pty, a BLE peripheral or a test drives the same object.

The keypad takes two kinds of code, told apart by length: a slot PIN (4..10 digits) the
gateway loaded with its window, and an offline PIN (exactly 12 digits,
:mod:`protocol.offline_pin`) that the lock checks with its offline secret and own clock.
Wrong entries are counted per window of time (:mod:`firmware_sim.lock.wrong_entries`), and
a slot PIN typed outside its window is one of them: a guess that hits a PIN of another
hour is still a guess.

Frames the lock refuses (forged, replayed, under another key, unauthenticated, PAIR with
the button not pressed) are counted and reported as a ``frames_refused`` event, at most
one a minute, carrying how many were refused since the last one: a replay is never
refused silently, and a flood of them cannot push the door's events out of the log.

Firmware updates arrive as signed images (:mod:`protocol.firmware_image`) checked against
the release public keys baked into the firmware (``release_keys``); a committed image
"reboots" the lock into its version, keeping what a real lock keeps in flash.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware_sim.errors import UnknownKeyError
from firmware_sim.lock.event_log import U16_MAX, EventLog
from firmware_sim.lock.pairing import LockPairing, PairingRecord
from firmware_sim.lock.requests import answer
from firmware_sim.lock.revocations import DEFAULT_CAPACITY, OfflineRevocations
from firmware_sim.lock.states import (
    DoorLock,
    Keypad,
    KeypadTrigger,
    Trigger,
    next_keypad,
    next_state,
)
from firmware_sim.lock.wrong_entries import HOUR_S, KEYPAD_LIMITS, Limit, WrongEntries
from firmware_sim.update_receiver import DEFAULT_CAPACITY as UPDATE_CAPACITY
from firmware_sim.update_receiver import UpdateReceiver
from protocol.clock import Clock
from protocol.firmware_image import DeviceKind, ImageHeader, TrustedKeys, running_version
from protocol.lock_wire import (
    FrameType,
    LockFrame,
    LockInfo,
    SlotEntry,
    WireEvent,
    encode_u32,
)
from protocol.messages import LockEventKind
from protocol.offline_pin import OFFLINE_PIN_LEN, OfflinePinStatus, verify_offline_pin
from protocol.pin import PIN_MAX_LEN, PIN_MIN_LEN, pin_tag

KEYS = frozenset("0123456789*#")
# An entry abandoned half-way is forgotten, so the next person does not inherit digits.
ENTRY_TIMEOUT_S = 10.0
# How long "OPEN" / "DENIED" stays on the display after an entry.
FLASH_S = 3.0
# slots reported by GET_SLOTS must fit in one frame: 1 + n * 25 <= 1024
MAX_SLOTS = 40
# The entry keeps one digit past the longest code, so that "too long" stays wrong.
KEYPAD_MAX_DIGITS = max(PIN_MAX_LEN, OFFLINE_PIN_LEN)
# At most one frames_refused event this often: its value sums the refusals in between.
REFUSALS_REPORT_S = 60.0


@dataclass(frozen=True, slots=True)
class LockView:
    """What a person standing at the door sees (and what the control page shows)."""

    locked: bool
    door_open: bool
    display: str
    locked_out: bool
    lockout_remaining_s: int
    battery_pct: int
    clock_set: bool
    lock_time: int | None
    slots_used: int
    events_pending: int
    events_dropped: int
    paired: bool
    pairing_open_s: int  # seconds left in the pairing-button window, 0 when closed
    auth_failures: int  # frames refused: unauthenticated, forged, replayed, PAIR too late


class LockFirmware:
    """One keypad lock: PIN slots with time windows, lockout, auto-lock, door sensor.

    Drive it with :meth:`press`, :meth:`open_door`, :meth:`close_door`, :meth:`receive`
    and :meth:`tick`; collect unsolicited frames with :meth:`take_unsolicited`. It starts
    unpaired (no keys) unless given the :class:`PairingRecord` it persisted earlier.
    """

    def __init__(
        self,
        clock: Clock,
        paired: PairingRecord | None = None,
        *,
        model: str = "denen-sim-lock",
        firmware: str = "sim-0.1.0",
        slot_count: int = 32,
        auto_lock_s: float = 5,
        keypad_limits: Sequence[Limit] = KEYPAD_LIMITS,
        event_buffer: int = 256,
        battery_pct: int = 100,
        door_held_open_s: float = 60,
        revocation_capacity: int = DEFAULT_CAPACITY,
        release_keys: Iterable[Ed25519PublicKey] = (),
        update_capacity: int = UPDATE_CAPACITY,
        boot: int | None = None,
    ) -> None:
        running_version(firmware)  # raises ValueError: updates must compare versions
        if not 1 <= slot_count <= MAX_SLOTS:
            raise ValueError(f"slot_count must be 1..{MAX_SLOTS} to fit a SLOTS frame")
        if event_buffer < 1:
            raise ValueError("event_buffer must hold at least one event")
        self.clock = clock
        self.model = model
        self.firmware = firmware
        self.slot_count = slot_count
        self.auto_lock_s = auto_lock_s
        self.wrong_entries = WrongEntries(keypad_limits)
        self.battery_pct = battery_pct
        self.door_held_open_s = door_held_open_s
        # a new run of the event counter: ``boot`` given only by tests that need a fixed one
        self.events = EventLog(event_buffer, boot)
        self.slots: dict[int, SlotEntry] = {}
        self.revocations = OfflineRevocations(revocation_capacity)
        self.state = DoorLock.LOCKED_CLOSED
        self.keypad = Keypad.READY
        self.pairing = LockPairing(clock, paired)
        # no release key: every update is refused (fail secure, no default key)
        self.updates = UpdateReceiver(
            DeviceKind.LOCK, model, TrustedKeys.of(release_keys), update_capacity
        )
        self._clock_offset: float | None = None
        self._entry = ""
        self._last_key_at = 0.0
        self._lockout_until = 0.0
        self._refusals_seen = 0  # pairing.auth_failures already in a frames_refused event
        self._refusals_unreported = 0
        self._refusals_next_report = 0.0
        self._relock_at: float | None = None
        self._door_opened_at: float | None = None
        self._held_open_reported = False
        self._flash = ""
        self._flash_until = 0.0
        self._wake_pending = False

    # ------------------------------------------------------------------ time

    def lock_time(self) -> int | None:
        """The lock's own clock (UTC epoch seconds), ``None`` until SET_TIME."""
        if self._clock_offset is None:
            return None
        return math.floor(self.clock.now() + self._clock_offset)

    def set_time(self, epoch: int) -> None:
        """Set the lock's clock, as a SET_TIME frame does; records a clock_set event."""
        before = self.lock_time()
        self._clock_offset = epoch - self.clock.now()
        # value: size of the correction in seconds (0 on first set), capped to u16
        adjustment = 0 if before is None else min(abs(epoch - before), U16_MAX)
        self._record(LockEventKind.CLOCK_SET, value=adjustment)

    # ---------------------------------------------------------------- keypad

    def press(self, key: str) -> None:
        """One key press: '0'-'9' add a digit, '*' clears, '#' enters the PIN."""
        if key not in KEYS or len(key) != 1:
            raise UnknownKeyError(key)
        self.tick()
        now = self.clock.now()
        self._wake_pending = True  # the keypad wakes the lock, which tells the gateway
        self._last_key_at = now
        if key == "*":
            self._entry = ""
        elif key == "#":
            digits, self._entry = self._entry, ""
            if digits:  # a lone '#' is a stray press, not an attempt
                self._enter(digits, now)
        elif len(self._entry) <= KEYPAD_MAX_DIGITS:  # one digit past the maximum: "too long"
            self._entry += key

    def _enter(self, digits: str, now: float) -> None:
        if self.keypad is Keypad.LOCKED_OUT:
            self._deny(LockEventKind.DENIED_LOCKED_OUT, now)
            return
        if len(digits) == OFFLINE_PIN_LEN:
            self._enter_offline(digits, now)
            return
        if not PIN_MIN_LEN <= len(digits) <= PIN_MAX_LEN:
            self._wrong_pin(now)
            return
        pin_key = self.pairing.pin_key
        if pin_key is None:  # never paired: no PIN can be right
            self._wrong_pin(now)
            return
        tag = pin_tag(pin_key, digits)
        match: SlotEntry | None = None
        for entry in self.slots.values():  # compare every slot: no early exit to time
            if hmac.compare_digest(tag, entry.tag) and match is None:
                match = entry
        if match is None:
            self._wrong_pin(now)
            return
        t = self.lock_time()
        if t is None:  # no window can hold "now" (as for offline PINs): not a guess
            self._deny(LockEventKind.DENIED_OUTSIDE_WINDOW, now, match)
        elif not match.start <= t < match.end:
            # another hour's PIN: the door says DENIED as for any wrong code, and it
            # counts as one, or guessing would only have to hit any PIN of the day
            self._wrong_pin(now, LockEventKind.DENIED_OUTSIDE_WINDOW, match)
        else:
            self._unlock(now, slot=match.slot, grant_id=match.grant_id)

    def _enter_offline(self, digits: str, now: float) -> None:
        """An offline PIN: checked with the offline secret against the lock's own clock.

        Events carry the code's short id in ``value`` (never the code) and no slot or
        grant: the cloud maps the short id back to the grant it issued the code for.
        """
        secret = self.pairing.offline_secret
        if secret is None:  # never paired: no code can be right
            self._wrong_pin(now)
            return
        t = self.lock_time()
        if t is None:
            # without a clock no window can hold "now"; not counted as a guess, since
            # nothing opens, and a citizen with a good code is not locked out for it
            self._deny(LockEventKind.DENIED_OUTSIDE_WINDOW, now)
            return
        check = verify_offline_pin(secret, digits, t)
        if check.id is None:
            self._wrong_pin(now)
            return
        # a genuine code from here on: refusals do not count towards lockout (no guess: its
        # tag makes hitting a genuine code as unlikely as hitting one that opens)
        short_id = check.id.short_id
        if self.revocations.refuses(check.id):
            self._deny(LockEventKind.DENIED_REVOKED, now, value=short_id)
        elif check.status is OfflinePinStatus.OUTSIDE_WINDOW:
            self._deny(LockEventKind.DENIED_OUTSIDE_WINDOW, now, value=short_id)
        else:
            self._unlock(now, value=short_id)

    def _unlock(
        self, now: float, *, slot: int | None = None, grant_id: str | None = None, value: int = 0
    ) -> None:
        self._go(Trigger.PIN_ACCEPTED)  # the wrong entries before it still count
        self._relock_at = now + self.auto_lock_s
        self._record(LockEventKind.UNLOCKED, slot=slot, grant_id=grant_id, value=value)
        self._flash, self._flash_until = "OPEN", now + FLASH_S

    def remote_unlock(self) -> int:
        """The gateway's UNLOCK: unlock as an accepted PIN would (the keypad lockout does
        not apply: it guards the keypad), relock on the auto-lock timer; the event's seq."""
        self.tick()
        now = self.clock.now()
        self._go(Trigger.REMOTE_UNLOCK)
        self._relock_at = now + self.auto_lock_s
        event = self._record(LockEventKind.REMOTE_UNLOCKED)
        self._flash, self._flash_until = "OPEN", now + FLASH_S
        return event.seq

    def _deny(
        self, kind: LockEventKind, now: float, entry: SlotEntry | None = None, *, value: int = 0
    ) -> None:
        slot = None if entry is None else entry.slot
        grant_id = None if entry is None else entry.grant_id
        self._record(kind, slot=slot, grant_id=grant_id, value=value)
        self._flash, self._flash_until = "DENIED", now + FLASH_S

    def _wrong_pin(
        self,
        now: float,
        kind: LockEventKind = LockEventKind.DENIED_WRONG_PIN,
        entry: SlotEntry | None = None,
    ) -> None:
        """A wrong entry: denied, counted, and the keypad locked out if a window is full.

        A ``denied_wrong_pin`` event carries the wrong entries of the last hour (this one
        included) in ``value``: the fleet's guessing alert reads the rate from it."""
        self.wrong_entries.add(now)
        value = self.wrong_entries.in_last(now, HOUR_S) if entry is None else 0
        self._deny(kind, now, entry, value=value)
        until = self.wrong_entries.locked_until(now)
        if until is not None:
            self._keypad(KeypadTrigger.WRONG_PIN_LIMIT)
            self._lockout_until = until
            # value: the lockout's length in seconds (capped to u16: 18 h 12 min)
            self._record(LockEventKind.LOCKOUT_STARTED, value=math.ceil(until - now))

    # ------------------------------------------------------------------ door

    def open_door(self, *, from_inside: bool = False) -> bool:
        """Open the door; from outside only when unlocked, from inside always (egress).

        Returns False when the door did not open (locked from outside, or already open).
        """
        self.tick()
        trigger = Trigger.OPEN_FROM_INSIDE if from_inside else Trigger.OPEN_FROM_OUTSIDE
        if not self._go(trigger):
            return False
        self._door_opened_at = self.clock.now()
        self._held_open_reported = False
        self._record(LockEventKind.DOOR_OPENED)
        return True

    def close_door(self) -> bool:
        """Close the door; an overdue auto-lock happens at once. False if already closed."""
        self.tick()
        if not self._go(Trigger.CLOSE):
            return False
        self._door_opened_at = None
        self._record(LockEventKind.DOOR_CLOSED)
        self.tick()
        return True

    # ---------------------------------------------------------------- timers

    def tick(self) -> None:
        """Run every timer that is due: lockout expiry, auto-lock, held-open, entry timeout."""
        now = self.clock.now()
        if self.keypad is Keypad.LOCKED_OUT and now >= self._lockout_until:
            self._keypad(KeypadTrigger.LOCKOUT_EXPIRED)
        # RELOCK_DUE is refused while the door is open: the timer stays due until it closes
        if self._relock_at is not None and now >= self._relock_at and self._go(Trigger.RELOCK_DUE):
            self._relock_at = None
            self._record(LockEventKind.RELOCKED)
        if (
            self._door_opened_at is not None
            and not self._held_open_reported
            and now - self._door_opened_at >= self.door_held_open_s
        ):
            self._held_open_reported = True
            self._record(LockEventKind.DOOR_HELD_OPEN)
        if self._entry and now - self._last_key_at >= ENTRY_TIMEOUT_S:
            self._entry = ""
        t = self.lock_time()
        if t is not None:
            self.revocations.prune(t)
        self._report_refusals(now)

    def _report_refusals(self, now: float) -> None:
        """Turn frames refused since the last report into a ``frames_refused`` event, at
        most one every :data:`REFUSALS_REPORT_S` (value: how many, capped to u16)."""
        refused = self.pairing.auth_failures - self._refusals_seen
        self._refusals_seen = self.pairing.auth_failures
        if self.pairing.paired:  # an unpaired lock has no link to attack, and no gateway
            self._refusals_unreported += refused
        if self._refusals_unreported and now >= self._refusals_next_report:
            self._record(LockEventKind.FRAMES_REFUSED, value=self._refusals_unreported)
            self._refusals_unreported = 0
            self._refusals_next_report = now + REFUSALS_REPORT_S

    # ----------------------------------------------------------------- other

    def set_battery(self, pct: int) -> None:
        """A new battery reading; records a battery event with the percentage."""
        self.battery_pct = min(max(pct, 0), 100)
        self._record(LockEventKind.BATTERY, value=self.battery_pct)

    def info(self) -> LockInfo:
        """What GET_INFO answers."""
        return LockInfo(
            model=self.model,
            firmware=self.firmware,
            slot_count=self.slot_count,
            clock=self.lock_time() or 0,
            event_head=self.events.head,
            locked_out=self._locked_out(self.clock.now()),
            battery_pct=self.battery_pct,
            door_open=self.state.door_open,
            paired=self.pairing.paired,
        )

    def door_secure(self) -> bool:
        """Locked and closed: the only state the lock reboots into new firmware from."""
        self.tick()
        return self.state is DoorLock.LOCKED_CLOSED

    def reboot_into(self, header: ImageHeader) -> None:
        """Run the committed image's version after a reboot.

        Flash survives: keys and counters, PIN slots, revocations, the event log (and its
        counter and boot id: the run goes on), the lockout and the clock (a battery-backed
        RTC). RAM does not: a half-typed entry and
        what the display flashed. The rebooted lock wakes the gateway.
        """
        self.firmware = str(header.version)
        self._entry = ""
        self._flash, self._flash_until = "", 0.0
        self._wake_pending = True

    def press_pair_button(self) -> None:
        """The pairing button on the lock: PAIR is accepted in the next 60 s."""
        self.pairing.press_button()

    def receive(self, frame: LockFrame) -> list[LockFrame]:
        """Answer one request frame; bad input from the wire gives a NACK, never raises."""
        self.tick()
        reply = answer(self, frame)
        self._report_refusals(self.clock.now())
        return [reply]

    def take_unsolicited(self) -> list[LockFrame]:
        """The WAKE frame owed to the gateway (at most one, carrying the newest event seq)."""
        if not self._wake_pending:
            return []
        self._wake_pending = False
        return [self.pairing.seal(LockFrame(FrameType.WAKE, 0, encode_u32(self.events.head)))]

    outbox = take_unsolicited

    def view(self) -> LockView:
        """What a person sees right now; reads the clock but changes nothing."""
        now = self.clock.now()
        locked_out = self._locked_out(now)
        remaining = math.ceil(self._lockout_until - now) if locked_out else 0
        if locked_out:
            hours, rest = divmod(remaining, 3600)
            left = f"{rest // 60}:{rest % 60:02d}" if not hours else f"{hours}h{rest // 60:02d}"
            display = f"LOCKED OUT {left}"  # m:ss, or 23h20 for a day's lockout
        elif self._entry and now - self._last_key_at < ENTRY_TIMEOUT_S:
            display = "*" * len(self._entry)
        elif self._flash and now < self._flash_until:
            display = self._flash
        elif not self.state.locked:
            display = "OPEN"
        elif (code := self.pairing.window.code) is not None:
            display = f"CODE {code:06d}"  # a second PAIR in this window waits for it
        elif self.pairing.window.waiting:
            display = "PAIRING"
        elif self._clock_offset is None:
            display = "NO TIME"
        else:
            display = "ENTER PIN"
        return LockView(
            locked=self.state.locked,
            door_open=self.state.door_open,
            display=display,
            locked_out=locked_out,
            lockout_remaining_s=remaining,
            battery_pct=self.battery_pct,
            clock_set=self._clock_offset is not None,
            lock_time=self.lock_time(),
            slots_used=len(self.slots),
            events_pending=self.events.pending,
            events_dropped=self.events.dropped,
            paired=self.pairing.paired,
            pairing_open_s=math.ceil(self.pairing.window_remaining()),
            auth_failures=self.pairing.auth_failures,
        )

    # --------------------------------------------------------------- helpers

    def _locked_out(self, now: float) -> bool:
        return self.keypad is Keypad.LOCKED_OUT and now < self._lockout_until

    def _go(self, trigger: Trigger) -> bool:
        new = next_state(self.state, trigger)
        if new is None:
            return False
        self.state = new
        return True

    def _keypad(self, trigger: KeypadTrigger) -> None:
        new = next_keypad(self.keypad, trigger)
        if new is not None:
            self.keypad = new

    def _record(
        self,
        kind: LockEventKind,
        *,
        slot: int | None = None,
        grant_id: str | None = None,
        value: int = 0,
    ) -> WireEvent:
        event = self.events.append(
            kind, self.lock_time() or 0, slot=slot, grant_id=grant_id, value=value
        )
        self._wake_pending = True
        return event
