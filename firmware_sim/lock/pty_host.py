"""Puts a :class:`LockFirmware` on a pseudo-terminal, so an agent opens it like a UART.

The host only moves bytes: what the agent writes to the slave side (``/dev/pts/N``) is
read from the master fd, fed to :class:`~protocol.lock_wire.FrameParser`, and each frame's
answer plus any unsolicited WAKE is written back. A periodic tick runs the lock's timers.
With a ``state_file`` the host is the lock's flash: the firmware writes an accepted frame's
counter there before it acts on the frame, and the host writes the pairing record whenever
the firmware says it is due (keys and counters: what a real lock keeps in flash).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial
from pathlib import Path
from types import TracebackType

from firmware_sim.errors import LinkPathError, UnknownKeyError
from firmware_sim.lock.firmware import KEYS, LockFirmware, LockView
from firmware_sim.lock.state_file import save_pairing
from firmware_sim.pty_port import MAX_BACKLOG, PtyPort
from protocol.lock_wire import FrameParser, LockFrame

log = logging.getLogger(__name__)

__all__ = ["MAX_BACKLOG", "LinkPathError", "LockPtyHost"]


class LockPtyHost:
    """One lock on one pty; ``async with LockPtyHost(...) as host`` or start()/stop()."""

    def __init__(
        self,
        lock_id: str,
        firmware: LockFirmware,
        *,
        link: Path | None = None,
        tick_s: float = 0.2,
        state_file: Path | None = None,
    ) -> None:
        self.lock_id = lock_id
        self.firmware = firmware
        self.link = link
        self.state_file = state_file
        if state_file is not None:
            firmware.pairing.flash = partial(save_pairing, state_file)
        self.tick_s = tick_s
        self.parser = FrameParser()
        self._port = PtyPort(f"lock {lock_id}", self._on_data, link=link)
        self._tick_task: asyncio.Task[None] | None = None

    @property
    def path(self) -> str:
        """The slave device the agent opens, e.g. ``/dev/pts/7``."""
        return self._port.path

    @property
    def bytes_lost(self) -> int:
        """Output dropped because nobody read it."""
        return self._port.bytes_lost

    @property
    def dropped_bytes(self) -> int:
        """Bytes from the agent the parser threw away (garbage, bad CRC, truncation)."""
        return self.parser.dropped_bytes

    async def start(self) -> None:
        """Open the pty, link it, and start reading and ticking."""
        self._port.open()
        self._tick_task = asyncio.create_task(self._tick_loop(), name=f"lock-{self.lock_id}-tick")
        log.info("lock %s hosted on %s", self.lock_id, self.path)

    async def stop(self) -> None:
        """Stop ticking, close the pty and remove the link."""
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
            self._tick_task = None
        self._port.close()
        log.info("lock %s stopped", self.lock_id)

    async def __aenter__(self) -> LockPtyHost:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ------------------------------------------------- what a person does at the door

    def press(self, keys: str) -> LockView:
        """Press ``keys`` in order (all checked first); return what the lock shows after."""
        for key in keys:
            if key not in KEYS:
                raise UnknownKeyError(key)
        for key in keys:
            self.firmware.press(key)
        self.flush()
        return self.firmware.view()

    def door(self, *, open_: bool, from_inside: bool = False) -> bool:
        """Open or close the door; False when it did not move."""
        if open_:
            moved = self.firmware.open_door(from_inside=from_inside)
        else:
            moved = self.firmware.close_door()
        self.flush()
        return moved

    def view(self) -> LockView:
        """What the lock shows now."""
        return self.firmware.view()

    def pair_button(self) -> LockView:
        """Press the pairing button: the lock takes one PAIR in the next 60 s."""
        self.firmware.press_pair_button()
        return self.firmware.view()

    # ---------------------------------------------------------------- bytes

    def flush(self) -> None:
        """Send the WAKE the firmware owes the agent, if any."""
        frames = self.firmware.take_unsolicited()
        self._persist()
        for frame in frames:
            self._send(frame)

    def _persist(self) -> None:
        # before the frames go out: a counter on the wire is never one the file lacks
        pairing = self.firmware.pairing
        if pairing.persist_due:
            pairing.persist_due = False
            record = pairing.record()
            if self.state_file is not None and record is not None:
                save_pairing(self.state_file, record)

    def _on_data(self, data: bytes) -> None:
        for frame in self.parser.feed(data):
            replies = self.firmware.receive(frame)
            self._persist()
            for reply in replies:
                self._send(reply)
        self.flush()

    def _send(self, frame: LockFrame) -> None:
        self._port.write(bytes(frame))

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            self.firmware.tick()
            self.flush()
