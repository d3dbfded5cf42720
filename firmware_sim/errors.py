"""The error root of the firmware simulators."""

from __future__ import annotations

from protocol.errors import DenenError


class SimulatorError(DenenError):
    """Root of every error raised by the firmware simulators."""


class UnknownKeyError(SimulatorError, ValueError):
    """A key that is not on the keypad (only 0-9, ``*`` and ``#`` are)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"the keypad has no key {key!r}; it has 0-9, * and #")
        self.key = key


class LinkPathError(SimulatorError, FileExistsError):
    """The stable link path is taken by something that is not a symlink."""
