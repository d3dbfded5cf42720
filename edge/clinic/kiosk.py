"""A kiosk's patient-card reader: its serial line, the card-line parser, the desk.

QR and NFC readers in serial mode send one line per card (:mod:`protocol.patient_card`).
A valid card number goes to :meth:`ClinicDesk.check_in`; a line that is not one (a misread:
the check digit is wrong) puts "please tap again" on the kiosk screen. An unplugged reader
is reopened with capped exponential backoff and full jitter.

The card number lives only in memory here and is never logged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from edge.backoff import Backoff
from edge.config import CardReaderConfig, ClinicConfig
from edge.errors import EdgeError, LockUnreachable, OutboxError, StoreError
from edge.transports.serial_port import SerialTransport
from protocol.patient_card import CardLineParser, CardRead, PatientCardNumber

log = logging.getLogger(__name__)


class CardReaderUnreachable(EdgeError, ConnectionError):  # noqa: N818 - domain names from the design
    """The reader's serial line cannot be opened, or it went away (unplugged)."""

    def __init__(self, reader_id: str, address: str, reason: str = "") -> None:
        self.reader_id = reader_id
        self.address = address
        detail = f" ({reason})" if reason else ""
        super().__init__(
            f"card reader {reader_id} is not there on {address}{detail}: check its USB cable, "
            "and the transport in [[card_readers]] of the site config"
        )


class CheckinDesk(Protocol):
    """What a kiosk needs from the clinic desk."""

    async def check_in(self, kiosk_id: str, card: PatientCardNumber) -> object: ...

    def misread(self, kiosk_id: str) -> object: ...


class ReaderLine:
    """A card reader's serial line: :class:`SerialTransport` with reader errors."""

    def __init__(self, reader: CardReaderConfig) -> None:
        self.reader_id = reader.id
        self._serial = SerialTransport(reader.id, reader.spec.address, baudrate=reader.baud)

    @property
    def address(self) -> str:
        return self._serial.address

    def _gone(self, exc: LockUnreachable, default: str) -> CardReaderUnreachable:
        reason = str(exc.__cause__) if exc.__cause__ is not None else default
        return CardReaderUnreachable(self.reader_id, self.address, reason)

    async def open(self) -> None:
        try:
            await self._serial.open()
        except LockUnreachable as exc:
            raise self._gone(exc, "cannot open the port") from exc

    async def receive(self) -> bytes:
        try:
            return await self._serial.receive()
        except LockUnreachable as exc:
            raise self._gone(exc, "the line was hung up") from exc

    async def close(self) -> None:
        await self._serial.close()


class KioskReader:
    """Keeps one reader open and hands every card it reads to the desk."""

    def __init__(
        self, reader: CardReaderConfig, *, desk: CheckinDesk, clinic: ClinicConfig
    ) -> None:
        self.reader = reader
        self.kiosk_id = reader.id
        self.desk = desk
        self.clinic = clinic
        self.connected = False
        self.cards_read = 0
        self.lines_rejected = 0

    async def run(self) -> None:
        """Open the reader, read cards, reopen with backoff when it goes; never returns."""
        backoff = Backoff(self.clinic.reader_reconnect_base_s, self.clinic.reader_reconnect_cap_s)
        while True:
            line = ReaderLine(self.reader)
            try:
                await line.open()
                self.connected = True
                backoff.reset()
                log.info("card reader %s: open on %s", self.kiosk_id, line.address)
                await self._read(line)
            except CardReaderUnreachable as exc:
                level = logging.WARNING if backoff.attempt == 0 else logging.DEBUG
                log.log(level, "%s; retrying", exc)
            finally:
                self.connected = False
                await line.close()
            await asyncio.sleep(backoff.next_delay())

    async def _read(self, line: ReaderLine) -> None:
        parser = CardLineParser()  # a fresh parser: half a line from before is not a card
        while True:
            for read in parser.feed(await line.receive()):
                if isinstance(read, CardRead):
                    self.cards_read += 1
                    await self._check_in(read.card)
                else:
                    self.lines_rejected += 1
                    log.info(
                        "card reader %s: a line that is no card number (%s, %d bytes)",
                        self.kiosk_id,
                        read.reason.value,
                        read.length,
                    )
                    self._misread()

    async def _check_in(self, card: PatientCardNumber) -> None:
        try:
            await self.desk.check_in(self.kiosk_id, card)
        except (StoreError, OutboxError) as exc:
            log.error("kiosk %s: check-in failed: %s", self.kiosk_id, exc)  # noqa: TRY400 - expected failure, no traceback

    def _misread(self) -> None:
        try:
            self.desk.misread(self.kiosk_id)
        except StoreError as exc:
            log.error("kiosk %s: %s", self.kiosk_id, exc)  # noqa: TRY400 - expected failure, no traceback
