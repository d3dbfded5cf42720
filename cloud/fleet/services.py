"""The fleet's services of one cloud process, built once by :func:`build_fleet_services`
(``create_app`` does, next to the other services)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from cloud.core.bus import ChangeBus
from cloud.fleet.alerts import AlertService
from cloud.fleet.audit import FleetAuditService
from cloud.fleet.commands import CommandService
from cloud.fleet.firmware import FirmwareService
from cloud.fleet.health import HealthService
from cloud.fleet.ownership import RefusedClaims
from cloud.fleet.ports import NO_ANSWERS, FleetPorts
from cloud.fleet.rollouts import RolloutService
from cloud.fleet.sites import SiteService
from cloud.fleet.twins import TwinService
from cloud.settings import CloudSettings
from protocol.clock import Clock


@dataclass(frozen=True, slots=True)
class FleetServices:
    sites: SiteService
    health: HealthService
    alerts: AlertService
    twins: TwinService
    commands: CommandService
    firmware: FirmwareService
    rollouts: RolloutService
    audit: FleetAuditService


def build_fleet_services(
    sessions: sessionmaker[Session],
    clock: Clock,
    settings: CloudSettings,
    bus: ChangeBus | None = None,
    ports: FleetPorts = NO_ANSWERS,
    *,
    refused: RefusedClaims | None = None,
) -> FleetServices:
    """Wire the fleet services to one session factory, clock and notifier (a relay with
    no listener when none is given: commands then wait in the table); ``refused`` counts
    what gateways said of devices not theirs (a counter of its own when none is given)."""
    changes = bus or ChangeBus()
    return FleetServices(
        sites=SiteService(sessions, clock, settings, ports),
        health=HealthService(sessions, clock, settings, ports, refused),
        alerts=AlertService(sessions, clock),
        twins=TwinService(sessions, clock, changes),
        commands=CommandService(sessions, clock, settings, changes),
        firmware=FirmwareService(sessions, clock),
        rollouts=RolloutService(sessions, clock, settings, changes, ports),
        audit=FleetAuditService(sessions),
    )
