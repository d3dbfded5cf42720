"""What the fleet services publish on the change bus (:mod:`cloud.core.bus`) after a
commit; the fleet link (:mod:`cloud.fleet.link`) subscribes and sends them. Without a
subscriber (no MQTT) a command waits in the table until it expires; a config goes out at
the next connect."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CommandReady:
    """A command (``req/{verb}``) is stored and may be published."""

    transaction: str


@dataclass(frozen=True, slots=True)
class ConfigReady:
    """A gateway's desired config has a new version to publish (retained)."""

    site: str
    gateway: str
