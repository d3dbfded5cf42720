"""Puts a :class:`LockFirmware` on a pseudo-terminal, so an agent opens it like a UART.

The host only moves bytes: what the agent writes to the slave side (``/dev/pts/N``) is
read from the master fd, fed to :class:`~protocol.lock_wire.FrameParser`, and each frame's
answer plus any unsolicited WAKE is written back. A periodic tick runs the lock's timers.
With a ``state_file`` the host writes the lock's pairing record there whenever the
firmware says it is due (keys and counters: what a real lock keeps in flash).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import tty
from pathlib import Path
from types import TracebackType

from firmware_sim.errors import SimulatorError, UnknownKeyError
from firmware_sim.lock.firmware import KEYS, LockFirmware, LockView
from firmware_sim.lock.state_file import save_pairing
from protocol.lock_wire import FrameParser, LockFrame

log = logging.getLogger(__name__)

# Bytes kept for an agent that is not reading; past this, whole frames are dropped, as a
# UART with nobody listening would lose them.
MAX_BACKLOG = 64 * 1024


class LinkPathError(SimulatorError, FileExistsError):
    """The stable link path is taken by something that is not a symlink."""


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
        self.tick_s = tick_s
        self.parser = FrameParser()
        self.bytes_lost = 0  # output dropped because nobody read it
        self._master: int | None = None
        self._slave: int | None = None
        self._path: str | None = None
        self._backlog = bytearray()
        self._tick_task: asyncio.Task[None] | None = None

    @property
    def path(self) -> str:
        """The slave device the agent opens, e.g. ``/dev/pts/7``."""
        if self._path is None:
            raise SimulatorError(f"lock {self.lock_id} is not hosted yet: call start()")
        return self._path

    @property
    def dropped_bytes(self) -> int:
        """Bytes from the agent the parser threw away (garbage, bad CRC, truncation)."""
        return self.parser.dropped_bytes

    async def start(self) -> None:
        """Open the pty, link it, and start reading and ticking."""
        master, slave = os.openpty()
        # raw on both ends: no echo, no CR/LF translation, no line buffering
        tty.setraw(master)
        tty.setraw(slave)
        os.set_blocking(master, False)
        # the slave fd stays open while we run, so the master never sees EIO (hang-up)
        # when the agent closes and reopens the port
        path = os.ttyname(slave)
        if self.link is not None:
            try:
                self._make_link(self.link, path)
            except OSError:
                os.close(master)
                os.close(slave)
                raise
        self._master, self._slave, self._path = master, slave, path
        loop = asyncio.get_running_loop()
        loop.add_reader(master, self._on_readable)
        self._tick_task = asyncio.create_task(self._tick_loop(), name=f"lock-{self.lock_id}-tick")
        log.info("lock %s hosted on %s", self.lock_id, self._path)

    async def stop(self) -> None:
        """Stop ticking, close the pty and remove the link."""
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
            self._tick_task = None
        if self._master is not None:
            loop = asyncio.get_running_loop()
            loop.remove_reader(self._master)
            loop.remove_writer(self._master)
            os.close(self._master)
            self._master = None
        if self._slave is not None:
            os.close(self._slave)
            self._slave = None
        if self._owns_link():
            assert self.link is not None
            self.link.unlink()
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

    def _on_readable(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno == errno.EIO:  # no slave open; cannot happen while we hold one
                return
            raise
        for frame in self.parser.feed(data):
            replies = self.firmware.receive(frame)
            self._persist()
            for reply in replies:
                self._send(reply)
        self.flush()

    def _send(self, frame: LockFrame) -> None:
        data = bytes(frame)
        if len(self._backlog) + len(data) > MAX_BACKLOG:
            self.bytes_lost += len(data)
            return
        self._backlog += data
        self._write_backlog()

    def _write_backlog(self) -> None:
        if self._master is None or not self._backlog:
            return
        loop = asyncio.get_running_loop()
        try:
            written = os.write(self._master, self._backlog)
        except BlockingIOError:
            written = 0
        del self._backlog[:written]
        if self._backlog:
            loop.add_writer(self._master, self._write_backlog)
        else:
            loop.remove_writer(self._master)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            self.firmware.tick()
            self.flush()

    def _owns_link(self) -> bool:
        # another run may have re-pointed the link since; leave theirs alone
        return (
            self.link is not None
            and self.link.is_symlink()
            and os.readlink(self.link) == self._path
        )

    @staticmethod
    def _make_link(link: Path, target: str) -> None:
        if link.is_symlink():
            link.unlink()  # left by an earlier run that did not stop cleanly
        elif link.exists():
            raise LinkPathError(f"{link} exists and is not a symlink; choose another --link")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
