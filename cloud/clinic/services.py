"""The clinic's services of one cloud process, built once by :func:`build_clinic_services`
(``create_app`` does, next to :func:`cloud.services.build_services`)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from cloud.clinic.agent_sync import AgentSyncService
from cloud.clinic.announcements import AnnouncementService
from cloud.clinic.app_checkin import AppCheckinService
from cloud.clinic.appointments import AppointmentService
from cloud.clinic.audit import ClinicAuditService
from cloud.clinic.checkin import CheckinService
from cloud.clinic.figures import ClinicFigureService
from cloud.clinic.notify import EmailNotifier, PatientNotifier
from cloud.clinic.publish import ClinicPublisher
from cloud.clinic.retention import ClinicRetention
from cloud.clinic.sites import ClinicSiteService
from cloud.clinic.staff import StaffService
from cloud.core.bus import ChangeBus
from cloud.fleet.ownership import RefusedClaims
from cloud.settings import CloudSettings
from protocol.clock import Clock


@dataclass(frozen=True, slots=True)
class ClinicServices:
    sites: ClinicSiteService
    checkin: CheckinService
    app_checkin: AppCheckinService
    staff: StaffService
    agent_sync: AgentSyncService
    appointments: AppointmentService
    announcements: AnnouncementService
    figures: ClinicFigureService
    audit: ClinicAuditService
    publisher: ClinicPublisher
    retention: ClinicRetention  # check-ins deleted in time, or on the patient's request


def build_clinic_services(
    sessions: sessionmaker[Session],
    clock: Clock,
    settings: CloudSettings,
    bus: ChangeBus | None = None,
    patients: PatientNotifier | None = None,
    *,
    refused: RefusedClaims | None = None,
) -> ClinicServices:
    """Wire the clinic services to one session factory, clock and change bus (a bus of
    their own when none is given); patients are told by email unless another
    :class:`PatientNotifier` is given; ``refused`` counts the events of gateways that are
    not their clinic's (a counter of its own when none is given)."""
    changes = bus or ChangeBus()
    tell = patients or EmailNotifier()
    checkin = CheckinService(sessions, clock, settings, changes, tell)
    figures = ClinicFigureService(sessions)
    return ClinicServices(
        sites=ClinicSiteService(sessions, changes),
        checkin=checkin,
        app_checkin=AppCheckinService(checkin, clock, settings),
        staff=StaffService(sessions, clock, changes, tell),
        agent_sync=AgentSyncService(
            sessions,
            clock,
            settings,
            checkin.rules,
            changes,
            patients=tell,
            refused=refused or RefusedClaims(),
        ),
        appointments=AppointmentService(sessions, clock, changes),
        announcements=AnnouncementService(sessions, clock, changes),
        figures=figures,
        audit=ClinicAuditService(sessions),
        publisher=ClinicPublisher(sessions, clock, settings),
        retention=ClinicRetention(sessions, clock, settings, figures),
    )
