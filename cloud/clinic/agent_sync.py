"""The agent's clinic events (``checkin``, ``clinic_action`` on ``events``), applied once
each by envelope id, in arrival order, one transaction per site and batch.

- ``checkin`` without ``local``: the kiosk's check-in, done now by the cloud
  (:mod:`cloud.clinic.checkin`); the answer goes back in ``clinic_state.results``.
- ``checkin`` with ``local``: a ticket the agent issued itself while the internet was
  down (700-999). It is recorded as issued: its number, department and times from the
  event, the patient found by card when given (an unknown card still keeps the ticket).
- ``clinic_action`` without ``local``: a staff action from the agent's staff page, done
  now; ok or the rules' error.
- ``clinic_action`` with ``local``: what the agent did offline, replayed at its time (a
  ``call_next`` it made arrives as ``call`` with the number it called). If the cloud's
  queue refuses it (the state moved on meanwhile) the answer is ok=false with the reason,
  the action log says so, and the batch carries on: tickets are never dropped.

Events speak for their topic's gateway, and only the clinic's own gateway
(``Clinic.gateway``) speaks for its queue: another gateway's events (a second Pi enrolled
at the same site, misconfigured or not ours) are dropped unapplied and unanswered,
counted, logged and raised as a ``foreign_device`` fleet alert against the sender
(:mod:`cloud.fleet.ownership`).

Every request gets a row in ``clinic_requests`` (its id is the primary key: a redelivery
is a no-op) and the clinic's ``applied_through`` moves to the newest id. Each event runs in
a savepoint, so a refused one leaves nothing half-written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from cloud.clinic.audit import log_action
from cloud.clinic.checkin import (
    CheckinRules,
    check_in_on,
    find_patient,
    open_appointments,
    parse_card,
)
from cloud.clinic.day import SiteDay, lock_clinic
from cloud.clinic.models import AppliedRequest, Clinic, TicketSource
from cloud.clinic.notify import PatientNotifier, notify_patients
from cloud.clinic.publish import ClinicChanged
from cloud.clinic.staff import StaffRequest, act_on
from cloud.core.bus import ChangeBus
from cloud.errors import ConflictError, NotFoundError
from cloud.fleet.ownership import RefusedClaims, refuse
from cloud.settings import CloudSettings
from protocol.clinic_sync import number_value
from protocol.clock import Clock
from protocol.errors import DenenError
from protocol.messages import CheckinData, ClinicAction, ClinicActionData, LocalTicket
from protocol.queue_rules import AGENT_NUMBERS, QueueTicket, tokyo_day
from protocol.tracing import traced

log = logging.getLogger(__name__)

ClinicEvent = CheckinData | ClinicActionData

CLINIC_EVENTS_WHAT = "clinic events"  # in the refused counts and the foreign_device alert


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer to one request (``clinic_state.results``)."""

    ok: bool
    number: str | None = None
    department: str | None = None
    estimated_wait_s: float | None = None
    error: str | None = None


class AgentSyncService:
    """Apply a gateway's clinic events."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        settings: CloudSettings,
        rules: CheckinRules,
        bus: ChangeBus,
        *,
        patients: PatientNotifier,
        refused: RefusedClaims,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._settings = settings
        self._rules = rules
        self._bus = bus
        self._patients = patients
        self.refused = refused  # events of a gateway that is not its clinic's

    def apply(self, site: str, gateway: str, events: Sequence[tuple[str, ClinicEvent]]) -> int:
        """Apply ``(envelope id, data)`` in order; return how many were new."""
        if not events:
            return 0
        now = self._clock.now()
        with self._sessions.begin() as session:
            ids = [request_id for request_id, _ in events]
            seen = set(
                session.scalars(
                    select(AppliedRequest.request_id).where(AppliedRequest.request_id.in_(ids))
                )
            )
            try:
                clinic: Clinic | None = lock_clinic(session, site)
            except NotFoundError:
                clinic = None
            if clinic is not None and clinic.gateway != gateway:
                # the clinic's queue is its gateway's: the events name the clinic itself
                refuse(
                    session,
                    self._settings,
                    int(now),
                    [(site, gateway, f"clinic {site} (its gateway is {clinic.gateway})")],
                    what=CLINIC_EVENTS_WHAT,
                    counter=self.refused,
                    dropped=len(events),
                )
                return 0
            batch = _Batch(session, clinic)
            applied = 0
            for request_id, data in events:
                if request_id in seen:
                    continue
                seen.add(request_id)
                with traced(request_id):  # its log lines carry the agent's request id
                    answer = self._apply_one(batch, gateway, data, now)
                session.add(
                    AppliedRequest(
                        request_id=request_id,
                        site=site,
                        gateway=gateway,
                        kind="checkin" if isinstance(data, CheckinData) else "clinic_action",
                        ok=answer.ok,
                        number=answer.number,
                        department=answer.department,
                        estimated_wait_s=answer.estimated_wait_s,
                        error=answer.error,
                        applied_at=int(now),
                    )
                )
                applied += 1
            if clinic is None or not applied:
                return applied
            newest = max(ids)
            if clinic.applied_through is None or newest > clinic.applied_through:
                clinic.applied_through = newest
            today = batch.day(tokyo_day(now))
            notify_patients(today, self._patients, now)
            gateway_of_site = clinic.gateway
        self._bus.publish(ClinicChanged(site, gateway_of_site))
        return applied

    def _apply_one(self, batch: _Batch, gateway: str, data: ClinicEvent, now: float) -> Answer:
        if batch.clinic is None:
            return Answer(ok=False, error="this site has no clinic in the cloud")
        local = data.local is not None if isinstance(data, CheckinData) else data.local
        day_of = tokyo_day(data.at if local else now)
        try:
            with batch.session.begin_nested():
                day = batch.day(day_of)
                if isinstance(data, CheckinData):
                    return self._checkin(day, data, now)
                return self._action(day, gateway, data, now)
        except DenenError as exc:
            reason = str(exc)
        except IntegrityError:
            reason = "conflicts with what the cloud stored"
        except SQLAlchemyError:
            raise  # the database is away: the bridge retries the batch, nothing is acked
        except Exception:  # a bug must not block the site's other events, nor vanish
            log.exception("agent %s at %s: applying an event failed", gateway, batch.clinic.site)
            reason = "the cloud could not apply this request (internal error)"
        batch.forget(day_of)  # its rows were rolled back with the savepoint
        if isinstance(data, ClinicActionData):
            log_action(
                batch.session,
                batch.clinic.site,
                data.at if data.local else now,
                _actor(gateway, data.local),
                data.action.value,
                number=data.number,
                department=data.department,
                room=data.room or data.to_room,
                ok=False,
                detail=reason,
            )
        log.warning(
            "agent %s at %s: %s refused: %s",
            gateway,
            batch.clinic.site,
            type(data).__name__,
            reason,
        )
        return Answer(ok=False, number=_number_of(data), error=reason[:300])

    def _checkin(self, day: SiteDay, data: CheckinData, now: float) -> Answer:
        if data.local is not None:
            return _record_local(day, data, data.local, now)
        card = None if data.card is None else parse_card(data.card)
        result = check_in_on(
            day,
            now,
            self._rules,
            card=card,
            department=data.department,
            urgent=data.urgent,
            source=TicketSource.KIOSK if card is not None else TicketSource.DESK,
        )
        return Answer(True, result.number, result.department, result.estimated_wait_s)

    def _action(self, day: SiteDay, gateway: str, data: ClinicActionData, now: float) -> Answer:
        at = float(data.at) if data.local else now
        action = data.action
        if action is ClinicAction.CALL_NEXT and data.room is not None:
            of_room = day.department_of_room(data.room).slug
            if of_room != data.department:
                raise ConflictError(f"room {data.room} is in {of_room}, not {data.department}")
        request = StaffRequest(action, data.number, data.room, data.to_department, data.to_room)
        ticket = act_on(day, at, request, live=not data.local)
        log_action(
            day.session,
            day.clinic.site,
            at,
            _actor(gateway, data.local),
            action.value,
            number=ticket.number,
            department=ticket.department,
            room=data.room or data.to_room or ticket.room,
        )
        return Answer(True, ticket.number, ticket.department)


def _record_local(day: SiteDay, data: CheckinData, issued: LocalTicket, now: float) -> Answer:
    """Keep a ticket the agent issued offline exactly as the patient got it."""
    department = day.department(issued.department)
    held = day.rows.get(issued.number)
    if held is not None:
        if held.source is TicketSource.AGENT and abs(held.queued_at - data.at) < 1:
            return Answer(True, held.number, held.department)  # the same ticket, sent again
        raise ConflictError(f"number {issued.number} is already taken at {day.clinic.site}")
    if not issued.number.startswith(f"{department.prefix}-") or not (
        AGENT_NUMBERS.first <= number_value(issued.number) <= AGENT_NUMBERS.last
    ):
        log.warning("agent ticket %s is outside the agent's numbers; kept", issued.number)
    patient_id, appointment_id = None, None
    if data.card is not None:
        try:
            card = parse_card(data.card)
        except DenenError:
            card = None
        patient = None if card is None else find_patient(day.session, card)
        if patient is not None and card is not None:
            patient_id = patient.id
            if issued.appointment_at is not None:
                for appointment in open_appointments(day.session, day.clinic.site, card, day.day):
                    if (
                        appointment.department == department.slug
                        and appointment.at == issued.appointment_at
                    ):
                        appointment_id = appointment.id
                        break
    ticket = QueueTicket(
        number=issued.number,
        department=department.slug,
        queued_at=float(data.at),
        urgent=issued.urgent,
        appointment_at=None if issued.appointment_at is None else float(issued.appointment_at),
    )
    outcome = day.queues[department.slug].admit(ticket, float(data.at))
    day.add(
        outcome,
        source=TicketSource.AGENT,
        now=now,
        patient_id=patient_id,
        appointment_id=appointment_id,
    )
    log.info("agent ticket %s recorded at %s", issued.number, day.clinic.site)
    waiting = day.estimated_wait(issued.number, now)
    return Answer(True, issued.number, department.slug, round(waiting, 1))


def _actor(gateway: str, local: bool) -> str:
    return f"agent:{gateway}" + (" (offline)" if local else "")


def _number_of(data: ClinicEvent) -> str | None:
    if isinstance(data, CheckinData):
        return None if data.local is None else data.local.number
    return data.number


class _Batch:
    """The site's days touched by one batch (each loaded once, under the site's lock)."""

    def __init__(self, session: Session, clinic: Clinic | None) -> None:
        self.session = session
        self.clinic = clinic
        self._days: dict[date, SiteDay] = {}
        self._carried: dict[date, list[tuple[str, str]]] = {}

    def day(self, day: date) -> SiteDay:
        loaded = self._days.get(day)
        if loaded is None:
            assert self.clinic is not None
            loaded = SiteDay.load(self.session, self.clinic, day)
            loaded.live_calls.extend(self._carried.pop(day, []))
            self._days[day] = loaded
        return loaded

    def forget(self, day: date) -> None:
        """Drop ``day`` after a rolled-back event (it is loaded again when needed); the
        first calls made live earlier in the batch are carried over, so their patients
        are still told."""
        dropped = self._days.pop(day, None)
        if dropped is not None:
            self._carried[day] = list(dropped.live_calls)
