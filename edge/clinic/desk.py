"""The clinic desk: the one place that decides who runs the site's queues right now.

**The cloud runs them** while the MQTT link is up and no local event waits to be
reconciled. A kiosk check-in or a staff action then becomes a ``checkin`` or
``clinic_action`` event in the outbox (its envelope id is the request id) and the desk
waits for the answer in the retained ``clinic_state``'s ``results``. After
``reply_timeout_s`` the kiosk says "your number appears here shortly" and updates itself
when the answer arrives.

**The agent runs them** from the moment the link is down. It builds the queues from the
last ``clinic_state`` with :func:`protocol.clinic_sync.agent_queues` and applies the same
rules the cloud does (:mod:`protocol.queue_rules`): kiosk check-ins get numbers from 700,
staff actions from the local page apply at once, and every change goes into the outbox as
a ``checkin`` with ``local`` or a ``clinic_action`` with ``local=True`` (a ``call_next``
is recorded as ``call`` with the number it called). The displays then show the local
queues (:func:`protocol.clinic_sync.display_contents`, keeping the cloud's announcement,
brightness and standby schedule), under display state versions from
:data:`LOCAL_DISPLAY_VERSIONS` so a display coordinator always sees a new version when
the source changes.

**Handing back.** When the link is back the outbox drains by itself; the agent keeps
running the queues until a ``clinic_state`` arrives whose ``applied_through`` is at or
after its last local event (event ids are UUIDv7, made strictly increasing here, so they
compare in time order). Then it drops its queues and the displays follow the cloud's
display state again.

**Never both.** A request the link lost before the broker acknowledged it is withdrawn
from the outbox (:meth:`edge.outbox.Outbox.withdraw`, atomic with the publisher's
delete) and done locally; one the broker has is left to the cloud, and its answer updates
the kiosk when the link returns. (If the connection dies after the broker took a message
but before its acknowledgement reached us, the broker may still deliver it: no client
can tell those apart; the cloud then sees a request and a local check-in.)

**Privacy.** A card number is kept at rest only inside its outbox row, until the broker
acknowledged it. The desk remembers a card as its tag under the day's key (to give the
same ticket to the same card twice), and deletes the day's tags, tickets and kiosk
screens when the Asia/Tokyo day ends. Logs carry ticket numbers, never card numbers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from edge.clinic.day_store import DayStore, OpenRequest
from edge.clinic.local_queues import (
    apply_action,
    appointments_of,
    next_day,
    open_appointment,
    with_queues,
)
from edge.config import SiteConfig
from edge.errors import EdgeError, OutboxError, StoreError
from edge.outbox import Outbox
from edge.store import Store
from protocol import messages, topics
from protocol.clinic_sync import agent_queues, display_contents
from protocol.clock import Clock
from protocol.errors import MessageError
from protocol.ids import uuid7
from protocol.messages import (
    CheckinData,
    ClinicAction,
    ClinicActionData,
    ClinicAppointment,
    ClinicDepartment,
    ClinicResult,
    ClinicStateData,
    DisplayStateData,
    LocalTicket,
    MessageType,
)
from protocol.patient_card import CardNumberError, PatientCardNumber, card_tag
from protocol.queue_rules import (
    AGENT_NUMBERS,
    TOKYO,
    DepartmentQueue,
    QueueError,
    QueueTicket,
    TicketState,
    tokyo_day,
)

log = logging.getLogger(__name__)

# local display state versions: far above the cloud's, so the two never meet
LOCAL_DISPLAY_VERSIONS = 2**31

MISREAD = "The card could not be read. Please tap it again."
NO_DAY = "Check-in is not available right now. Please go to the reception desk."
NO_APPOINTMENT = "No appointment today for this card. Please go to the reception desk."
SHORTLY = "Checked in. Your number appears here shortly."
SENT = "Sent to the cloud; it has not answered yet. The queue shows the result when it does."
READY = "Please tap your patient card."
ALREADY = "You are already checked in."
CHECKING = "Checking you in…"


class Running(StrEnum):
    """Who runs the site's queues right now."""

    CLOUD = "cloud"
    AGENT = "agent"


class ScreenKind(StrEnum):
    READY = "ready"
    CHECKING = "checking"
    TICKET = "ticket"
    PENDING = "pending"  # sent to the cloud, no answer yet
    ERROR = "error"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KioskScreen(_Frozen):
    """What a kiosk shows: the last check-in (a number, never a card number) or an error."""

    kiosk: str
    kind: ScreenKind
    message: str
    number: str | None = None
    department: str | None = None  # the department's name
    estimated_wait_s: float | None = None
    at: float = 0.0
    request_id: str | None = None  # the online request it waits for (PENDING, CHECKING)


class ActionResult(_Frozen):
    """The outcome of a check-in or a staff action, for the kiosk and the staff page."""

    ok: bool
    by: Running  # who decided it
    pending: bool = False  # sent to the cloud, no answer yet
    number: str | None = None
    department: str | None = None
    estimated_wait_s: float | None = None
    message: str = ""


class StaffRequest(_Frozen):
    """What the staff page asks for (the fields of :class:`ClinicActionData`)."""

    action: ClinicAction
    department: str
    number: str | None = None
    room: str | None = None
    to_department: str | None = None
    to_room: str | None = None


@dataclass(frozen=True)
class QueueView:
    """A department's queue for the staff page: waiting tickets in call order."""

    department: ClinicDepartment
    running: Running
    waiting: list[QueueTicket]
    in_rooms: list[QueueTicket]
    skipped: list[QueueTicket]
    closed: int
    waits: dict[str, float] = field(default_factory=dict)  # estimated wait per number


@dataclass(frozen=True)
class DeskStatus:
    running: Running
    connected: bool
    day: str | None
    has_day: bool  # a clinic state (or its midnight skeleton) to run the queues from
    events_waiting: int  # outbox rows the broker has not acknowledged
    last_local_event: str | None


class DisplayListener(Protocol):
    def state_stored(self) -> None: ...


class ClinicDesk:
    """See the module docstring. ``open()`` / ``close()`` around use, ``run()`` in the
    agent's task group (end-of-day purge), and the rest is called by the MQTT link, the
    kiosk readers and the local pages."""

    def __init__(
        self,
        config: SiteConfig,
        *,
        store: DayStore,
        outbox: Outbox,
        display_store: Store,
        clock: Clock,
        displays: Sequence[DisplayListener] = (),
    ) -> None:
        if config.clinic is None:
            raise EdgeError("the clinic desk needs a [clinic] section in the site config")
        self.config = config
        self.clinic = config.clinic
        self.store = store
        self.outbox = outbox
        self.display_store = display_store
        self.clock = clock
        self.displays = displays
        self.kiosks = {reader.id: reader for reader in config.card_readers}
        self.connected = False
        self._events_topic = topics.events(config.site, config.gateway)
        self._state: ClinicStateData | None = None
        self._synthetic = False
        self._local: ClinicStateData | None = None
        self._queues: dict[str, DepartmentQueue] | None = None
        self._last_local_event: str | None = None
        self._last_event: str | None = None
        self._local_display: DisplayStateData | None = None
        self._day: str | None = None  # the Tokyo day the stored day's data belongs to
        self._waiters: dict[str, asyncio.Future[ActionResult]] = {}

    # ------------------------------------------------------------ life

    def open(self) -> None:
        """Open the day store, take up where the agent stopped, purge a finished day."""
        self.store.open()
        stored = self.store.clinic_state()
        if stored is not None:
            self._state, self._synthetic = stored
        record = self.store.desk()
        self._local = record.local
        self._last_local_event = record.last_local_event
        self._last_event = record.last_event
        self._day = record.day
        if self._day is None:
            self._day = self._today()
            self.store.set_day(self._day)
        self.housekeeping()
        if self._local is not None:
            log.warning(
                "this agent was running the clinic queues when it stopped; it carries on "
                "until the cloud has applied its events"
            )
            self._refresh_display()

    def close(self) -> None:
        self.store.close()

    async def run(self) -> None:
        """End-of-day purge and journal replay, every ``housekeeping_s``; never returns."""
        while True:
            await asyncio.sleep(self.clinic.housekeeping_s)
            try:
                self.housekeeping()
            except (StoreError, OutboxError) as exc:
                log.error("clinic housekeeping: %s", exc)  # noqa: TRY400 - expected failure, no traceback

    # ------------------------------------------------------------ reading

    @property
    def running(self) -> Running:
        return Running.AGENT if self._local is not None or not self.connected else Running.CLOUD

    def status(self) -> DeskStatus:
        base = self._base()
        return DeskStatus(
            running=self.running,
            connected=self.connected,
            day=None if base is None else base.day,
            has_day=base is not None,
            events_waiting=self.outbox.depth(),
            last_local_event=self._last_local_event,
        )

    def departments(self) -> list[ClinicDepartment]:
        base = self._base()
        return [] if base is None else list(base.departments)

    def queue_view(self, department_id: str) -> QueueView | None:
        """The department's queue as whoever runs it holds it; ``None``: no such department."""
        base = self._base()
        if base is None:
            return None
        department = base.department(department_id)
        queue = self._read_queues().get(department_id)
        if department is None or queue is None:
            return None
        now = self.clock.now()
        waiting = queue.waiting_order(now)
        return QueueView(
            department=department,
            running=self.running,
            waiting=waiting,
            in_rooms=sorted(
                (t for t in queue.tickets if t.state in _IN_A_ROOM), key=lambda t: t.room or ""
            ),
            skipped=[t for t in queue.tickets if t.state is TicketState.SKIPPED],
            closed=sum(1 for t in queue.tickets if t.state.terminal),
            waits={t.number: queue.estimated_wait(t.number, now) for t in waiting},
        )

    def kiosk_screen(self, kiosk_id: str) -> KioskScreen:
        """What ``kiosk_id`` shows now: its last check-in for ``screen_hold_s``, then READY."""
        now = self.clock.now()
        screen = self._stored_screen(kiosk_id)
        if screen is not None and now - screen.at < self.clinic.screen_hold_s:
            return screen
        return KioskScreen(kiosk=kiosk_id, kind=ScreenKind.READY, message=READY, at=now)

    def _stored_screen(self, kiosk_id: str) -> KioskScreen | None:
        body = self.store.screen(kiosk_id)
        return None if body is None else KioskScreen.model_validate_json(body)

    def display_state(self) -> DisplayStateData | None:
        """What the displays show: the cloud's state, or the local queues' while the agent
        runs them (the display coordinators read this)."""
        if self._local is None:
            return self.display_store.display_state()
        if self._local_display is None:
            self._local_display = self._make_local_display()
        return self._local_display

    # ------------------------------------------------------------ the MQTT link

    def link_changed(self, up: bool) -> None:
        """The MQTT link came up (subscribed) or went down."""
        self.connected = up
        if not up:
            log.warning(
                "the cloud is unreachable: this agent runs the clinic queues (numbers from %d)",
                AGENT_NUMBERS.first,
            )
            self._take_back_open_requests()
            return
        if self._local is not None and self._state is not None and self._covered(self._state):
            self._hand_back()

    def clinic_state_arrived(self, state: ClinicStateData) -> None:
        """A ``clinic_state`` from the cloud: keep it if newer, settle the requests it
        answers, and hand the queues back once it covers the agent's last local event."""
        self.housekeeping()
        today = self._today()
        if state.day < today:
            log.info("clinic state v%d is for %s, not today: ignored", state.version, state.day)
            return
        current = self._state
        newer = (
            current is None
            or self._synthetic
            or state.day > current.day
            or state.version > current.version
        )
        if newer:
            self.store.save_clinic_state(state)
            self._state, self._synthetic = state, False
            log.info(
                "clinic state v%d stored (%d tickets, %d appointments)",
                state.version,
                len(state.tickets),
                len(state.appointments),
            )
            self._settle(state.results)
        if self._local is not None and self.connected and self._covered(self._state or state):
            self._hand_back()

    def state_stored(self) -> None:
        """The cloud's display state changed (the DisplayService tells the desk, which tells
        the displays): while the agent runs the queues it keeps the new announcement and
        brightness around its own calls."""
        if self._local is not None:
            self._local_display = None
        self._tell_displays()

    # ------------------------------------------------------------ kiosk

    async def check_in(self, kiosk_id: str, card: PatientCardNumber) -> KioskScreen:
        """A patient tapped ``card`` at ``kiosk_id``: their number (or why not) on its screen."""
        self.housekeeping()
        now = self.clock.now()
        walk_in = self._walk_in(kiosk_id)
        tag = self._tag(card)
        if tag is not None:
            again = self._tapped_again(kiosk_id, tag, now)
            if again is not None:
                return again
        if self.running is Running.AGENT:
            screen, _ = self._check_in_locally(kiosk_id, walk_in, card, tag, now)
            return screen
        return await self._check_in_online(kiosk_id, walk_in, card, tag, now)

    def misread(self, kiosk_id: str) -> KioskScreen:
        """The reader sent a line that is not a card number: ask for another tap."""
        screen = KioskScreen(
            kiosk=kiosk_id, kind=ScreenKind.ERROR, message=MISREAD, at=self.clock.now()
        )
        self.store.set_screen(kiosk_id, screen.model_dump_json())
        log.info("kiosk %s: a card could not be read; asked to tap again", kiosk_id)
        return screen

    # ------------------------------------------------------------ staff

    async def staff_action(self, request: StaffRequest) -> ActionResult:
        """A staff action from the local page: to the cloud while it runs the queues (and
        wait for its answer), applied here while the agent does."""
        self.housekeeping()
        now = self.clock.now()
        try:
            data = ClinicActionData(**request.model_dump(), at=int(now))
        except ValidationError as exc:
            reasons = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
            return ActionResult(ok=False, by=self.running, message=reasons)
        if self.running is Running.AGENT:
            return self._act_locally(data, now)
        request_id = self._new_id()
        payload = messages.make(MessageType.CLINIC_ACTION, data, ts=now, message_id=request_id)
        self.store.add_request(request_id, "action", kiosk=None, tag=None, at=now)
        waiter = self._expect(request_id)
        try:
            self.outbox.add(self._events_topic, payload, request_id, now=now)
        except OutboxError as exc:
            self._forget(request_id)
            log.error("staff %s not sent: %s", data.action.value, exc)  # noqa: TRY400 - expected failure, no traceback
            return ActionResult(ok=False, by=Running.CLOUD, message=str(exc))
        log.info(
            "staff %s %s sent to the cloud (request %s)",
            data.action.value,
            data.number or data.room,
            request_id,
        )
        return await self._wait(request_id, waiter, pending=SENT)

    # ------------------------------------------------------------ day

    def housekeeping(self) -> None:
        """Purge the day's data once the Asia/Tokyo day has ended; hand any journalled
        local event to the outbox. Cheap; called before every operation and periodically."""
        today = self._today()
        if self._day is not None and self._day < today:
            self._purge(today)
        self._flush_journal({})

    def _purge(self, today: str) -> None:
        state = None if self._state is None else next_day(self._state, today)
        local = None if self._local is None else next_day(self._local, today)
        self.store.purge(today, state=state, local=local)
        self._day = today
        self._state, self._synthetic = state, state is not None
        self._local, self._queues, self._local_display = local, None, None
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_result(ActionResult(ok=False, by=self.running, message="the day ended"))
        self._waiters.clear()
        log.info("the clinic day ended: its tickets, card tags and kiosk screens are deleted")
        if local is not None:
            self._tell_displays()

    # ------------------------------------------------------------ online

    async def _check_in_online(
        self,
        kiosk_id: str,
        walk_in: str | None,
        card: PatientCardNumber,
        tag: str | None,
        now: float,
    ) -> KioskScreen:
        request_id = self._new_id()
        data = CheckinData(card=card.digits, kiosk=kiosk_id, at=int(now), department=walk_in)
        payload = messages.make(MessageType.CHECKIN, data, ts=now, message_id=request_id)
        checking = KioskScreen(
            kiosk=kiosk_id,
            kind=ScreenKind.CHECKING,
            message=CHECKING,
            at=now,
            request_id=request_id,
        )
        with self.store.transaction():
            self.store.add_request(request_id, "checkin", kiosk=kiosk_id, tag=tag, at=now)
            if tag is not None:
                self.store.set_card(
                    tag, number=None, department=None, request_id=request_id, at=now
                )
            self.store.set_screen(kiosk_id, checking.model_dump_json())
        waiter = self._expect(request_id)
        try:
            self.outbox.add(self._events_topic, payload, request_id, now=now, sensitive=True)
        except OutboxError as exc:
            self._forget(request_id)
            log.error("kiosk %s: check-in not sent: %s", kiosk_id, exc)  # noqa: TRY400 - expected failure, no traceback
            return self._show(kiosk_id, ActionResult(ok=False, by=Running.CLOUD, message=NO_DAY))
        log.info("kiosk %s: check-in sent to the cloud (request %s)", kiosk_id, request_id)
        result = await self._wait(request_id, waiter, pending=SHORTLY)
        # the answer (or the local check-in after a lost link) may have shown it already
        current = self._stored_screen(kiosk_id)
        if current is None or current.request_id == request_id:
            return self._show(kiosk_id, result, request_id=request_id if result.pending else None)
        return current

    def _expect(self, request_id: str) -> asyncio.Future[ActionResult]:
        waiter: asyncio.Future[ActionResult] = asyncio.get_running_loop().create_future()
        self._waiters[request_id] = waiter
        return waiter

    async def _wait(
        self, request_id: str, waiter: asyncio.Future[ActionResult], *, pending: str
    ) -> ActionResult:
        try:
            async with asyncio.timeout(self.clinic.reply_timeout_s):
                return await waiter
        except TimeoutError:
            return ActionResult(ok=True, by=Running.CLOUD, pending=True, message=pending)
        finally:
            self._waiters.pop(request_id, None)

    def _resolve(self, request_id: str, result: ActionResult) -> None:
        waiter = self._waiters.pop(request_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(result)

    def _forget(self, request_id: str) -> None:
        request = self.store.request(request_id)
        with self.store.transaction():
            self.store.drop_request(request_id)
            if request is not None and request.tag is not None:
                self.store.forget_card(request.tag)
        self._waiters.pop(request_id, None)

    def _settle(self, results: Sequence[ClinicResult]) -> None:
        """Answers from the cloud to requests still open here."""
        open_ids = {r.request_id: r for r in self.store.requests()}
        for answer in results:
            request = open_ids.get(answer.request_id)
            if request is not None:
                self._answered(request, answer)

    def _answered(self, request: OpenRequest, answer: ClinicResult) -> None:
        now = self.clock.now()
        result = ActionResult(
            ok=answer.ok,
            by=Running.CLOUD,
            number=answer.number,
            department=answer.department,
            estimated_wait_s=answer.estimated_wait_s,
            message=answer.error or "",
        )
        with self.store.transaction():
            self.store.drop_request(request.request_id)
            if request.kind == "checkin" and request.tag is not None:
                if answer.ok and answer.number is not None:
                    self.store.set_card(
                        request.tag,
                        number=answer.number,
                        department=answer.department,
                        request_id=None,
                        at=now,
                    )
                else:
                    self.store.forget_card(request.tag)
            if request.kiosk is not None:
                shown = self._stored_screen(request.kiosk)
                if shown is not None and shown.request_id == request.request_id:
                    self._show(request.kiosk, result)
        if request.kind == "checkin":
            log.info(
                "kiosk %s: the cloud answered request %s: %s",
                request.kiosk,
                request.request_id,
                answer.number if answer.ok else "refused",
            )
        self._resolve(request.request_id, result)

    def _take_back_open_requests(self) -> None:
        """The link is gone: every open request the broker has not acknowledged is
        withdrawn and done here; the others stay the cloud's to answer."""
        for request in self.store.requests():
            if request.delivered:
                continue
            try:
                row = self.outbox.withdraw(request.request_id)
            except OutboxError as exc:
                log.error("cannot take back request %s: %s", request.request_id, exc)  # noqa: TRY400 - expected failure, no traceback
                continue
            if row is None:  # the broker has it: the cloud answers when the link is back
                self.store.mark_delivered(request.request_id)
                message = SHORTLY if request.kind == "checkin" else SENT
                self._resolve(
                    request.request_id,
                    ActionResult(ok=True, by=Running.CLOUD, pending=True, message=message),
                )
                continue
            self._redo_locally(request, row.payload)

    def _redo_locally(self, request: OpenRequest, payload: bytes) -> None:
        self.store.drop_request(request.request_id)
        now = self.clock.now()
        try:
            _, data = messages.parse(payload)
        except MessageError as exc:  # our own payload: cannot happen, but never crash the link
            log.error("request %s cannot be redone here: %s", request.request_id, exc)  # noqa: TRY400 - expected failure, no traceback
            return
        if isinstance(data, CheckinData):
            card = None
            if data.card is not None:
                try:
                    card = PatientCardNumber(data.card)
                except CardNumberError:
                    card = None
            tag = None if card is None else self._tag(card)
            if tag is not None:
                self.store.forget_card(tag)
            _, result = self._check_in_locally(data.kiosk, data.department, card, tag, now)
            log.info(
                "kiosk %s: request %s never reached the broker; checked in here instead",
                data.kiosk,
                request.request_id,
            )
        elif isinstance(data, ClinicActionData):
            result = self._act_locally(data.model_copy(update={"at": int(now)}), now)
        else:
            return
        self._resolve(request.request_id, result)

    # ------------------------------------------------------------ local

    def _tapped_again(self, kiosk_id: str, tag: str, now: float) -> KioskScreen | None:
        """The same card twice today gets the same ticket, not a second one."""
        record = self.store.card(tag)
        if record is None:
            return None
        if record.number is not None:
            ticket = self._find_ticket(record.number)
            if ticket is None or ticket.state.terminal:
                self.store.forget_card(tag)  # no-show or done: a new check-in, a new number
                return None
            log.info("kiosk %s: %s tapped again; same ticket", kiosk_id, record.number)
            return self._show(
                kiosk_id,
                self._ticket_result(ticket, self.running, now, ALREADY),
            )
        if record.request_id is None:
            return None
        if self.connected:  # its row may be on its way to the broker right now
            return self._show(
                kiosk_id,
                ActionResult(ok=True, by=Running.CLOUD, pending=True, message=SHORTLY),
                request_id=record.request_id,
            )
        # the first tap went to the cloud; the link went down since
        row = self.outbox.withdraw(record.request_id)
        if row is None:
            return self._show(
                kiosk_id,
                ActionResult(
                    ok=True,
                    by=Running.CLOUD,
                    pending=True,
                    message="Your check-in reached the hospital system. Your number appears "
                    "here when the connection is back; please ask at the reception desk.",
                ),
                request_id=record.request_id,
            )
        with self.store.transaction():
            self.store.drop_request(record.request_id)
            self.store.forget_card(tag)
        self._waiters.pop(record.request_id, None)
        return None  # this tap checks in here

    def _check_in_locally(
        self,
        kiosk_id: str,
        walk_in: str | None,
        card: PatientCardNumber | None,
        tag: str | None,
        now: float,
    ) -> tuple[KioskScreen, ActionResult]:
        base = self._base()
        if base is None:
            log.warning("kiosk %s: no clinic day from the cloud yet; cannot check in", kiosk_id)
            result = ActionResult(ok=False, by=Running.AGENT, message=NO_DAY)
            return self._show(kiosk_id, result), result
        queues = dict(self._writable_queues())  # committed below, or dropped
        appointments = appointments_of(base, tag)
        appointment = open_appointment(appointments, now, base.checkin_opens_before_s)
        appointment_at: int | None = None
        if appointment is None and appointments:
            opens = appointments[0].at - base.checkin_opens_before_s
            message = (
                f"Your appointment is at {_hhmm(appointments[0].at)}. "
                f"Please check in from {_hhmm(opens)}."
            )
            result = ActionResult(ok=False, by=Running.AGENT, message=message)
            return self._show(kiosk_id, result), result
        if appointment is not None:
            department, appointment_at = appointment.department, appointment.at
        else:
            department = walk_in or base.walk_in_department or ""
        queue = queues.get(department)
        if queue is None:
            result = ActionResult(ok=False, by=Running.AGENT, message=NO_APPOINTMENT)
            return self._show(kiosk_id, result), result
        try:
            outcome = queue.check_in(now, appointment_at=appointment_at)
        except QueueError as exc:
            log.warning("kiosk %s: local check-in refused: %s", kiosk_id, exc)
            result = ActionResult(ok=False, by=Running.AGENT, message=NO_DAY)
            return self._show(kiosk_id, result), result
        ticket = outcome.change.ticket
        queues[department] = outcome.queue
        event_id = self._new_id()
        data = CheckinData(
            card=None if card is None else card.digits,
            kiosk=kiosk_id,
            at=int(now),
            department=walk_in,
            local=LocalTicket(
                number=ticket.number, department=department, appointment_at=appointment_at
            ),
        )
        result = self._ticket_result(ticket, Running.AGENT, now, "", queue=outcome.queue)
        screen = self._screen(kiosk_id, result, now)
        remaining = [a for a in base.appointments if a is not appointment]
        self._commit_local(
            queues,
            base,
            event_id=event_id,
            kind=MessageType.CHECKIN,
            data=data,
            now=now,
            appointments=remaining,
            card=(tag, ticket.number, department) if tag is not None else None,
            screen=screen,
        )
        log.info(
            "kiosk %s: checked in %s (%s, issued by this agent)",
            kiosk_id,
            ticket.number,
            "appointment" if appointment is not None else "walk-in",
        )
        return screen, result

    def _act_locally(self, data: ClinicActionData, now: float) -> ActionResult:
        base = self._base()
        if base is None:
            return ActionResult(
                ok=False,
                by=Running.AGENT,
                message="the queues are not available: this agent has not received the "
                "clinic's day from the cloud yet",
            )
        queues = dict(self._writable_queues())  # committed below, or dropped
        queue = queues.get(data.department)
        if queue is None:
            return ActionResult(
                ok=False, by=Running.AGENT, message=f"no department {data.department!r}"
            )
        try:
            outcome = apply_action(queue, data, now)
            queues[data.department] = outcome.queue
            moved = outcome.change.moved_out
            if moved is not None:
                target = queues.get(moved.department)
                if target is None:
                    return ActionResult(
                        ok=False, by=Running.AGENT, message=f"no department {moved.department!r}"
                    )
                queues[moved.department] = target.admit(moved, now).queue
        except QueueError as exc:
            return ActionResult(ok=False, by=Running.AGENT, message=str(exc))
        ticket = outcome.change.ticket
        recorded = data.model_copy(
            update={
                "action": ClinicAction.CALL
                if data.action is ClinicAction.CALL_NEXT
                else data.action,
                "number": ticket.number,
                "local": True,
            }
        )
        event_id = self._new_id()
        self._commit_local(
            queues,
            base,
            event_id=event_id,
            kind=MessageType.CLINIC_ACTION,
            data=recorded,
            now=now,
            appointments=list(base.appointments),
        )
        where = f" to room {ticket.room}" if ticket.room and data.action in _CALLS else ""
        log.info("staff %s %s%s (applied by this agent)", data.action.value, ticket.number, where)
        return ActionResult(
            ok=True,
            by=Running.AGENT,
            number=ticket.number,
            department=ticket.department,
            message=f"{ticket.number}: {ticket.state.value}{where}",
        )

    def _commit_local(
        self,
        queues: dict[str, DepartmentQueue],
        base: ClinicStateData,
        *,
        event_id: str,
        kind: MessageType,
        data: CheckinData | ClinicActionData,
        now: float,
        appointments: list[ClinicAppointment],
        card: tuple[str, str, str] | None = None,
        screen: KioskScreen | None = None,
    ) -> None:
        """One local change: the queues, the journal and the card tag in one transaction,
        then the event into the outbox (with the card number, which the journal never holds)."""
        local = with_queues(base, queues, appointments)
        full = messages.make(kind, data, ts=now, message_id=event_id)
        journal = full
        if isinstance(data, CheckinData) and data.card is not None:
            journal = messages.make(
                kind, data.model_copy(update={"card": None}), ts=now, message_id=event_id
            )
        with self.store.transaction():
            self.store.set_local(local, event_id)
            self.store.journal_add(event_id, journal)
            if card is not None:
                tag, number, department = card
                self.store.set_card(
                    tag, number=number, department=department, request_id=None, at=now
                )
            if screen is not None:
                self.store.set_screen(screen.kiosk, screen.model_dump_json())
        if self._local is None:
            log.info("this agent now runs the clinic queues (first local event %s)", event_id)
        self._local, self._queues, self._last_local_event = local, queues, event_id
        self._flush_journal({event_id: full})
        self._refresh_display()

    def _flush_journal(self, with_card: Mapping[str, bytes]) -> None:
        """Hand journalled events to the outbox in the order they were made (after a crash
        or a full disk, without their card number); the outbox ignores one it has seen."""
        for event_id, body in self.store.journal():
            payload = with_card.get(event_id, body)
            try:
                self.outbox.add(
                    self._events_topic,
                    payload,
                    event_id,
                    now=self.clock.now(),
                    sensitive=payload is not body,
                )
            except OutboxError as exc:
                log.error("local event %s waits for the outbox: %s", event_id, exc)  # noqa: TRY400 - expected failure, no traceback
                return
            self.store.journal_drop(event_id)

    def _hand_back(self) -> None:
        with self.store.transaction():
            self.store.set_local(None, None)
        last = self._last_local_event
        self._local, self._queues, self._local_display = None, None, None
        self._last_local_event = None
        log.info(
            "the cloud has applied every local event (up to %s): it runs the queues again", last
        )
        self._tell_displays()

    def _covered(self, state: ClinicStateData) -> bool:
        last = self._last_local_event
        return last is None or (state.applied_through is not None and state.applied_through >= last)

    # ------------------------------------------------------------ displays

    def _refresh_display(self) -> None:
        self._local_display = None
        self._tell_displays()

    def _tell_displays(self) -> None:
        for display in self.displays:
            display.state_stored()

    def _make_local_display(self) -> DisplayStateData:
        base = self.display_store.display_state()
        local = self._local
        assert local is not None  # only asked while the agent runs the queues
        contents = display_contents(
            self._writable_queues(), local.displays, self.clock.now(), base=base
        )
        listed = {c.display_id for c in contents}
        if base is not None:  # displays the clinic state does not map keep the cloud's face
            contents += [d for d in base.displays if d.display_id not in listed]
        seq = self.store.next_display_seq() % LOCAL_DISPLAY_VERSIONS
        return DisplayStateData(version=LOCAL_DISPLAY_VERSIONS + seq, displays=contents)

    # ------------------------------------------------------------ helpers

    def _today(self) -> str:
        return tokyo_day(self.clock.now()).isoformat()

    def _base(self) -> ClinicStateData | None:
        return self._local if self._local is not None else self._state

    def _writable_queues(self) -> dict[str, DepartmentQueue]:
        if self._queues is None:
            base = self._base()
            self._queues = {} if base is None else agent_queues(base)
        return self._queues

    def _read_queues(self) -> dict[str, DepartmentQueue]:
        if self._local is not None:
            return self._writable_queues()
        return {} if self._state is None else agent_queues(self._state)

    def _find_ticket(self, number: str) -> QueueTicket | None:
        for queue in self._read_queues().values():
            for ticket in queue.tickets:
                if ticket.number == number:
                    return ticket
        return None

    def _tag(self, card: PatientCardNumber) -> str | None:
        base = self._base()
        if base is None:
            return None
        return card_tag(bytes.fromhex(base.card_key), card)

    def _walk_in(self, kiosk_id: str) -> str | None:
        kiosk = self.kiosks.get(kiosk_id)
        return None if kiosk is None else kiosk.walk_in_department

    def _new_id(self) -> str:
        """A UUIDv7 later than every id made before, here or before a restart."""
        ms = int(self.clock.now() * 1000)
        if self._last_event is not None:
            ms = max(ms, int(self._last_event.replace("-", "")[:12], 16) + 1)
        new = uuid7(ms)
        self.store.set_last_event(new)
        self._last_event = new
        return new

    def _department_name(self, department_id: str | None) -> str | None:
        base = self._base()
        department = (
            None if base is None or department_id is None else base.department(department_id)
        )
        return department.name if department is not None else department_id

    def _ticket_result(
        self,
        ticket: QueueTicket,
        by: Running,
        now: float,
        message: str,
        *,
        queue: DepartmentQueue | None = None,
    ) -> ActionResult:
        queue = queue or self._read_queues().get(ticket.department)
        wait = None if queue is None else queue.estimated_wait(ticket.number, now)
        return ActionResult(
            ok=True,
            by=by,
            number=ticket.number,
            department=ticket.department,
            estimated_wait_s=wait,
            message=message,
        )

    def _screen(
        self, kiosk_id: str, result: ActionResult, now: float, request_id: str | None = None
    ) -> KioskScreen:
        if result.pending:
            kind = ScreenKind.PENDING
        elif result.ok and result.number is not None:
            kind = ScreenKind.TICKET
        else:
            kind = ScreenKind.ERROR
        return KioskScreen(
            kiosk=kiosk_id,
            kind=kind,
            message=result.message or ("" if kind is ScreenKind.TICKET else NO_DAY),
            number=result.number,
            department=self._department_name(result.department),
            estimated_wait_s=result.estimated_wait_s,
            at=now,
            request_id=request_id,
        )

    def _show(
        self, kiosk_id: str, result: ActionResult, request_id: str | None = None
    ) -> KioskScreen:
        screen = self._screen(kiosk_id, result, self.clock.now(), request_id)
        self.store.set_screen(kiosk_id, screen.model_dump_json())
        return screen


_CALLS = (ClinicAction.CALL_NEXT, ClinicAction.CALL, ClinicAction.RECALL)
_IN_A_ROOM = (TicketState.CALLED, TicketState.IN_ROOM)


def _hhmm(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, TOKYO).strftime("%H:%M")


__all__ = [
    "LOCAL_DISPLAY_VERSIONS",
    "ActionResult",
    "ClinicDesk",
    "DeskStatus",
    "KioskScreen",
    "QueueView",
    "Running",
    "ScreenKind",
    "StaffRequest",
]
