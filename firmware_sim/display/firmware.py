"""The call-number display's firmware as a sans-IO state machine.

No I/O and no asyncio: bytes or frames go in, frames come out, time comes from an
injected :class:`~protocol.clock.Clock`. The state rules live in
:mod:`firmware_sim.display.states`; the wire format in :mod:`protocol.display_wire`.

What it shows: per room the number called now, the next few numbers, an announcement
line that clears at its expiry, a chime (and the new number highlighted) when a room's
call changes, at the brightness asked for, dimmed in standby outside the daily schedule.
A power cycle loses everything but the link key and counters (flash on real hardware) and
the display says HELLO until the agent sends the whole state again. The state that
restores a power-cycled display does not chime: those calls are not new.

Pairing (:mod:`protocol.display_auth`): the display's pairing button opens a 60 s window
in which it takes PAIR (a fresh link key, in clear) as a lock does
(:mod:`firmware_sim.pairing_window`: a second PAIR in the window needs the code the
display then shows). A paired display takes state only in sealed frames and counts every
frame it refuses (``auth_failures``); re-pairing replaces the key and restarts the counters.

Firmware updates arrive as signed images (:mod:`protocol.firmware_image`) checked against
the release public keys baked into the firmware (``release_keys``); a committed image
reboots the display into its version like a power cycle (reason ``FIRMWARE_UPDATE``), so
it says HELLO and the agent sends its state again. Not while an urgent announcement shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware_sim.display.pairing import DisplayPairingRecord
from firmware_sim.display.states import (
    Backlight,
    BacklightTrigger,
    Screen,
    ScreenTrigger,
    next_backlight,
    next_screen,
)
from firmware_sim.pairing_window import PairingWindow, PairRefused, Refusal
from firmware_sim.update_receiver import DEFAULT_CAPACITY as UPDATE_CAPACITY
from firmware_sim.update_receiver import TransferError, UpdateReceiver
from protocol.clock import Clock, is_trusted_time
from protocol.display_auth import (
    KEY_ID_NONE,
    AuthError,
    DisplayDirection,
    DisplayLinkAuth,
    DisplayPairRequest,
)
from protocol.display_wire import (
    IMAGE_NACKS,
    REQUEST_TYPES,
    Announcement,
    AnnouncementLevel,
    BootReason,
    Calls,
    DisplayFrame,
    DisplayFrameParser,
    DisplayFrameType,
    DisplayNackCode,
    DisplayState,
    DisplayStatus,
    Hello,
    StandbySchedule,
    decode_brightness,
    decode_u32,
    encode_nack,
    encode_u32,
)
from protocol.errors import FrameError
from protocol.firmware_image import DeviceKind, ImageError, TrustedKeys, running_version
from protocol.firmware_transfer import encode_progress

# How long the chime indicator and the new number's highlight last.
CHIME_S = 3.0
# A display with no state repeats HELLO this often: the agent may not have been listening.
HELLO_RETRY_S = 5.0
# The backlight in standby, whatever brightness was asked for.
STANDBY_BRIGHTNESS = 10
DEFAULT_BRIGHTNESS = 100
DEFAULT_CHIME_VOLUME = 50

Ftype = DisplayFrameType
PAIR_REFUSALS = {
    Refusal.CLOSED: DisplayNackCode.NOT_PAIRING,
    Refusal.CONFIRM: DisplayNackCode.CONFIRM_CODE,
    Refusal.WRONG_CODE: DisplayNackCode.NOT_PAIRING,
}
# refusals that are not the agent's mistake: counted as auth failures, not bad requests
_AUTH_NACKS = frozenset(
    {DisplayNackCode.AUTH_FAILED, DisplayNackCode.NOT_PAIRING, DisplayNackCode.CONFIRM_CODE}
)


@dataclass(frozen=True, slots=True)
class RoomView:
    room: str
    number: str
    fresh: bool  # called (or recalled) in the last few seconds: highlighted


@dataclass(frozen=True, slots=True)
class DisplayView:
    """What the waiting room sees (and what the control page shows). Numbers only."""

    has_state: bool
    state_version: int
    rooms: tuple[RoomView, ...]
    next_numbers: tuple[str, ...]
    announcement: str  # "" when none (or expired)
    announcement_level: str  # "info" or "urgent"; "" when none
    announcement_expires_at: int | None
    chime: bool  # the chime is sounding now
    chime_count: int  # chimes since the simulator started
    brightness: int  # the backlight now (dimmed in standby)
    set_brightness: int  # what the agent asked for
    standby: bool
    clock_set: bool
    display_time: int | None
    boot_count: int
    provisioned: bool  # has a link key: takes only sealed frames
    pairing_open_s: int  # seconds left in the pairing-button window, 0 when closed
    pairing_code: str  # the confirm code a second PAIR in the window needs; "" when none
    auth_failures: int
    bad_requests: int  # frames answered with a NACK for their content
    dropped_bytes: int  # garbage the line parser skipped


class _Refused(Exception):  # noqa: N818 - a control-flow signal that becomes a NACK
    def __init__(self, code: DisplayNackCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class DisplayFirmware:
    """One call-number display. Drive it with :meth:`feed` (or :meth:`receive`),
    :meth:`tick` and :meth:`power_cycle`; collect HELLO with :meth:`take_unsolicited`."""

    def __init__(
        self,
        clock: Clock,
        paired: DisplayPairingRecord | None = None,
        *,
        model: str = "denen-sim-display",
        firmware: str = "sim-0.1.0",
        chime_s: float = CHIME_S,
        hello_retry_s: float = HELLO_RETRY_S,
        release_keys: Iterable[Ed25519PublicKey] = (),
        update_capacity: int = UPDATE_CAPACITY,
    ) -> None:
        running_version(firmware)  # raises ValueError: updates must compare versions
        self.clock = clock
        self.model = model
        self.firmware = firmware
        self.chime_s = chime_s
        self.hello_retry_s = hello_retry_s
        self.link = None if paired is None else self._link_for(paired)
        self.pairing_window = PairingWindow(clock, "display")
        self.persist_due = False  # the link's key or counters changed: write the flash
        self.parser = DisplayFrameParser()
        self.boot_count = 1
        self.boot_reason = BootReason.POWER_ON
        self.chime_count = 0
        self.auth_failures = 0
        self.bad_requests = 0
        self.screen = Screen.NO_STATE
        self.backlight = Backlight.ON
        # no release key: every update is refused (fail secure, no default key)
        self.updates = UpdateReceiver(
            DeviceKind.DISPLAY, model, TrustedKeys.of(release_keys), update_capacity
        )
        self._clear()

    @staticmethod
    def _link_for(record: DisplayPairingRecord) -> DisplayLinkAuth:
        return DisplayLinkAuth(
            record.link_key,
            DisplayDirection.TO_AGENT,
            send_counter=record.send_counter,
            recv_counter=record.recv_counter,
        )

    def record(self) -> DisplayPairingRecord | None:
        """What the flash holds now; ``None`` before pairing."""
        if self.link is None:
            return None
        return DisplayPairingRecord(self.link.key, self.link.send_counter, self.link.recv_counter)

    def press_pair_button(self) -> None:
        """The pairing button on the display: PAIR is accepted in the next 60 s."""
        self.pairing_window.press()

    def _clear(self) -> None:
        """Everything a power cycle loses (RAM), in its power-on value."""
        self.state_version = 0
        self.calls = Calls()
        self.announcement = Announcement()
        self.brightness = DEFAULT_BRIGHTNESS
        self.chime_volume = DEFAULT_CHIME_VOLUME
        self.schedule = StandbySchedule()
        self._clock_offset: float | None = None  # no RTC: time comes from the agent
        self._fresh_rooms: frozenset[str] = frozenset()
        self._chime_until = 0.0
        self._hello_at: float | None = self.clock.now()

    # ------------------------------------------------------------------ time

    def display_time(self) -> int | None:
        """The display's clock (UTC epoch seconds), ``None`` until the agent set it."""
        if self._clock_offset is None:
            return None
        return math.floor(self.clock.now() + self._clock_offset)

    def _set_time(self, epoch: int) -> None:
        self._clock_offset = epoch - self.clock.now()

    # ----------------------------------------------------------------- power

    def power_cycle(self) -> None:
        """Power off and on: the screen forgets everything and says HELLO."""
        self.updates.abandon()  # a transfer cut by the power is started again with BEGIN
        self._reboot(BootReason.POWER_CYCLE)

    def _reboot(self, reason: BootReason) -> None:
        self._screen(ScreenTrigger.POWER_CYCLE)
        self._backlight(BacklightTrigger.POWER_CYCLE)
        self._clear()
        self.parser = DisplayFrameParser()  # a fresh UART: half a frame is lost
        self.boot_count += 1
        self.boot_reason = reason

    def tick(self) -> None:
        """Run what is due: announcement expiry, standby by the schedule."""
        if self.announcement.text and self._expired(self.announcement):
            self.announcement = Announcement()
        t = self.display_time()
        urgent = bool(self.announcement.text) and (
            self.announcement.level is AnnouncementLevel.URGENT
        )
        # without a clock the schedule cannot be read: stay on rather than go dark
        awake = t is None or urgent or self.schedule.is_on(t)
        self._backlight(BacklightTrigger.WAKE_DUE if awake else BacklightTrigger.SLEEP_DUE)

    def take_unsolicited(self) -> list[DisplayFrame]:
        """The HELLO owed to the agent: at once after boot, then every few seconds while
        the display has no state."""
        self.tick()
        now = self.clock.now()
        if self.screen is not Screen.NO_STATE or self._hello_at is None or now < self._hello_at:
            return []
        self._hello_at = now + self.hello_retry_s
        hello = Hello(self.model, self.firmware, self.boot_count, self.boot_reason)
        return [self._seal(DisplayFrame(Ftype.HELLO, 0, hello.encode()))]

    # ----------------------------------------------------------------- wire

    def feed(self, data: bytes) -> list[DisplayFrame]:
        """Bytes from the serial line → the replies to every whole frame in them."""
        replies: list[DisplayFrame] = []
        for frame in self.parser.feed(data):
            replies += self.receive(frame)
        return replies

    def receive(self, frame: DisplayFrame) -> list[DisplayFrame]:
        """Answer one frame; bad input from the wire gets a NACK, never an exception."""
        self.tick()
        if frame.type not in REQUEST_TYPES:
            return [self._nack(frame, DisplayNackCode.NOT_A_REQUEST, "the display takes requests")]
        if frame.type is Ftype.PAIR:
            return [self._pair(frame)]
        if self.link is None:
            if frame.key_id != KEY_ID_NONE:
                self.auth_failures += 1
                return [self._nack(frame, DisplayNackCode.AUTH_FAILED, "the display has no key")]
            return [self._answer(frame)]
        if frame.key_id == KEY_ID_NONE:
            if frame.type is Ftype.GET_STATUS:  # a technician may read what is on the line
                return [self._answer(frame)]
            self.auth_failures += 1
            return [self._nack(frame, DisplayNackCode.AUTH_FAILED, "frame is not authenticated")]
        try:
            self.link.check(frame)
        except AuthError as exc:
            self.auth_failures += 1
            return [self._nack(frame, DisplayNackCode.AUTH_FAILED, exc.reason)]
        self.persist_due = True
        return [self._seal(self._answer(frame), bound=frame.counter)]

    def _pair(self, frame: DisplayFrame) -> DisplayFrame:
        """PAIR: a link key in clear, so only inside the window the button opened."""
        if frame.key_id != KEY_ID_NONE:
            return self._nack(frame, DisplayNackCode.BAD_REQUEST, "PAIR travels unauthenticated")
        try:
            request = DisplayPairRequest.decode(frame.payload)
        except FrameError as exc:
            return self._nack(frame, DisplayNackCode.BAD_REQUEST, str(exc))
        if not is_trusted_time(request.time):
            return self._nack(frame, DisplayNackCode.BAD_REQUEST, "PAIR time is before 2024")
        try:
            fresh = self.pairing_window.admit(request.link_key, request.confirm)
        except PairRefused as exc:
            self.auth_failures += 1
            return self._nack(frame, PAIR_REFUSALS[exc.refusal], exc.message)
        if fresh:
            self.link = DisplayLinkAuth(request.link_key, DisplayDirection.TO_AGENT)
            self._set_time(request.time)
        return self._seal(DisplayFrame(Ftype.ACK, frame.seq, encode_u32(self.state_version)))

    def _answer(self, frame: DisplayFrame) -> DisplayFrame:
        handler = self._handlers()[frame.type]
        try:
            ftype, payload = handler(frame.payload)
        except FrameError as exc:
            return self._nack(frame, DisplayNackCode.BAD_REQUEST, str(exc))
        except _Refused as exc:
            return self._nack(frame, exc.code, exc.message)
        return DisplayFrame(ftype, frame.seq, payload)

    def _nack(self, frame: DisplayFrame, code: DisplayNackCode, message: str) -> DisplayFrame:
        self.bad_requests += code not in _AUTH_NACKS
        return DisplayFrame(Ftype.NACK, frame.seq, encode_nack(code, message))

    def _seal(self, frame: DisplayFrame, *, bound: int = 0) -> DisplayFrame:
        if self.link is None:
            return frame
        self.persist_due = True  # a send counter on the line is one the flash holds
        return self.link.seal(frame, bound=bound)

    def _handlers(self) -> dict[DisplayFrameType, Callable[[bytes], tuple[Ftype, bytes]]]:
        return {
            Ftype.GET_STATUS: lambda _: (Ftype.STATUS, self.status().encode()),
            Ftype.SET_TIME: self._on_set_time,
            Ftype.SHOW_STATE: self._on_show_state,
            Ftype.SET_CALLS: self._on_set_calls,
            Ftype.SET_ANNOUNCEMENT: self._on_set_announcement,
            Ftype.SET_BRIGHTNESS: self._on_set_brightness,
            Ftype.SET_STANDBY: self._on_set_standby,
            Ftype.UPDATE_BEGIN: self._on_update_begin,
            Ftype.UPDATE_CHUNK: self._on_update_chunk,
            Ftype.UPDATE_COMMIT: self._on_update_commit,
        }

    def _ack(self) -> tuple[Ftype, bytes]:
        self.tick()  # the new announcement or schedule takes effect at once
        return Ftype.ACK, encode_u32(self.state_version)

    def _on_set_time(self, payload: bytes) -> tuple[Ftype, bytes]:
        epoch = decode_u32(payload, "SET_TIME")
        if not is_trusted_time(epoch):
            raise _Refused(DisplayNackCode.BAD_REQUEST, "that time is before 2024: not trusted")
        self._set_time(epoch)
        return self._ack()

    def _on_show_state(self, payload: bytes) -> tuple[Ftype, bytes]:
        state = DisplayState.decode(payload)
        restoring = self.screen is Screen.NO_STATE
        self._screen(ScreenTrigger.FULL_STATE)
        if is_trusted_time(state.time):
            self._set_time(state.time)
        self.state_version = state.version
        self.announcement = state.announcement
        self.brightness = state.brightness
        self.chime_volume = state.chime_volume
        self.schedule = state.standby
        self._apply_calls(state.calls, chime=not restoring)
        return self._ack()

    def _require_state(self) -> None:
        if next_screen(self.screen, ScreenTrigger.PARTIAL_UPDATE) is None:
            raise _Refused(DisplayNackCode.NEED_STATE, "no state since boot: send SHOW_STATE")

    # each partial update decodes before it changes anything: a bad payload changes nothing

    def _on_set_calls(self, payload: bytes) -> tuple[Ftype, bytes]:
        self._require_state()
        self._apply_calls(Calls.decode(payload))
        return self._ack()

    def _on_set_announcement(self, payload: bytes) -> tuple[Ftype, bytes]:
        self._require_state()
        self.announcement = Announcement.decode(payload)
        return self._ack()

    def _on_set_brightness(self, payload: bytes) -> tuple[Ftype, bytes]:
        self._require_state()
        self.brightness = decode_brightness(payload)
        return self._ack()

    def _on_set_standby(self, payload: bytes) -> tuple[Ftype, bytes]:
        self._require_state()
        self.schedule = StandbySchedule.decode(payload)
        return self._ack()

    # firmware update: image refusals discard the transfer, sequence refusals keep it

    def _updating(self, step: Callable[[], tuple[int, int]]) -> tuple[Ftype, bytes]:
        try:
            received, total = step()
        except ImageError as exc:
            raise _Refused(IMAGE_NACKS[exc.refusal], exc.message) from None
        except TransferError as exc:
            raise _Refused(DisplayNackCode.UPDATE_SEQUENCE, str(exc)) from None
        return Ftype.UPDATE_ACK, encode_progress(received, total)

    def _require_no_urgent(self) -> None:
        if self.announcement.text and self.announcement.level is AnnouncementLevel.URGENT:
            raise _Refused(
                DisplayNackCode.BUSY, "an urgent announcement is on screen: update after it ends"
            )

    def _on_update_begin(self, payload: bytes) -> tuple[Ftype, bytes]:
        def begin() -> tuple[int, int]:
            progress = self.updates.begin(payload, self.firmware)
            try:
                self._require_no_urgent()
            except _Refused:
                self.updates.abandon()
                raise
            return progress

        return self._updating(begin)

    def _on_update_chunk(self, payload: bytes) -> tuple[Ftype, bytes]:
        return self._updating(lambda: self.updates.chunk(payload))

    def _on_update_commit(self, payload: bytes) -> tuple[Ftype, bytes]:
        def commit() -> tuple[int, int]:
            header = self.updates.commit(payload, self.firmware)
            if header is None:  # a repeated COMMIT: the display already runs it
                size = 0 if self.updates.installed is None else self.updates.installed.payload_len
                return size, size
            self._require_no_urgent()  # the verified image waits
            self.firmware = str(self.updates.installed_now().version)
            self._reboot(BootReason.FIRMWARE_UPDATE)
            return header.payload_len, header.payload_len

        return self._updating(commit)

    def _apply_calls(self, calls: Calls, *, chime: bool = True) -> None:
        before = {c.room: (c.number, c.call_seq) for c in self.calls.rooms}
        fresh = frozenset(
            c.room for c in calls.rooms if before.get(c.room) != (c.number, c.call_seq)
        )
        self.calls = calls
        if not (chime and fresh):
            return
        self._fresh_rooms = fresh
        self._chime_until = self.clock.now() + self.chime_s
        if self.chime_volume > 0:
            self.chime_count += 1

    # ----------------------------------------------------------------- views

    def status(self) -> DisplayStatus:
        """What GET_STATUS answers."""
        return DisplayStatus(
            model=self.model,
            firmware=self.firmware,
            state_version=self.state_version,
            clock=self.display_time() or 0,
            boot_count=self.boot_count,
            brightness=self._effective_brightness(),
            has_state=self.screen is Screen.SHOWING,
            standby=self.backlight is Backlight.STANDBY,
            provisioned=self.link is not None,
            bad_frames=min(self.parser.bad_frames, 0xFFFFFFFF),
        )

    def view(self) -> DisplayView:
        """What the waiting room sees right now; reads the clock but changes nothing."""
        now = self.clock.now()
        chiming = now < self._chime_until
        shown = self.announcement if not self._expired(self.announcement) else Announcement()
        return DisplayView(
            has_state=self.screen is Screen.SHOWING,
            state_version=self.state_version,
            rooms=tuple(
                RoomView(c.room, c.number, chiming and c.room in self._fresh_rooms)
                for c in self.calls.rooms
            ),
            next_numbers=self.calls.next_numbers,
            announcement=shown.text,
            announcement_level=shown.level.name.lower() if shown.text else "",
            announcement_expires_at=(shown.expires_at or None) if shown.text else None,
            chime=chiming and self.chime_volume > 0,
            chime_count=self.chime_count,
            brightness=self._effective_brightness(),
            set_brightness=self.brightness,
            standby=self.backlight is Backlight.STANDBY,
            clock_set=self._clock_offset is not None,
            display_time=self.display_time(),
            boot_count=self.boot_count,
            provisioned=self.link is not None,
            pairing_open_s=math.ceil(self.pairing_window.remaining()),
            pairing_code=("" if (code := self.pairing_window.code) is None else f"{code:06d}"),
            auth_failures=self.auth_failures,
            bad_requests=self.bad_requests,
            dropped_bytes=self.parser.dropped_bytes,
        )

    # --------------------------------------------------------------- helpers

    def _expired(self, announcement: Announcement) -> bool:
        t = self.display_time()
        # without a clock an expiry cannot be read: keep showing (the agent sets the time)
        return announcement.expires_at != 0 and t is not None and t >= announcement.expires_at

    def _effective_brightness(self) -> int:
        if self.backlight is Backlight.STANDBY:
            return min(self.brightness, STANDBY_BRIGHTNESS)
        return self.brightness

    def _screen(self, trigger: ScreenTrigger) -> None:
        new = next_screen(self.screen, trigger)
        if new is not None:
            self.screen = new

    def _backlight(self, trigger: BacklightTrigger) -> None:
        new = next_backlight(self.backlight, trigger)
        if new is not None:
            self.backlight = new
