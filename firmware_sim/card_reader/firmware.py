"""The kiosk card reader's firmware, sans-IO: a tap in, the line it sends out.

A QR or NFC reader in serial mode does not check what it reads: it sends the characters
it decoded and CR LF. So this one sends whatever is "on the card", and a misread (one
digit read wrong, as a smudged QR code gives) is the agent's to catch with the card
number's check digit (:mod:`protocol.patient_card`).

The reader keeps no card number: its view counts taps and says when the last one was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from firmware_sim.errors import SimulatorError
from protocol.clock import Clock
from protocol.patient_card import MAX_LINE

LINE_ENDING = b"\r\n"


class CardContentError(SimulatorError, ValueError):
    """What is "on the card" cannot be sent as a line (not printable ASCII, or too long)."""


@dataclass(frozen=True, slots=True)
class CardReaderView:
    taps: int
    misreads: int  # taps read wrong on purpose (the control page's "misread" box)
    last_tap_at: int | None  # UTC epoch seconds
    bytes_sent: int


class CardReaderFirmware:
    """One reader. :meth:`tap` returns the bytes it puts on the line."""

    def __init__(self, clock: Clock, *, line_ending: bytes = LINE_ENDING) -> None:
        self.clock = clock
        self.line_ending = line_ending
        self.taps = 0
        self.misreads = 0
        self.bytes_sent = 0
        self._last_tap_at: float | None = None

    def tap(self, content: str, *, misread: bool = False) -> bytes:
        """A card held to the reader: its content as one line.

        Spaces and dashes a person typed between digit groups are not on the card and are
        left out. With ``misread`` one digit is read wrong, as a smudged code would be.
        """
        text = content.strip().replace(" ", "").replace("-", "")
        if not text or len(text) > MAX_LINE or not all(0x21 <= ord(c) < 0x7F for c in text):
            raise CardContentError(
                f"a card holds 1..{MAX_LINE} printable ASCII characters (spaces and dashes apart)"
            )
        if misread:
            text = _misread(text)
            self.misreads += 1
        line = text.encode("ascii") + self.line_ending
        self.taps += 1
        self.bytes_sent += len(line)
        self._last_tap_at = self.clock.now()
        return line

    def view(self) -> CardReaderView:
        last = None if self._last_tap_at is None else math.floor(self._last_tap_at)
        return CardReaderView(self.taps, self.misreads, last, self.bytes_sent)


def _misread(text: str) -> str:
    """One digit (the last but one, or the last) read one higher: the check digit sees it."""
    positions = [i for i, c in enumerate(text) if c.isdigit()]
    if not positions:
        return text[:-1] + "?"
    i = positions[-2] if len(positions) > 1 else positions[-1]
    return text[:i] + str((int(text[i]) + 1) % 10) + text[i + 1 :]
