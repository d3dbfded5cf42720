"""One in-process bus for "this changed, publish it".

A service that commits a change another part must send on (a gateway's access snapshot, a
clinic's display state, a fleet command or desired config) publishes a typed change after
its commit; whoever sends it subscribed to that type when the app was composed (the MQTT
bridge and the fleet link, wired in :func:`cloud.app.create_app`). Built before any
subscriber, so services need not wait for the bridge; with no subscriber (a cloud without
MQTT, a test) a change reaches no one and goes out at the next start-up, which publishes
everything anew.

The change types belong to their domains: :class:`cloud.gym.access.AccessChanged`,
:class:`cloud.clinic.publish.ClinicChanged`, :class:`cloud.fleet.changes.CommandReady`
and :class:`cloud.fleet.changes.ConfigReady`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

C = TypeVar("C")


class ChangeBus:
    """Typed publish/subscribe within one process. ``publish`` may be called from any
    thread (services run in worker threads); each handler is called in that thread and
    must hand the change over to its own event loop (``call_soon_threadsafe``)."""

    def __init__(self) -> None:
        self._handlers: dict[type, list[Callable[[object], None]]] = {}

    def subscribe(self, kind: type[C], handler: Callable[[C], None]) -> None:
        """Call ``handler(change)`` for every change of type ``kind`` from now on."""
        self._handlers.setdefault(kind, []).append(handler)  # type: ignore[arg-type]  # keyed by kind

    def publish(self, change: object) -> None:
        """Tell every subscriber of ``type(change)``; a failing handler is logged and the
        others are still told (the change is committed: the next start-up sends it)."""
        for handler in self._handlers.get(type(change), ()):
            try:
                handler(change)
            except Exception:
                log.exception(
                    "a subscriber of %s failed (a bug): the change is committed and goes out "
                    "at the next change or reconnect; the traceback says which subscriber",
                    type(change).__name__,
                )
