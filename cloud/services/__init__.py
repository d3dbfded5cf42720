"""Domain services of the cloud: no web framework, no MQTT; a session factory and a clock."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from cloud.services.access import (
    AccessChangeRelay,
    AccessNotifier,
    AccessService,
    NullNotifier,
)
from cloud.services.audit import AuditService
from cloud.services.enrollment import EnrollmentService
from cloud.services.events import EventService
from cloud.services.facilities import FacilityService
from cloud.services.gateways import GatewayService
from cloud.services.mail import MailOutbox
from cloud.services.reservations import ReservationService
from cloud.services.users import UserService
from cloud.settings import CloudSettings
from protocol.clock import Clock


@dataclass(frozen=True, slots=True)
class Services:
    """Every service of one cloud process, built once by :func:`build_services`."""

    access: AccessService
    audit: AuditService
    enrollment: EnrollmentService
    events: EventService
    facilities: FacilityService
    gateways: GatewayService
    mail: MailOutbox
    reservations: ReservationService
    users: UserService


def build_services(
    sessions: sessionmaker[Session],
    clock: Clock,
    settings: CloudSettings,
    notifier: AccessNotifier | None = None,
) -> Services:
    """Wire the services to one session factory, clock and notifier."""
    notify = notifier or NullNotifier()
    return Services(
        access=AccessService(sessions, clock),
        audit=AuditService(sessions),
        enrollment=EnrollmentService(sessions, clock, settings),
        events=EventService(sessions, clock),
        facilities=FacilityService(sessions, clock, notify),
        gateways=GatewayService(sessions, clock),
        mail=MailOutbox(sessions),
        reservations=ReservationService(sessions, clock, settings, notify),
        users=UserService(sessions, clock),
    )


__all__ = ["AccessChangeRelay", "AccessNotifier", "NullNotifier", "Services", "build_services"]
