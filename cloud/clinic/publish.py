"""What a clinic site's agent and displays get: ``clinic_state`` and ``display_state``.

After every change to a site (a check-in, a staff action, a batch of agent events, an
import touching today's appointments, an announcement sent, cleared or expired) the
service that committed it publishes :class:`ClinicChanged` on the change bus
(:mod:`cloud.core.bus`). In the web process the MQTT bridge listens; it builds both
documents at once with :meth:`ClinicPublisher.documents` (raising both versions by one,
persisted on the ``clinics`` row) and publishes them retained: the display state first,
as it is what the waiting room sees.

The day's card key is HMAC-SHA256(card secret, ``"{site}|{YYYY-MM-DD}"``): the agent
tags a tapped card with it to find today's appointments offline (never a card number
on the way down, never a name at all).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.clinic.day import SiteDay, lock_clinic
from cloud.clinic.models import Announcement, AppliedRequest, Appointment, Clinic, Ticket
from cloud.settings import CloudSettings
from protocol.clinic_sync import display_contents, ticket_message
from protocol.clock import Clock
from protocol.messages import (
    ClinicAppointment,
    ClinicDepartment,
    ClinicDisplay,
    ClinicResult,
    ClinicStateData,
    DisplayAnnouncement,
    DisplayStateData,
)
from protocol.patient_card import CardNumberError, PatientCardNumber, card_tag
from protocol.queue_rules import TOKYO, tokyo_day

RESULTS_WINDOW_S = 600  # answers to the agent's requests stay in the state this long
MAX_RESULTS = 500


@dataclass(frozen=True, slots=True)
class ClinicChanged:
    """Published on the change bus after a commit changed what a clinic site shows."""

    site: str
    gateway: str


def card_secret(settings: CloudSettings) -> bytes:
    """The secret behind every site's daily card key (``clinic_card_secret``, or one
    derived from ``secret_key`` when that is not set)."""
    if settings.clinic_card_secret:
        return settings.clinic_card_secret.encode()
    return hmac.new(settings.secret_key.encode(), b"denen-clinic-card-v1", hashlib.sha256).digest()


def day_card_key(secret: bytes, site: str, day: date) -> bytes:
    """The site's card-tag key of ``day``: HMAC-SHA256(secret, ``"{site}|{day}"``)."""
    return hmac.new(secret, f"{site}|{day.isoformat()}".encode(), hashlib.sha256).digest()


def day_bounds(day: date) -> tuple[int, int]:
    """Epoch seconds of the Asia/Tokyo ``day``: [start, end)."""
    start = datetime.combine(day, time(0, 0), tzinfo=TOKYO)
    return int(start.timestamp()), int((start + timedelta(days=1)).timestamp())


def active_announcement(session: Session, site: str, now: float) -> Announcement | None:
    """The announcement ``site``'s displays show at ``now``: urgent before info, then the
    newest (one line on the display)."""
    rows = session.scalars(
        select(Announcement).where(Announcement.ended_at.is_(None), Announcement.expires_at > now)
    ).all()
    shown = [a for a in rows if a.sites is None or site in a.sites]
    if not shown:
        return None
    return max(shown, key=lambda a: (a.level.value == "urgent", a.created_at, a.id))


@dataclass(frozen=True, slots=True)
class ClinicDocuments:
    """The two retained documents of one clinic gateway."""

    site: str
    gateway: str
    state: ClinicStateData
    display: DisplayStateData


class ClinicPublisher:
    """Builds a clinic site's ``clinic_state`` and ``display_state``."""

    def __init__(
        self, sessions: sessionmaker[Session], clock: Clock, settings: CloudSettings
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._secret = card_secret(settings)
        self._checkin_opens_s = settings.clinic_checkin_opens_s

    def sites(self) -> list[tuple[str, str]]:
        """Every clinic (site, gateway)."""
        with self._sessions() as session:
            rows = session.execute(select(Clinic.site, Clinic.gateway).order_by(Clinic.site))
            return [(site, gateway) for site, gateway in rows]

    def stale_sites(self, now: float) -> list[tuple[str, str]]:
        """Clinics whose last published state is of another day (or none yet)."""
        today = tokyo_day(now)
        with self._sessions() as session:
            rows = session.execute(
                select(Clinic.site, Clinic.gateway, Clinic.published_day).order_by(Clinic.site)
            )
            return [(site, gateway) for site, gateway, day in rows if day != today]

    def documents(self, site: str) -> ClinicDocuments:
        """Both documents as of now, each with its version raised by one."""
        now = self._clock.now()
        day = tokyo_day(now)
        with self._sessions.begin() as session:
            clinic = lock_clinic(session, site)
            clinic.state_version += 1
            clinic.display_version += 1
            clinic.published_day = day
            site_day = SiteDay.load(session, clinic, day)
            state = self._state(session, site_day, now)
            displays = display_contents(site_day.queues, state.displays, now)
            shown = active_announcement(session, site, now)
            if shown is not None:
                line = DisplayAnnouncement(
                    text=shown.text, level=shown.level, expires_at=shown.expires_at
                )
                displays = [d.model_copy(update={"announcement": line}) for d in displays]
            display = DisplayStateData(version=clinic.display_version, displays=displays)
            return ClinicDocuments(site, clinic.gateway, state, display)

    def _state(self, session: Session, site_day: SiteDay, now: float) -> ClinicStateData:
        clinic, day = site_day.clinic, site_day.day
        key = day_card_key(self._secret, clinic.site, day)
        departments = []
        for d in clinic.departments:
            queue = site_day.queues[d.slug]
            last, last_local = site_day.last_numbers(d.prefix)
            departments.append(
                ClinicDepartment(
                    id=d.slug,
                    name=d.name,
                    prefix=d.prefix,
                    rooms=[r.label for r in d.rooms],
                    tolerance_s=float(d.tolerance_s),
                    default_service_s=float(d.default_service_s),
                    service_times=list(queue.service_times),
                    last_number=last,
                    last_local_number=last_local,
                )
            )
        known = {d.slug for d in clinic.departments}
        tickets = [ticket_message(t) for q in site_day.queues.values() for t in q.tickets]
        start, end = day_bounds(day)
        pending = session.scalars(
            select(Appointment)
            .where(
                Appointment.site == clinic.site,
                Appointment.at >= start,
                Appointment.at < end,
                Appointment.cancelled.is_(False),
                ~select(Ticket.id).where(Ticket.appointment_id == Appointment.id).exists(),
            )
            .order_by(Appointment.at, Appointment.id)
        ).all()
        appointments = []
        for a in pending:
            if a.department not in known:
                continue
            try:
                card = PatientCardNumber(a.card_number)
            except CardNumberError:  # checked at import; a bad row must not stop the state
                continue
            appointments.append(
                ClinicAppointment(card_tag=card_tag(key, card), department=a.department, at=a.at)
            )
        displays = [
            ClinicDisplay(
                display_id=str(d["display_id"]),
                departments=[s for s in d.get("departments", []) if s in known],
            )
            for d in clinic.displays
        ]
        answered = session.scalars(
            select(AppliedRequest)
            .where(
                AppliedRequest.site == clinic.site,
                AppliedRequest.gateway == clinic.gateway,
                AppliedRequest.applied_at >= now - RESULTS_WINDOW_S,
            )
            .order_by(AppliedRequest.applied_at.desc(), AppliedRequest.request_id.desc())
            .limit(MAX_RESULTS)
        ).all()
        results = [
            ClinicResult(
                request_id=r.request_id,
                ok=r.ok,
                number=r.number,
                department=r.department,
                estimated_wait_s=r.estimated_wait_s,
                error=None if r.error is None else r.error[:300],
            )
            for r in reversed(answered)
        ]
        return ClinicStateData(
            version=clinic.state_version,
            day=day.isoformat(),
            card_key=key.hex(),
            walk_in_department=clinic.walk_in_department,
            checkin_opens_before_s=self._checkin_opens_s,
            departments=departments,
            tickets=tickets,
            appointments=appointments,
            displays=displays,
            results=results,
            applied_through=clinic.applied_through,
        )
