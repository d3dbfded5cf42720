"""One coordinator per call-number display: keeps it showing the site's stored display state.

On every connection it sets the display's clock (when ours is trusted) and sends the whole
state (``SHOW_STATE``) for this display from the latest stored
:class:`~protocol.messages.DisplayStateData`. A newer stored state is sent at once; the
display chimes only for rooms whose (number, call_seq) changed, so sending a state twice
is harmless. A display that says ``HELLO`` (it booted, e.g. after a power cycle) or
answers ``NACK NEED_STATE`` gets the whole state again at once, so it shows the current
numbers again well within 2 seconds.

The brightness and standby of the agent config twin (:class:`DisplaySettings`) take the
place of the display state's; a change resends the whole state. At every connection the
display's firmware is read (``GET_STATUS``), and a fleet command can install a signed image
(:meth:`DisplayCoordinator.update_firmware`) over the same line.

The wire is :mod:`protocol.display_wire`, request/answer by ``seq`` plus the unsolicited
HELLO. Every frame to the display is sealed with its link key from the key store
(:mod:`edge.display_keys`, written by ``denen provision display pair``); a display with no
key there is not driven at all (:class:`DisplayNotPaired` says how to pair it). An answer
counts only if its MAC checks, its counter is new and it is bound to its request; a HELLO
only if it is sealed. Anything else is dropped and counted (``auth_failures``). The one
unsealed answer taken is a NACK saying the display refuses our key (it was reset or paired
elsewhere), reported as a :class:`DisplayRejected` saying to pair it again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from edge.backoff import Backoff
from edge.config import DisplayLinkConfig
from edge.display_keys import DisplayKeyStore
from edge.errors import EdgeError, KeyStoreError, LockUnreachable, StoreError
from edge.lock_keys import AgentLink
from edge.transports.serial_port import SerialTransport
from edge.transports.spec import TransportSpec
from protocol.clock import Clock, is_trusted_time
from protocol.display_auth import KEY_ID_NONE, AuthError
from protocol.display_wire import (
    DisplayFrame,
    DisplayFrameParser,
    DisplayFrameType,
    DisplayNackCode,
    DisplayStatus,
    Hello,
    decode_nack,
    decode_u32,
    encode_u32,
)
from protocol.errors import FrameError
from protocol.firmware_image import FirmwareImage
from protocol.firmware_updater import UpdateRequest, UpdateResult, display_updater, run_update
from protocol.messages import DisplayContent, DisplaySettings, DisplayStateData

log = logging.getLogger(__name__)

Ftype = DisplayFrameType


class DisplayUnreachable(EdgeError, ConnectionError):  # noqa: N818 - domain names from the design
    """A display did not answer, or its line is gone: retried with backoff."""

    def __init__(self, display_id: str, address: str, reason: str = "") -> None:
        self.display_id = display_id
        self.address = address
        detail = f" ({reason})" if reason else ""
        super().__init__(
            f"display {display_id} did not answer on {address}{detail}: check its cable "
            "and power, and the transport in [[displays]] of the site config"
        )


class DisplayRejected(EdgeError):  # noqa: N818 - domain names from the design
    """The display answered a request with NACK: it says *we* sent something wrong."""

    def __init__(self, display_id: str, request: str, code: int, message: str) -> None:
        self.display_id = display_id
        self.request = request
        self.code = code
        hint = ""
        if code == DisplayNackCode.AUTH_FAILED:
            hint = (
                ": the display does not take this Pi's key (it was reset or paired "
                f"elsewhere); {PAIR_HINT.format(display_id=display_id)}"
            )
        super().__init__(f"display {display_id} refused {request}: code {code}: {message}{hint}")


PAIR_HINT = (
    "press its pairing button and run "
    "`denen provision display pair --serial PORT --id {display_id}` on this Pi"
)


class DisplayNotPaired(EdgeError):  # noqa: N818 - domain names from the design
    """No key for this display on this Pi: the agent sends a display sealed frames only."""

    def __init__(self, display_id: str) -> None:
        self.display_id = display_id
        super().__init__(
            f"display {display_id} is not paired with this Pi, so it stays blank: "
            + PAIR_HINT.format(display_id=display_id)
        )


# what goes wrong with one display; the coordinator logs it and reconnects later
DISPLAY_ERRORS = (
    DisplayUnreachable,
    DisplayRejected,
    DisplayNotPaired,
    FrameError,
    StoreError,
    KeyStoreError,
)


def is_auth_refusal(frame: DisplayFrame) -> bool:
    """An unsealed NACK saying the display does not take our key (or has none)."""
    if frame.key_id != KEY_ID_NONE or frame.type is not Ftype.NACK:
        return False
    try:
        code, _ = decode_nack(frame.payload)
    except FrameError:
        return False
    return code == DisplayNackCode.AUTH_FAILED


class DisplayLine:
    """A display's serial line: :class:`SerialTransport` with display errors."""

    def __init__(self, display_id: str, address: str) -> None:
        self.display_id = display_id
        self._serial = SerialTransport(display_id, address)

    @property
    def address(self) -> str:
        return self._serial.address

    def _down(self, exc: LockUnreachable, default: str) -> DisplayUnreachable:
        reason = str(exc.__cause__) if exc.__cause__ is not None else default
        return DisplayUnreachable(self.display_id, self.address, reason)

    async def open(self) -> None:
        try:
            await self._serial.open()
        except LockUnreachable as exc:
            raise self._down(exc, "cannot open the port") from exc

    async def send(self, data: bytes) -> None:
        try:
            await self._serial.send(data)
        except LockUnreachable as exc:
            raise self._down(exc, "not open") from exc

    async def receive(self) -> bytes:
        try:
            return await self._serial.receive()
        except LockUnreachable as exc:
            raise self._down(exc, "the line was hung up") from exc

    async def close(self) -> None:
        await self._serial.close()


async def open_display(spec: TransportSpec, *, display_id: str) -> DisplayLine:
    """Open a display's serial (or pty) line; ``DisplayUnreachable`` when it is not there."""
    line = DisplayLine(display_id, spec.address)
    await line.open()
    return line


Connector = Callable[[], Awaitable[DisplayLine]]


class DisplayStateSource(Protocol):
    """Where the display state to show comes from: the store (the cloud's retained state),
    or the clinic desk while it runs the queue itself (:mod:`edge.clinic.desk`)."""

    def display_state(self) -> DisplayStateData | None: ...


@dataclass
class DisplayLinkStats:
    """What went wrong on the line, summed over every connection to this display."""

    dropped_bytes: int = 0
    bad_frames: int = 0
    unmatched_frames: int = 0
    timeouts: int = 0
    auth_failures: int = 0  # frames that failed the MAC or counter check: forged or replayed

    @property
    def frames_dropped(self) -> int:
        return self.bad_frames + self.unmatched_frames + self.auth_failures


class DisplayCoordinator:
    """Keeps one display connected and showing the stored display state."""

    def __init__(
        self,
        display_id: str,
        *,
        connect: Connector,
        address: str,
        store: DisplayStateSource,
        clock: Clock,
        link: DisplayLinkConfig,
        keys: DisplayKeyStore,
    ) -> None:
        self.display_id = display_id
        self._connect = connect
        self.address = address
        self.store = store
        self.clock = clock
        self.link_config = link
        self.keys = keys
        self.stats = DisplayLinkStats()
        self.reachable = False
        self.shown_version: int | None = None  # the state version the display acknowledged
        self.hellos = 0  # HELLO frames heard: boots and power cycles
        self.full_states_sent = 0
        self.shown = asyncio.Event()  # set once the display acknowledged a state
        self.firmware: str | None = None  # as the display last reported it
        self.settings = DisplaySettings()  # the config twin's brightness and standby
        self._line: DisplayLine | None = None
        self._wakeup = asyncio.Event()
        self._full_due = True
        self._pending: dict[int, tuple[int, asyncio.Future[DisplayFrame]]] = {}
        self._seq = 0
        self._link: AgentLink[DisplayFrame] | None = None

    # ------------------------------------------------------------ public

    def state_stored(self) -> None:
        """A newer display state was stored: show it as soon as the display is connected."""
        self._wakeup.set()

    def apply_settings(self, settings: DisplaySettings) -> None:
        """New brightness and standby from the config twin: the whole state goes again."""
        if settings == self.settings:
            return
        self.settings = settings
        self._full_due = True
        self._wakeup.set()

    async def update_firmware(self, image: FirmwareImage) -> UpdateResult:
        """Install a signed image over this display's line; the display's NACKs become
        :class:`~protocol.firmware_updater.UpdateRefusedError` (it keeps its version).
        After the reboot it says HELLO and gets the whole state again."""
        line = self._line
        if line is None or not self.reachable:
            raise DisplayUnreachable(self.display_id, self.address, "not connected now")

        async def exchange(request: UpdateRequest[DisplayFrameType]) -> DisplayFrame:
            return await self._exchange(line, request.type, request.payload)

        result = await run_update(display_updater(image), exchange)
        self.firmware = result.version
        log.info(
            "display %s: firmware %s -> %s (%s)",
            self.display_id,
            result.previous,
            result.version,
            "installed" if result.installed else "already running",
        )
        return result

    async def run(self) -> None:
        """Connect, keep the display current, reconnect with backoff; never returns."""
        backoff = Backoff(self.link_config.reconnect_base_s, self.link_config.reconnect_cap_s)
        while True:
            try:
                line = await self._connect()
            except DisplayUnreachable as exc:
                self._log_down(exc, backoff)
            else:
                try:
                    await self._session(line, backoff)
                except* DISPLAY_ERRORS as group:
                    self._log_down(group.exceptions[0], backoff)
                finally:
                    self.reachable = False
                    self._line = None
                    self._pending.clear()
                    await line.close()
            await asyncio.sleep(backoff.next_delay())

    # ------------------------------------------------------------ session

    def _log_down(self, exc: BaseException, backoff: Backoff) -> None:
        # the first failure is a warning; repeats while the display stays away are quieter
        level = logging.WARNING if backoff.attempt == 0 else logging.DEBUG
        log.log(level, "%s; retrying", exc)

    async def _session(self, line: DisplayLine, backoff: Backoff) -> None:
        record = self.keys.load(self.display_id)  # read again: it may have been paired since
        if record is None:
            raise DisplayNotPaired(self.display_id)
        self._link = self.keys.display_link(record)
        self._full_due = True  # the display may have been swapped or reset meanwhile
        async with asyncio.TaskGroup() as tg:
            reader = tg.create_task(self._read(line), name=f"display-{self.display_id}-rx")
            try:
                await self._work(line, backoff)
            finally:
                reader.cancel()

    async def _work(self, line: DisplayLine, backoff: Backoff) -> None:
        now = int(self.clock.now())
        if is_trusted_time(now):
            await self._request(line, Ftype.SET_TIME, encode_u32(now))
        status = await self._exchange(line, Ftype.GET_STATUS, b"")
        if status.type is Ftype.STATUS:
            self.firmware = DisplayStatus.decode(status.payload).firmware
        self._line = line
        self.reachable = True
        backoff.reset()
        log.info("display %s: connected on %s", self.display_id, line.address)
        while True:
            self._wakeup.clear()  # before the work, so a wakeup meanwhile is not lost
            await self._bring_up_to_date(line)
            await self._wakeup.wait()

    async def _bring_up_to_date(self, line: DisplayLine) -> None:
        stored = self.store.display_state()
        if stored is None:
            return  # nothing to show yet: the display keeps saying HELLO meanwhile
        full, self._full_due = self._full_due, False
        if not full and self.shown_version == stored.version:
            return
        now = int(self.clock.now())
        state = self._with_settings(stored.content(self.display_id)).to_wire(
            version=stored.version, time=now if is_trusted_time(now) else 0
        )
        reply = await self._request(line, Ftype.SHOW_STATE, state.encode())
        if reply is None:
            return
        acked = decode_u32(reply.payload, "ACK")
        self.full_states_sent += 1
        self.shown_version = acked
        self.shown.set()
        log.info("display %s: showing state v%d", self.display_id, acked)

    def _with_settings(self, content: DisplayContent) -> DisplayContent:
        update: dict[str, object] = {}
        if self.settings.brightness is not None:
            update["brightness"] = self.settings.brightness
        if self.settings.standby is not None:
            update["standby"] = self.settings.standby
        return content.model_copy(update=update) if update else content

    # ------------------------------------------------------------ the wire

    async def _read(self, line: DisplayLine) -> None:
        parser = DisplayFrameParser()
        dropped, bad = 0, 0
        while True:
            frames = parser.feed(await line.receive())
            if parser.dropped_bytes != dropped or parser.bad_frames != bad:
                self.stats.dropped_bytes += parser.dropped_bytes - dropped
                self.stats.bad_frames += parser.bad_frames - bad
                dropped, bad = parser.dropped_bytes, parser.bad_frames
                log.warning(
                    "display %s: skipped garbage on the line (%d bytes, %d bad frames so far)",
                    self.display_id,
                    self.stats.dropped_bytes,
                    self.stats.bad_frames,
                )
            for frame in frames:
                self._dispatch(frame)

    def _dispatch(self, frame: DisplayFrame) -> None:
        if frame.type is Ftype.HELLO:
            if self._authentic(frame, 0):
                self._on_hello(frame)
            return
        pending = self._pending.get(frame.seq)
        if pending is None or pending[1].done():
            # a late answer to a request we already gave up on, or a confused peer
            self.stats.unmatched_frames += 1
            log.debug(
                "display %s: unmatched %s seq %d", self.display_id, frame.type.name, frame.seq
            )
            return
        counter, fut = pending
        if is_auth_refusal(frame) or self._authentic(frame, counter):
            fut.set_result(frame)

    def _authentic(self, frame: DisplayFrame, bound: int) -> bool:
        link = self._link
        if link is None:
            return False  # no session: nothing can be checked, nothing is taken
        try:
            link.check(frame, bound=bound)
        except AuthError as exc:
            self.stats.auth_failures += 1
            log.warning(
                "display %s: dropped a %s frame that is not authentic (%s); %d so far",
                self.display_id,
                frame.type.name,
                exc.reason,
                self.stats.auth_failures,
            )
            return False
        return True

    def _on_hello(self, frame: DisplayFrame) -> None:
        try:
            hello = Hello.decode(frame.payload)
        except FrameError as exc:
            self.stats.bad_frames += 1
            log.warning(
                "display %s: bad HELLO (%s); sending the state anyway", self.display_id, exc
            )
        else:
            self.firmware = hello.firmware
            log.info(
                "display %s: booted (boot %d, %s): sending the whole state",
                self.display_id,
                hello.boot_count,
                hello.reason.name.lower(),
            )
        self.hellos += 1
        self._full_due = True
        self._wakeup.set()

    def _next_seq(self) -> int:
        self._seq = self._seq % 0xFFFF + 1  # 1..65535; 0 is left to unsolicited frames
        return self._seq

    async def _request(
        self, line: DisplayLine, ftype: DisplayFrameType, payload: bytes
    ) -> DisplayFrame | None:
        """Send a request and wait for its ACK, retrying on silence (every request is
        idempotent). ``None`` when the display asks for the whole state first."""
        reply = await self._exchange(line, ftype, payload)
        if reply.type is Ftype.NACK:
            code, message = decode_nack(reply.payload)
            if code == DisplayNackCode.NEED_STATE:
                self._full_due = True
                self._wakeup.set()
                return None
            raise DisplayRejected(self.display_id, ftype.name, code, message)
        if reply.type is not Ftype.ACK:
            raise FrameError(f"display answered {ftype.name} with {reply.type.name}")
        return reply

    async def _exchange(
        self, line: DisplayLine, ftype: DisplayFrameType, payload: bytes
    ) -> DisplayFrame:
        """Send a request and return the answer with its ``seq``, whatever it is,
        retrying on silence; :class:`DisplayUnreachable` after the last try."""
        loop = asyncio.get_running_loop()
        tries = self.link_config.retries
        link = self._link
        if link is None:
            raise DisplayNotPaired(self.display_id)
        for _ in range(tries):
            frame = link.seal(DisplayFrame(ftype, self._next_seq(), payload))
            fut: asyncio.Future[DisplayFrame] = loop.create_future()
            self._pending[frame.seq] = (frame.counter, fut)
            try:
                await line.send(bytes(frame))
                async with asyncio.timeout(self.link_config.request_timeout_s):
                    return await fut
            except TimeoutError:
                self.stats.timeouts += 1
            finally:
                self._pending.pop(frame.seq, None)
        raise DisplayUnreachable(
            self.display_id, line.address, f"no answer to {ftype.name} after {tries} tries"
        )
