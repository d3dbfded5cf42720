"""The lock's side of pairing and frame authentication (sans-IO).

A lock from the factory has no keys: it answers GET_INFO and takes PAIR, nothing else.
Pressing the pairing button opens a 60 s window in which one PAIR is accepted, and a
second one only with the code the lock then shows (:mod:`firmware_sim.pairing_window`);
PAIR on a lock that is already paired *replaces* its keys (re-pairing needs the same physical
presence as pairing, so there is no separate factory-reset button), clears its PIN slots
(their tags were made with the old PIN key) and restarts both counters under the new link
key. Outside the window PAIR is refused and counted, like every other refused frame.

Counters: the receive counter must survive a restart or an old frame could be replayed;
the send counter must never be reused. A real lock keeps both in flash; the simulator
writes them to its ``--state-file``. An accepted frame's counter is written *before* the
lock acts on the frame, through :attr:`LockPairing.flash` (the host's file writer): a
lock that loses power as the bolt moves has the counter already, so the frame cannot be
replayed after the reboot; and if the write fails the frame is refused, not acted on
(:class:`FlashError`). The same write reserves the send counter for the answer. The rest
(a new pairing, a WAKE whose send counter enters a new block of :data:`COUNTER_BLOCK`,
storing the end of the block so a restart skips ahead) is written when
:attr:`LockPairing.persist_due` says so, before the frames go out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from firmware_sim.errors import SimulatorError
from firmware_sim.pairing_window import PairingWindow
from protocol.clock import Clock
from protocol.lock_auth import (
    AuthError,
    Direction,
    LinkAuth,
    LockSecrets,
    PairRequest,
)
from protocol.lock_wire import LockFrame

COUNTER_BLOCK = 256


class FlashError(SimulatorError):
    """The lock could not store its counters: the frame was not acted on."""


@dataclass(frozen=True, slots=True)
class PairingRecord:
    """What a paired lock must remember across a power cycle. ``repr`` hides the keys."""

    keys: LockSecrets = field(repr=False)
    send_counter: int = 0
    recv_counter: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "link_key": self.keys.link_key.hex(),
            "pin_key": self.keys.pin_key.hex(),
            "offline_secret": self.keys.offline_secret.hex(),
            "send_counter": self.send_counter,
            "recv_counter": self.recv_counter,
        }

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> PairingRecord:
        """Inverse of :meth:`to_json`; raises ``ValueError``/``KeyError``/``TypeError``."""
        keys = LockSecrets(
            bytes.fromhex(str(raw["link_key"])),
            bytes.fromhex(str(raw["pin_key"])),
            bytes.fromhex(str(raw["offline_secret"])),
        )
        send, recv = raw["send_counter"], raw["recv_counter"]
        if not isinstance(send, int) or not isinstance(recv, int):
            raise TypeError("counters must be integers")
        return cls(keys, send, recv)


class LockPairing:
    """Keys, counters, the pairing window and the count of refused frames of one lock."""

    def __init__(self, clock: Clock, record: PairingRecord | None = None) -> None:
        self.clock = clock
        self.auth_failures = 0
        self.persist_due = False
        # writes a record to flash, raising OSError when it cannot; None: no flash (a lock
        # in a test that keeps nothing across a restart)
        self.flash: Callable[[PairingRecord], None] | None = None
        self._keys = None if record is None else record.keys
        self._link = None if record is None else self._link_for(record)
        self._send_reserved = 0 if record is None else record.send_counter
        self.window = PairingWindow(clock, "lock")

    @staticmethod
    def _link_for(record: PairingRecord) -> LinkAuth:
        return LinkAuth(
            record.keys.link_key,
            Direction.TO_AGENT,
            send_counter=record.send_counter,
            recv_counter=record.recv_counter,
        )

    @property
    def paired(self) -> bool:
        return self._link is not None

    @property
    def pin_key(self) -> bytes | None:
        """The key PIN tags are checked with; ``None`` before pairing (no PIN opens)."""
        return None if self._keys is None else self._keys.pin_key

    @property
    def offline_secret(self) -> bytes | None:
        """The key offline PINs are checked with; ``None`` before pairing."""
        return None if self._keys is None else self._keys.offline_secret

    def press_button(self) -> None:
        """Someone at the door pressed the pairing button: open the window."""
        self.window.press()

    def window_remaining(self) -> float:
        """Seconds left in the pairing window (0 when closed)."""
        return self.window.remaining()

    def pair(self, request: PairRequest) -> None:
        """Install the keys of an accepted PAIR; the caller asked the window."""
        self._keys = request.keys
        self._link = LinkAuth(request.keys.link_key, Direction.TO_AGENT)
        self._send_reserved = 0
        self.persist_due = True

    def refuse(self) -> None:
        """Count a frame the lock would not act on (brute force shows in the view)."""
        self.auth_failures += 1

    def check(self, frame: LockFrame) -> None:
        """Accept an authenticated request or raise :class:`AuthError` (counted); with its
        counter in flash before the caller acts, or raise :class:`FlashError`."""
        if self._link is None:
            self.refuse()
            raise AuthError("the lock is not paired")
        try:
            self._link.check(frame)
        except AuthError:
            self.refuse()
            raise
        # the answer's send counter comes out of the block this write reserves
        reserved = self._block_for(self._link.send_counter + 1)
        if self.flash is None or self._keys is None:
            self._send_reserved = reserved
            self.persist_due = True
            return
        try:
            self.flash(PairingRecord(self._keys, reserved, self._link.recv_counter))
        except OSError as exc:
            # the counter stays taken in RAM (this frame is spent either way); flash keeps
            # the old one, so after a reboot the frame could come once more and be acted
            # on then: once, as it was not acted on now
            raise FlashError(f"could not store the lock's counters: {exc.strerror}") from exc
        self._send_reserved = reserved

    def seal(self, frame: LockFrame, *, bound: int = 0) -> LockFrame:
        """``frame`` sealed with the link key; unchanged while the lock is not paired."""
        if self._link is None:
            return frame
        reserved = self._block_for(self._link.send_counter + 1)
        if reserved != self._send_reserved:
            self._send_reserved = reserved
            self.persist_due = True
        return self._link.seal(frame, bound=bound)

    def _block_for(self, counter: int) -> int:
        """The end of the reserved block that holds ``counter`` (a new one if need be)."""
        if counter <= self._send_reserved:
            return self._send_reserved
        return counter - 1 + COUNTER_BLOCK

    def record(self) -> PairingRecord | None:
        """What to persist now (the send counter as the end of its reserved block)."""
        if self._keys is None or self._link is None:
            return None
        return PairingRecord(self._keys, self._send_reserved, self._link.recv_counter)
