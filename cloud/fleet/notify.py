"""How the fleet services tell the MQTT side that something is ready to go out."""

from __future__ import annotations

from typing import Protocol


class FleetNotifier(Protocol):
    """Told (from any thread) after a commit made a command or a desired config ready."""

    def command_ready(self, transaction: str) -> None: ...

    def config_ready(self, site: str, gateway: str) -> None: ...


class FleetChangeRelay:
    """Fans the notices out to listeners attached later (the MQTT link), so the services
    can be built before the link that needs them. Without a listener (no MQTT) a command
    waits in the table until it expires; a config goes out at the next connect."""

    def __init__(self) -> None:
        self._listeners: list[FleetNotifier] = []

    def attach(self, listener: FleetNotifier) -> None:
        """Tell ``listener`` about every change from now on."""
        self._listeners.append(listener)

    def command_ready(self, transaction: str) -> None:
        for listener in self._listeners:
            listener.command_ready(transaction)

    def config_ready(self, site: str, gateway: str) -> None:
        for listener in self._listeners:
            listener.config_ready(site, gateway)
