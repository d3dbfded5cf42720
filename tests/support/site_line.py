"""A site's internet line between the agent and the broker that a test can *hold* and *cut*.

``hold()`` stops moving the agent's bytes towards the broker (they wait in the line, as on
a link that stalls), so a message the agent published gets no PUBACK; ``cut()`` then drops
the connection with whatever was held: the broker never saw those bytes. ``restore()``
lets new connections through. The cloud's own connection to the broker is not on this
line, so it stays up the whole time.
"""

from __future__ import annotations

import asyncio
import contextlib

from tests.support.mosquitto import free_port

CHUNK = 65536


class SiteLine:
    """Forwards ``127.0.0.1:port`` to the broker; ``async with SiteLine(host, port)``."""

    def __init__(self, broker_host: str, broker_port: int) -> None:
        self.target = (broker_host, broker_port)
        self.port = free_port()
        self.held_bytes = 0  # agent bytes that never reached the broker
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._up = True
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def __aenter__(self) -> SiteLine:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def hold(self) -> None:
        """Stop forwarding the agent's bytes (the broker's still reach the agent)."""
        self._flowing.clear()

    def cut(self) -> None:
        """Drop every connection, with what was held; refuse new ones until restore()."""
        self._up = False
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()
        self._flowing.set()

    def restore(self) -> None:
        self._up = True
        self._flowing.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._up:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, up_writer))
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._pipe(reader, up_writer, held=True))
                tg.create_task(self._pipe(up_reader, writer, held=False))
        except* (ConnectionError, OSError):
            pass
        finally:
            for w in (writer, up_writer):
                self._open.discard(w)
                w.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, held: bool
    ) -> None:
        try:
            while data := await reader.read(CHUNK):
                if held and not self._flowing.is_set():
                    self.held_bytes += len(data)
                    await self._flowing.wait()
                    if writer.transport.is_closing():
                        return  # cut while held: these bytes are lost with the line
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(OSError):
                writer.transport.abort()
