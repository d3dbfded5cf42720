"""The simulated lock's "flash": its pairing record in a JSON file it owns (mode 0600).

Written atomically (a temp file renamed over the old one) so a killed simulator leaves
either the old record or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Protocol

from firmware_sim.errors import SimulatorError
from firmware_sim.lock.pairing import PairingRecord


class StateFileError(SimulatorError, ValueError):
    """A state file that cannot be read or does not hold a pairing record."""


def load_pairing(path: Path) -> PairingRecord | None:
    """The record in ``path``; ``None`` when there is none yet (an unpaired lock)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(f"cannot read the lock state file {path}: {exc.strerror}") from exc
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise TypeError("not an object")  # noqa: TRY301 - same message as the others
        return PairingRecord.from_json(raw)
    except (ValueError, KeyError, TypeError) as exc:
        raise StateFileError(
            f"{path} is not a lock state file ({type(exc).__name__}); "
            "delete it and pair the lock again"
        ) from None


class Flash(Protocol):
    """A device's pairing record: a lock's, or a display's."""

    def to_json(self) -> dict[str, object]: ...


def save_pairing(path: Path, record: Flash) -> None:
    """Replace ``path`` with ``record``, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(record.to_json(), out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
