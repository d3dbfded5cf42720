"""The fleet's part of one cloud process: its services, its MQTT link (run by the
bridge) and its periodic pass, wired by :func:`build_fleet` for ``create_app``."""

from __future__ import annotations

from dataclasses import dataclass

from cloud.core.bus import ChangeBus
from cloud.fleet.changes import CommandReady, ConfigReady
from cloud.fleet.jobs import FleetJobs
from cloud.fleet.link import FleetLink
from cloud.fleet.services import FleetServices
from cloud.settings import CloudSettings
from protocol.clock import Clock


@dataclass(frozen=True, slots=True)
class Fleet:
    services: FleetServices
    link: FleetLink
    jobs: FleetJobs


def build_fleet(
    services: FleetServices, clock: Clock, settings: CloudSettings, bus: ChangeBus
) -> Fleet:
    """The link that publishes what the services made ready (told on ``bus``), and a
    pass that judges silence only while the link listens."""
    link = FleetLink(services, clock)
    bus.subscribe(CommandReady, link.command_ready)
    bus.subscribe(ConfigReady, link.config_ready)
    return Fleet(services, link, FleetJobs(settings, clock, services, link.listening_since))
