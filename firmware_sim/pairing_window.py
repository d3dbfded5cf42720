"""The pairing button's window, as every Denen device plays it (sans-IO): the lock and the
call-number display.

Pressing the button opens a window of :data:`~protocol.lock_auth.PAIRING_WINDOW_S`; PAIR
(keys in clear) is taken only inside it. The first PAIR of a window is taken at once. The
same keys again are answered again and change nothing: the technician's tool lost the
answer and asked twice. Any *other* PAIR in the same window is someone else: an attacker
racing the technician, or the technician after an attacker got in first. It is refused,
and the device shows a 6-digit confirm code on its display; the PAIR counts only when
sent again with that code, which only someone standing at the device can read. So nobody
pairs silently in the technician's window, and a technician who was beaten to it is told
so and takes the device back. A wrong code closes the window: one guess per press of the
button. A confirmed PAIR closes it too.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from enum import Enum

from protocol.clock import Clock
from protocol.lock_auth import CONFIRM_DIGITS, PAIRING_WINDOW_S


class Refusal(Enum):
    CLOSED = "closed"  # no window: press the pairing button first
    CONFIRM = "confirm"  # a second PAIR in this window: send it again with the code shown
    WRONG_CODE = "wrong code"  # the code was wrong: the window is closed


class PairRefused(Exception):  # noqa: N818 - the device's answer, not an error about one
    """PAIR not taken; ``message`` says what the technician does next (no key, no code)."""

    def __init__(self, refusal: Refusal, message: str) -> None:
        super().__init__(message)
        self.refusal = refusal
        self.message = message


class PairingWindow:
    """One device's pairing button: the window, the keys taken in it, the code shown."""

    def __init__(
        self,
        clock: Clock,
        device: str,
        *,
        window_s: float = PAIRING_WINDOW_S,
        make_code: Callable[[], int] = lambda: secrets.randbelow(10**CONFIRM_DIGITS),
    ) -> None:
        self.clock = clock
        self.device = device  # "lock", "display": for the messages
        self.window_s = window_s
        self._make_code = make_code
        self._until: float | None = None
        self._taken: bytes | None = None  # the link key paired in this window
        self._code: int | None = None

    def press(self) -> None:
        """Someone at the device pressed the pairing button: a new window."""
        self._until = self.clock.now() + self.window_s
        self._taken = None
        self._code = None

    def remaining(self) -> float:
        """Seconds left in the window (0 when closed)."""
        if self._until is None:
            return 0.0
        return max(self._until - self.clock.now(), 0.0)

    @property
    def waiting(self) -> bool:
        """The window is open and nothing paired in it yet: the device shows PAIRING. Once
        a PAIR is taken the device shows its usual face again; the window stays open, unseen,
        only so that a second PAIR in it is caught (:meth:`admit`)."""
        return self.remaining() > 0 and self._taken is None

    @property
    def code(self) -> int | None:
        """The confirm code the display shows now, ``None`` when there is none."""
        return self._code if self.remaining() > 0 else None

    def admit(self, link_key: bytes, confirm: int | None) -> bool:
        """Take a PAIR offering ``link_key``: True to install its keys, False when they are
        the ones this window already took (answer again, change nothing). Raises
        :class:`PairRefused` otherwise."""
        if self.remaining() <= 0:
            self._close()
            raise PairRefused(
                Refusal.CLOSED,
                f"pairing is closed: press the pairing button on the {self.device}, "
                "then pair within 60 s",
            )
        if self._taken is None:
            self._taken = link_key
            return True
        if hmac.compare_digest(self._taken, link_key):
            return False
        if self._code is None or confirm is None:
            if self._code is None:
                self._code = self._make_code()
            raise PairRefused(
                Refusal.CONFIRM,
                f"the {self.device} was already paired in this pairing window: "
                "send PAIR again with the code it shows now",
            )
        if not hmac.compare_digest(confirm.to_bytes(4, "big"), self._code.to_bytes(4, "big")):
            self._close()
            raise PairRefused(
                Refusal.WRONG_CODE,
                f"wrong confirm code: pairing is closed; press the pairing button on the "
                f"{self.device} again",
            )
        self._close()
        return True

    def _close(self) -> None:
        self._until = None
        self._taken = None
        self._code = None
