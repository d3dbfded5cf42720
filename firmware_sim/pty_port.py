"""A pseudo-terminal a simulated serial device sits on: the byte-moving half of a host.

The device's host hands it a callback for what the agent writes and calls :meth:`write`
with what the device sends; this module only opens the pty (raw on both ends), keeps an
optional stable symlink to it, and buffers output for an agent that is not reading.
The lock, the display and the card reader hosts use it.
"""

from __future__ import annotations

import asyncio
import errno
import os
import tty
from collections.abc import Callable
from pathlib import Path

from firmware_sim.errors import LinkPathError, SimulatorError

# Bytes kept for an agent that is not reading; past this, output is dropped, as a UART
# with nobody listening would lose it.
MAX_BACKLOG = 64 * 1024

__all__ = ["MAX_BACKLOG", "LinkPathError", "PtyPort"]


class PtyPort:
    """One pty: ``open()`` inside a running loop, ``close()`` when done."""

    def __init__(
        self,
        name: str,
        on_data: Callable[[bytes], None],
        *,
        link: Path | None = None,
        max_backlog: int = MAX_BACKLOG,
    ) -> None:
        self.name = name
        self.on_data = on_data
        self.link = link
        self.max_backlog = max_backlog
        self.bytes_lost = 0  # output dropped because nobody read it
        self._master: int | None = None
        self._slave: int | None = None
        self._path: str | None = None
        self._backlog = bytearray()

    @property
    def path(self) -> str:
        """The slave device the agent opens, e.g. ``/dev/pts/7``."""
        if self._path is None:
            raise SimulatorError(f"{self.name} is not hosted yet: call start()")
        return self._path

    def open(self) -> None:
        """Open the pty, link it and start reading (call from inside the event loop)."""
        master, slave = os.openpty()
        # raw on both ends: no echo, no CR/LF translation, no line buffering
        tty.setraw(master)
        tty.setraw(slave)
        os.set_blocking(master, False)
        # the slave fd stays open while we run, so the master never sees EIO (hang-up)
        # when the agent closes and reopens the port
        path = os.ttyname(slave)
        if self.link is not None:
            try:
                _make_link(self.link, path)
            except OSError:
                os.close(master)
                os.close(slave)
                raise
        self._master, self._slave, self._path = master, slave, path
        asyncio.get_running_loop().add_reader(master, self._on_readable)

    def close(self) -> None:
        """Stop reading, close the pty and remove the link (if it is still ours)."""
        if self._master is not None:
            loop = asyncio.get_running_loop()
            loop.remove_reader(self._master)
            loop.remove_writer(self._master)
            os.close(self._master)
            self._master = None
        if self._slave is not None:
            os.close(self._slave)
            self._slave = None
        if self._owns_link():
            assert self.link is not None
            self.link.unlink()

    def write(self, data: bytes) -> None:
        """Send ``data`` to the agent (all of it, or none when the backlog is full)."""
        if len(self._backlog) + len(data) > self.max_backlog:
            self.bytes_lost += len(data)
            return
        self._backlog += data
        self._write_backlog()

    def _on_readable(self) -> None:
        assert self._master is not None
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno == errno.EIO:  # no slave open; cannot happen while we hold one
                return
            raise
        self.on_data(data)

    def _write_backlog(self) -> None:
        if self._master is None or not self._backlog:
            return
        loop = asyncio.get_running_loop()
        try:
            written = os.write(self._master, self._backlog)
        except BlockingIOError:
            written = 0
        del self._backlog[:written]
        if self._backlog:
            loop.add_writer(self._master, self._write_backlog)
        else:
            loop.remove_writer(self._master)

    def _owns_link(self) -> bool:
        # another run may have re-pointed the link since; leave theirs alone
        return (
            self.link is not None
            and self.link.is_symlink()
            and os.readlink(self.link) == self._path
        )


def _make_link(link: Path, target: str) -> None:
    if link.is_symlink():
        link.unlink()  # left by an earlier run that did not stop cleanly
    elif link.exists():
        raise LinkPathError(f"{link} exists and is not a symlink; choose another --link")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
