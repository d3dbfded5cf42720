"""Every domain's services, composed: one container, built once by :func:`build_services`
from a session factory, a clock, the settings and the change bus. No web framework, no
MQTT. The core's and the gym's services are its fields; the clinic's and the fleet's
containers (each domain builds its own) are ``clinic`` and ``fleet``."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from cloud.clinic.fleet_answers import ClinicDisplays, ClinicNames
from cloud.clinic.scope import ClinicScope
from cloud.clinic.services import ClinicServices, build_clinic_services
from cloud.core.api_tokens import ApiTokens
from cloud.core.bus import ChangeBus
from cloud.core.mail import MailDelivery, MailOutbox, SmtpTransport
from cloud.core.personal_data import PersonalDataLogService
from cloud.core.second_factor import SecondFactor
from cloud.core.throttle import LoginThrottle
from cloud.core.users import UserService
from cloud.core.web_sessions import WebSessions
from cloud.fleet.enrollment import EnrollmentService
from cloud.fleet.ownership import RefusedClaims
from cloud.fleet.ports import FleetPorts
from cloud.fleet.services import FleetServices, build_fleet_services
from cloud.gym.access import AccessService
from cloud.gym.approvals import ApprovalService
from cloud.gym.audit import AuditService
from cloud.gym.availability import AvailabilityService
from cloud.gym.booking_limits import BookingLimits
from cloud.gym.cancellations import CancellationService
from cloud.gym.confirmations import ConfirmationService
from cloud.gym.events import EventService
from cloud.gym.facilities import FacilityService
from cloud.gym.facility_rules import FacilityRulesService
from cloud.gym.figures import FigureService
from cloud.gym.fleet_answers import BookingGuard, FacilityLocks, FacilityNames
from cloud.gym.lock_reports import LockReportService
from cloud.gym.notifications import NotificationService
from cloud.gym.notifications_bulk import BulkMailService
from cloud.gym.payments import CounterPayment, PaymentProvider, PaymentService
from cloud.gym.pin_seal import PinSeal
from cloud.gym.reservations import ReservationService
from cloud.gym.retention import BookingRetention
from cloud.gym.scope import GymScope
from cloud.gym.sync_status import SyncStatusService
from cloud.settings import CloudSettings
from protocol.clock import Clock


class Scope(GymScope, ClinicScope):
    """Every domain's scope checks, on the one rule of :mod:`cloud.core.scope`."""


@dataclass(frozen=True, slots=True)
class Services:
    """Every service of one cloud process, built once by :func:`build_services`."""

    access: AccessService
    approvals: ApprovalService
    audit: AuditService
    availability: AvailabilityService
    cancellations: CancellationService
    confirmations: ConfirmationService
    enrollment: EnrollmentService
    events: EventService
    facilities: FacilityService
    facility_rules: FacilityRulesService
    lock_reports: LockReportService  # what locks say they hold (the gateways are the fleet's)
    mail: MailOutbox
    payments: PaymentService
    reservations: ReservationService
    scope: Scope  # who sees which sites: the rule in cloud/core/scope.py
    users: UserService
    second_factor: SecondFactor  # TOTP and recovery codes; shares the users' login throttle
    api_tokens: ApiTokens
    web_sessions: WebSessions
    sync_status: SyncStatusService
    notifications: NotificationService
    bulk_mail: BulkMailService
    figures: FigureService
    retention: BookingRetention  # bookings anonymised in time, or on the citizen's request
    personal_data_log: PersonalDataLogService
    clinic: ClinicServices
    fleet: FleetServices
    # None without an SMTP host (the demo): mails stay in the outbox
    mail_delivery: MailDelivery | None = None


def build_services(
    sessions: sessionmaker[Session],
    clock: Clock,
    settings: CloudSettings,
    bus: ChangeBus | None = None,
) -> Services:
    """Wire every domain's services to one session factory, clock and change bus (a bus
    of their own when none is given: nobody hears of a change)."""
    changes = bus or ChangeBus()
    refused = RefusedClaims()  # what gateways said of devices not theirs, counted
    # the one payment provider today; a card provider is added to this mapping later
    counter = CounterPayment()
    providers: dict[str, PaymentProvider] = {counter.method: counter}
    booking = (sessions, clock, settings, changes, providers)
    cancellations = CancellationService(*booking)
    throttle = LoginThrottle(clock)  # wrong passwords and wrong codes count together
    return Services(
        access=AccessService(sessions, clock, PinSeal(settings.secret_key)),
        approvals=ApprovalService(*booking),
        audit=AuditService(sessions),
        availability=AvailabilityService(sessions, clock, settings),
        cancellations=cancellations,
        confirmations=ConfirmationService(*booking),
        enrollment=EnrollmentService(sessions, clock, settings),
        events=EventService(sessions, clock, settings, refused),
        facilities=FacilityService(sessions, clock, changes),
        facility_rules=FacilityRulesService(sessions),
        lock_reports=LockReportService(sessions, clock, settings, refused),
        mail=MailOutbox(sessions, clock),
        payments=PaymentService(sessions, clock, providers),
        reservations=ReservationService(
            sessions, clock, settings, providers, BookingLimits(settings)
        ),
        scope=Scope(sessions),
        users=UserService(sessions, clock, throttle),
        second_factor=SecondFactor(sessions, clock, settings.secret_key, throttle),
        api_tokens=ApiTokens(sessions, clock),
        web_sessions=WebSessions(sessions, clock, settings.secret_key),
        sync_status=SyncStatusService(sessions, clock, settings),
        notifications=NotificationService(sessions, clock, settings),
        bulk_mail=BulkMailService(sessions, clock, settings),
        figures=FigureService(sessions, clock, settings),
        retention=BookingRetention(sessions, clock, settings, cancellations),
        personal_data_log=PersonalDataLogService(sessions),
        clinic=build_clinic_services(sessions, clock, settings, changes, refused=refused),
        fleet=build_fleet_services(
            sessions, clock, settings, changes, fleet_ports(settings), refused=refused
        ),
        mail_delivery=(
            MailDelivery(sessions, clock, settings, SmtpTransport(settings))
            if settings.smtp_host
            else None
        ),
    )


SITE_NAMES = (FacilityNames(), ClinicNames())
"""How the fleet learns a site's name: its facility's, else its clinic's."""


def fleet_ports(settings: CloudSettings) -> FleetPorts:
    """The gym's and the clinic's answers to what the fleet asks (:mod:`cloud.fleet.ports`):
    lock use, site names, and the gateway their locks and displays are registered under."""
    return FleetPorts(
        locks=BookingGuard(settings), names=SITE_NAMES, owners=(FacilityLocks(), ClinicDisplays())
    )


__all__ = [
    "SITE_NAMES",
    "Services",
    "build_services",
    "fleet_ports",
]
