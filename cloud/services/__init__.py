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
from cloud.services.approvals import ApprovalService
from cloud.services.audit import AuditService
from cloud.services.availability import AvailabilityService
from cloud.services.cancellations import CancellationService
from cloud.services.enrollment import EnrollmentService
from cloud.services.events import EventService
from cloud.services.facilities import FacilityService
from cloud.services.facility_rules import FacilityRulesService
from cloud.services.figures import FigureService
from cloud.services.gateways import GatewayService
from cloud.services.mail import MailDelivery, MailOutbox, SmtpTransport
from cloud.services.notifications import NotificationService
from cloud.services.notifications_bulk import BulkMailService
from cloud.services.payments import CounterPayment, PaymentProvider, PaymentService
from cloud.services.reservations import ReservationService
from cloud.services.scope import SiteScopeService
from cloud.services.sync_status import SyncStatusService
from cloud.services.users import UserService
from cloud.settings import CloudSettings
from protocol.clock import Clock


@dataclass(frozen=True, slots=True)
class Services:
    """Every service of one cloud process, built once by :func:`build_services`."""

    access: AccessService
    approvals: ApprovalService
    audit: AuditService
    availability: AvailabilityService
    cancellations: CancellationService
    enrollment: EnrollmentService
    events: EventService
    facilities: FacilityService
    facility_rules: FacilityRulesService
    gateways: GatewayService
    mail: MailOutbox
    payments: PaymentService
    reservations: ReservationService
    scope: SiteScopeService  # who sees which sites: cloud/services/scope.py
    users: UserService
    sync_status: SyncStatusService
    notifications: NotificationService
    bulk_mail: BulkMailService
    figures: FigureService
    # None without an SMTP host (the demo): mails stay in the outbox
    mail_delivery: MailDelivery | None = None


def build_services(
    sessions: sessionmaker[Session],
    clock: Clock,
    settings: CloudSettings,
    notifier: AccessNotifier | None = None,
) -> Services:
    """Wire the services to one session factory, clock and notifier."""
    notify = notifier or NullNotifier()
    # the one payment provider today; a card provider is added to this mapping later
    counter = CounterPayment()
    providers: dict[str, PaymentProvider] = {counter.method: counter}
    booking = (sessions, clock, settings, notify, providers)
    return Services(
        access=AccessService(sessions, clock),
        approvals=ApprovalService(*booking),
        audit=AuditService(sessions),
        availability=AvailabilityService(sessions, clock, settings),
        cancellations=CancellationService(*booking),
        enrollment=EnrollmentService(sessions, clock, settings),
        events=EventService(sessions, clock),
        facilities=FacilityService(sessions, clock, notify),
        facility_rules=FacilityRulesService(sessions),
        gateways=GatewayService(sessions, clock),
        mail=MailOutbox(sessions, clock),
        payments=PaymentService(sessions, clock, providers),
        reservations=ReservationService(*booking),
        scope=SiteScopeService(sessions),
        users=UserService(sessions, clock),
        sync_status=SyncStatusService(sessions, clock, settings),
        notifications=NotificationService(sessions, clock, settings),
        bulk_mail=BulkMailService(sessions, clock, settings),
        figures=FigureService(sessions, clock, settings),
        mail_delivery=(
            MailDelivery(sessions, clock, settings, SmtpTransport(settings))
            if settings.smtp_host
            else None
        ),
    )


__all__ = ["AccessChangeRelay", "AccessNotifier", "NullNotifier", "Services", "build_services"]
