"""The shared digital patient card's number, and the line a kiosk card reader sends.

**Card number.** 16 ASCII digits, printed in groups of four::

    NN FF SSSSSSSSSSS C
    |  |  |           └ Luhn check digit over the 15 digits before it
    |  |  └ serial within the issuing facility (11 digits)
    |  └ the facility that issued the card (2 digits); every facility of the network
    |    accepts it
    └ the network (2 digits)

The check digit catches every single-digit misread and most swaps of neighbouring digits,
so a smudged QR code or a bad NFC read is refused at the kiosk rather than checking in the
wrong patient.

**Privacy.** A card number is personal data: :class:`PatientCardNumber` hides its digits in
``repr`` and ``str``, and a refused line keeps only its reason and length, never its bytes.
Logs carry ticket numbers, not card numbers.

**Reader line.** QR and NFC readers in keyboard-less "serial" mode send one line per card:
the digits and CR LF (some send LF alone; both end a line, blank lines are ignored).
:class:`CardLineParser` is a sans-IO push parser: bytes in, :class:`CardRead` or
:class:`RejectedLine` out; a line longer than its bound is refused as a whole.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from enum import Enum

from protocol.errors import RemoteProtocolError

CARD_DIGITS = 16
DEFAULT_NETWORK = "31"
MAX_LINE = 64  # bytes before the line ending; a reader never sends more for one card
LINE_ENDINGS = b"\r\n"


class RejectReason(Enum):
    TOO_LONG = "too_long"  # longer than MAX_LINE: not a card, or two lines run together
    NOT_TEXT = "not_text"  # bytes outside printable ASCII: line noise or a wrong baud rate
    NOT_DIGITS = "not_digits"
    WRONG_LENGTH = "wrong_length"
    BAD_CHECK_DIGIT = "bad_check_digit"  # a misread


class CardNumberError(RemoteProtocolError):
    """A card number that is not one; ``reason`` says why and is safe to log."""

    def __init__(self, reason: RejectReason) -> None:
        super().__init__(f"not a patient card number: {reason.value}")
        self.reason = reason


def luhn_check_digit(digits: str) -> int:
    """The Luhn digit that makes ``digits`` + it valid."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:  # these are doubled once the check digit is appended
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def luhn_valid(digits: str) -> bool:
    """Whether the last digit of ``digits`` is the Luhn check digit of the rest."""
    return len(digits) >= 2 and luhn_check_digit(digits[:-1]) == int(digits[-1])


@dataclass(frozen=True, slots=True)
class PatientCardNumber:
    """A valid card number. ``digits`` is the only way to the number itself."""

    digits: str = field(repr=False)

    def __post_init__(self) -> None:
        reason = _problem(self.digits)
        if reason is not None:
            raise CardNumberError(reason)

    def __str__(self) -> str:
        return "PatientCardNumber(<hidden>)"

    @property
    def network(self) -> str:
        return self.digits[:2]

    @property
    def facility(self) -> str:
        """The facility that issued the card (any facility of the network accepts it)."""
        return self.digits[2:4]

    @property
    def grouped(self) -> str:
        """As printed on the card: four groups of four digits (for the patient's eyes only)."""
        return " ".join(self.digits[i : i + 4] for i in range(0, CARD_DIGITS, 4))

    @classmethod
    def parse(cls, text: str) -> PatientCardNumber:
        """From what a person typed: spaces and dashes between the digits are allowed."""
        return cls(text.strip().replace(" ", "").replace("-", ""))

    def tag(self, day_key: bytes) -> str:
        """This card under the site's key of the day: :func:`card_tag`."""
        return card_tag(day_key, self)

    @classmethod
    def issue(cls, facility: int, serial: int, network: str = DEFAULT_NETWORK) -> PatientCardNumber:
        """The card number for ``serial`` at ``facility`` (with its check digit)."""
        if not (0 <= facility <= 99 and 0 <= serial < 10**11 and len(network) == 2):
            raise ValueError("facility is 0..99, serial 0..10**11-1, network two digits")
        body = f"{network}{facility:02d}{serial:011d}"
        return cls(body + str(luhn_check_digit(body)))


CARD_TAG_BYTES = 16
CARD_KEY_BYTES = 32


def card_tag(day_key: bytes, card: PatientCardNumber) -> str:
    """HMAC-SHA256 of the card number under a site's key of the day, first 16 bytes in hex.

    The cloud sends a clinic's agent today's appointments as tags, never as card numbers,
    with the day's key; the agent tags the card a patient taps and looks it up. A tag is
    useless tomorrow (the key changes every day) and at another site.
    """
    if len(day_key) != CARD_KEY_BYTES:
        raise ValueError(f"a card key is {CARD_KEY_BYTES} bytes")
    mac = hmac.new(day_key, card.digits.encode("ascii"), hashlib.sha256)
    return mac.digest()[:CARD_TAG_BYTES].hex()


def _problem(digits: str) -> RejectReason | None:
    if not digits.isascii() or not digits.isdigit():
        return RejectReason.NOT_DIGITS
    if len(digits) != CARD_DIGITS:
        return RejectReason.WRONG_LENGTH
    if not luhn_valid(digits):
        return RejectReason.BAD_CHECK_DIGIT
    return None


@dataclass(frozen=True, slots=True)
class CardRead:
    """A line that held a valid card number."""

    card: PatientCardNumber


@dataclass(frozen=True, slots=True)
class RejectedLine:
    """A line that did not; only its reason and length are kept (it may be a misread card)."""

    reason: RejectReason
    length: int


CardLine = CardRead | RejectedLine


def decode_card_line(line: bytes) -> CardLine:
    """One line (without its ending) → a card or the reason it is not one."""
    if len(line) > MAX_LINE:
        return RejectedLine(RejectReason.TOO_LONG, len(line))
    if any(not 0x20 <= b < 0x7F for b in line):
        return RejectedLine(RejectReason.NOT_TEXT, len(line))
    text = line.decode("ascii").strip()
    reason = _problem(text)
    if reason is not None:
        return RejectedLine(reason, len(line))
    return CardRead(PatientCardNumber(text))


def encode_card_line(card: PatientCardNumber) -> bytes:
    """The line a reader sends for ``card``."""
    return card.digits.encode("ascii") + b"\r\n"


@dataclass
class CardLineParser:
    """Push parser: ``feed(data)`` returns one :data:`CardLine` per line ended so far.

    Blank lines (the LF of a CR LF, a reader's keep-alive) are skipped. A line that grows
    past ``max_line`` is refused once and its rest discarded up to the next line ending,
    so the buffer never holds more than ``max_line`` bytes.
    """

    max_line: int = MAX_LINE
    lines_rejected: int = 0
    _buf: bytearray = field(default_factory=bytearray)
    _overlong: int = 0  # bytes of a too-long line seen so far (0: not in one)

    def feed(self, data: bytes) -> list[CardLine]:
        out: list[CardLine] = []
        for byte in data:
            if byte in LINE_ENDINGS:
                self._end_line(out)
            elif self._overlong:
                self._overlong += 1
            elif len(self._buf) >= self.max_line:
                self._overlong = len(self._buf) + 1
                self._buf.clear()
            else:
                self._buf.append(byte)
        return out

    def _end_line(self, out: list[CardLine]) -> None:
        if self._overlong:
            out.append(RejectedLine(RejectReason.TOO_LONG, self._overlong))
            self._overlong = 0
            self.lines_rejected += 1
            return
        if not self._buf:
            return
        line = decode_card_line(bytes(self._buf))
        self._buf.clear()
        if isinstance(line, RejectedLine):
            self.lines_rejected += 1
        out.append(line)

    @property
    def buffered(self) -> int:
        return len(self._buf)
