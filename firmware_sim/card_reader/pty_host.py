"""Puts a :class:`CardReaderFirmware` on a pseudo-terminal: taps become lines on the line.

The reader only talks; anything the agent writes to it is read and ignored (counted),
as a real reader in serial mode does.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType

from firmware_sim.card_reader.firmware import CardReaderFirmware, CardReaderView
from firmware_sim.pty_port import PtyPort

log = logging.getLogger(__name__)


class CardReaderPtyHost:
    """One reader on one pty; ``async with CardReaderPtyHost(...) as host``."""

    def __init__(
        self, reader_id: str, firmware: CardReaderFirmware, *, link: Path | None = None
    ) -> None:
        self.reader_id = reader_id
        self.firmware = firmware
        self.bytes_ignored = 0
        self.port = PtyPort(f"card reader {reader_id}", self._on_data, link=link)

    @property
    def path(self) -> str:
        return self.port.path

    @property
    def link(self) -> Path | None:
        return self.port.link

    async def start(self) -> None:
        self.port.open()
        log.info("card reader %s hosted on %s", self.reader_id, self.path)

    async def stop(self) -> None:
        self.port.close()
        log.info("card reader %s stopped", self.reader_id)

    async def __aenter__(self) -> CardReaderPtyHost:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def tap(self, content: str, *, misread: bool = False) -> CardReaderView:
        """A card held to the reader; its line goes to the agent. Logs never hold it."""
        self.port.write(self.firmware.tap(content, misread=misread))
        log.info("card reader %s: tap %d", self.reader_id, self.firmware.taps)
        return self.firmware.view()

    def view(self) -> CardReaderView:
        return self.firmware.view()

    def _on_data(self, data: bytes) -> None:
        self.bytes_ignored += len(data)
