"""One periodic pass of the web process: a named background task that runs blocking work
in a worker thread every ``every_s`` seconds, first after one interval (the app comes up
first). A failing pass (the database away, a bug) is logged with its traceback and the
next one retries; it never ends the loop. Used by the notification, clinic and fleet jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class PeriodicPass:
    """``start()`` / ``stop()`` a loop calling ``job()`` every ``every_s`` seconds."""

    def __init__(self, name: str, job: Callable[[], object], every_s: float) -> None:
        self.name = name
        self._job = job
        self._every_s = every_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the loop (returns at once)."""
        self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        """Cancel the loop and wait for it (a pass already in its thread finishes)."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._every_s)
            try:
                result = await asyncio.to_thread(self._job)
                log.debug("%s: %s", self.name, result)
            except Exception:  # a bad pass (DB away) must not end the loop; the next retries
                log.exception("%s pass failed; retrying in %.0f s", self.name, self._every_s)
