"""What a paired display keeps in flash: its link key and both counters, and the
simulator's file for them (``denen-sim display --state-file``, mode 0600).

The receive counter must survive a restart or a frame captured on the line could be
played again; the send counter must never be reused. The simulator writes the record
whenever the firmware says so (:attr:`~firmware_sim.display.firmware.DisplayFirmware.
persist_due`: after every frame it accepts or seals; a display sees a few a minute).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from firmware_sim.lock.state_file import StateFileError
from protocol.display_auth import KEY_LEN


@dataclass(frozen=True, slots=True)
class DisplayPairingRecord:
    """A paired display's flash. ``repr`` hides the key."""

    link_key: bytes = field(repr=False)
    send_counter: int = 0
    recv_counter: int = 0

    def __post_init__(self) -> None:
        if len(self.link_key) != KEY_LEN:
            raise ValueError(f"a display link key is {KEY_LEN} bytes")

    def to_json(self) -> dict[str, object]:
        return {
            "link_key": self.link_key.hex(),
            "send_counter": self.send_counter,
            "recv_counter": self.recv_counter,
        }

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> DisplayPairingRecord:
        """Inverse of :meth:`to_json`; raises ``ValueError``/``KeyError``/``TypeError``."""
        send, recv = raw["send_counter"], raw["recv_counter"]
        if not isinstance(send, int) or not isinstance(recv, int):
            raise TypeError("counters must be integers")
        return cls(bytes.fromhex(str(raw["link_key"])), send, recv)


def load_display_pairing(path: Path) -> DisplayPairingRecord | None:
    """The record in ``path``; ``None`` when there is none yet (a display fresh from the box)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(f"cannot read the display state file {path}: {exc.strerror}") from exc
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise TypeError("not an object")  # noqa: TRY301 - same message as the others
        return DisplayPairingRecord.from_json(raw)
    except (ValueError, KeyError, TypeError) as exc:
        raise StateFileError(
            f"{path} is not a display state file ({type(exc).__name__}); "
            "delete it and pair the display again"
        ) from None
