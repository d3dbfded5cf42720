"""Puts a :class:`DisplayFirmware` on a pseudo-terminal, so an agent opens it like a UART.

The host only moves bytes: what the agent writes is fed to the firmware, whose replies go
back, and a periodic tick runs its timers and sends the HELLO it owes (at start, after a
power cycle, and every few seconds while it has no state). With a ``state_file`` the host
writes the display's pairing record (its "flash": key and counters) there before any frame
that changed it goes out, so a restarted simulator comes back paired.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from types import TracebackType

from firmware_sim.display.firmware import DisplayFirmware, DisplayView
from firmware_sim.lock.state_file import save_pairing
from firmware_sim.pty_port import PtyPort
from protocol.display_wire import DisplayFrame

log = logging.getLogger(__name__)


class DisplayPtyHost:
    """One display on one pty; ``async with DisplayPtyHost(...) as host``."""

    def __init__(
        self,
        display_id: str,
        firmware: DisplayFirmware,
        *,
        link: Path | None = None,
        tick_s: float = 0.2,
        state_file: Path | None = None,
    ) -> None:
        self.display_id = display_id
        self.firmware = firmware
        self.tick_s = tick_s
        self.state_file = state_file
        self.port = PtyPort(f"display {display_id}", self._on_data, link=link)
        self._tick_task: asyncio.Task[None] | None = None

    @property
    def path(self) -> str:
        """The slave device the agent opens, e.g. ``/dev/pts/7``."""
        return self.port.path

    @property
    def link(self) -> Path | None:
        return self.port.link

    async def start(self) -> None:
        """Open the pty, say HELLO, and start ticking."""
        self.port.open()
        self.flush()
        self._tick_task = asyncio.create_task(
            self._tick_loop(), name=f"display-{self.display_id}-tick"
        )
        log.info("display %s hosted on %s", self.display_id, self.path)

    async def stop(self) -> None:
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
            self._tick_task = None
        self.port.close()
        log.info("display %s stopped", self.display_id)

    async def __aenter__(self) -> DisplayPtyHost:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -------------------------------------------------- what happens in the waiting room

    def view(self) -> DisplayView:
        """What the display shows now."""
        return self.firmware.view()

    def power_cycle(self) -> DisplayView:
        """Pull the plug and put it back: the display forgets its state and says HELLO."""
        self.firmware.power_cycle()
        log.info("display %s power-cycled (boot %d)", self.display_id, self.firmware.boot_count)
        self.flush()
        return self.firmware.view()

    def pair_button(self) -> DisplayView:
        """Press the pairing button: the display takes PAIR in the next 60 s."""
        self.firmware.press_pair_button()
        return self.firmware.view()

    # ---------------------------------------------------------------- bytes

    def flush(self) -> None:
        """Send the HELLO the firmware owes the agent, if any."""
        frames = self.firmware.take_unsolicited()
        self._persist()
        for frame in frames:
            self._send(frame)

    def _on_data(self, data: bytes) -> None:
        replies = self.firmware.feed(data)
        self._persist()
        for reply in replies:
            self._send(reply)
        self.flush()

    def _persist(self) -> None:
        # before the frames go out: a counter on the line is never one the file lacks
        if self.firmware.persist_due:
            self.firmware.persist_due = False
            record = self.firmware.record()
            if self.state_file is not None and record is not None:
                save_pairing(self.state_file, record)

    def _send(self, frame: DisplayFrame) -> None:
        self.port.write(bytes(frame))

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            self.firmware.tick()
            self.flush()
