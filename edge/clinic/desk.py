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

**The parts**, one idea each, composed here: :mod:`edge.clinic.desk_state` (what the desk
knows of the day), :mod:`edge.clinic.in_flight` (requests sent to the cloud and the
answers awaited), :mod:`edge.clinic.local_run` (the agent running the queues),
:mod:`edge.clinic.handover` (taking over and handing back), :mod:`edge.clinic.kiosk_screens`
(what a kiosk shows) and :mod:`edge.clinic.local_display` (what the displays show).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, ValidationError

from edge.clinic.day_store import DayStore
from edge.clinic.desk_state import DeskState
from edge.clinic.handover import Handover
from edge.clinic.in_flight import PendingAnswers, RequestsInFlight
from edge.clinic.kiosk_screens import (
    CHECKING,
    NO_DAY,
    SENT,
    SHORTLY,
    KioskScreen,
    KioskScreens,
    ScreenKind,
)
from edge.clinic.local_display import DisplayListener, LocalDisplays
from edge.clinic.local_queues import next_day
from edge.clinic.local_run import LocalRun
from edge.clinic.outcome import ActionResult, Running
from edge.config import SiteConfig
from edge.errors import EdgeError, OutboxError, StoreError
from edge.outbox import Outbox
from edge.store import Store
from protocol import messages, topics
from protocol.clock import Clock
from protocol.messages import (
    CheckinData,
    ClinicAction,
    ClinicActionData,
    ClinicDepartment,
    ClinicStateData,
    DisplayStateData,
    MessageType,
)
from protocol.patient_card import PatientCardNumber
from protocol.queue_rules import AGENT_NUMBERS, QueueTicket, TicketState

log = logging.getLogger(__name__)


class StaffRequest(BaseModel):
    """What the staff page asks for (the fields of :class:`ClinicActionData`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

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
        self.kiosks = {reader.id: reader for reader in config.card_readers}
        self._events_topic = topics.events(config.site, config.gateway)
        self._state = DeskState(store, clock)
        self._pending = PendingAnswers(self.clinic.reply_timeout_s)
        self._displays = LocalDisplays(
            display_store=display_store,
            store=store,
            clock=clock,
            state=self._state,
            listeners=displays,
        )
        self._screens = KioskScreens(
            self.clinic,
            store=store,
            outbox=outbox,
            clock=clock,
            state=self._state,
            pending=self._pending,
        )
        self._requests = RequestsInFlight(
            store=store, clock=clock, pending=self._pending, screens=self._screens
        )
        self._local_run = LocalRun(
            store=store,
            outbox=outbox,
            clock=clock,
            state=self._state,
            screens=self._screens,
            displays=self._displays,
            events_topic=self._events_topic,
        )
        self._handover = Handover(
            store=store,
            outbox=outbox,
            clock=clock,
            state=self._state,
            pending=self._pending,
            local_run=self._local_run,
            displays=self._displays,
        )

    @property
    def displays(self) -> Sequence[DisplayListener]:
        """The display coordinators told when what they show changes (set by ``main``)."""
        return self._displays.listeners

    @displays.setter
    def displays(self, listeners: Sequence[DisplayListener]) -> None:
        self._displays.listeners = listeners

    @property
    def connected(self) -> bool:
        return self._state.connected

    # ------------------------------------------------------------ life

    def open(self) -> None:
        """Open the day store, take up where the agent stopped, purge a finished day."""
        state = self._state
        self.store.open()
        stored = self.store.clinic_state()
        if stored is not None:
            state.state, state.synthetic = stored
        record = self.store.desk()
        state.local = record.local
        state.last_local_event = record.last_local_event
        state.last_event = record.last_event
        state.day = record.day
        if state.day is None:
            state.day = state.today()
            self.store.set_day(state.day)
        self.housekeeping()
        if state.local is not None:
            log.warning(
                "this agent was running the clinic queues when it stopped; it carries on "
                "until the cloud has applied its events"
            )
            self._displays.refresh()

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
        return self._state.running

    def status(self) -> DeskStatus:
        base = self._state.base()
        return DeskStatus(
            running=self.running,
            connected=self.connected,
            day=None if base is None else base.day,
            has_day=base is not None,
            events_waiting=self.outbox.depth(),
            last_local_event=self._state.last_local_event,
        )

    def departments(self) -> list[ClinicDepartment]:
        base = self._state.base()
        return [] if base is None else list(base.departments)

    def queue_view(self, department_id: str) -> QueueView | None:
        """The department's queue as whoever runs it holds it; ``None``: no such department."""
        base = self._state.base()
        if base is None:
            return None
        department = base.department(department_id)
        queue = self._state.read_queues().get(department_id)
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
        return self._screens.kiosk_screen(kiosk_id)

    def display_state(self) -> DisplayStateData | None:
        """What the displays show: the cloud's state, or the local queues' while the agent
        runs them (the display coordinators read this)."""
        return self._displays.display_state()

    # ------------------------------------------------------------ the MQTT link

    def link_changed(self, up: bool) -> None:
        """The MQTT link came up (subscribed) or went down."""
        state = self._state
        state.connected = up
        if not up:
            log.warning(
                "the cloud is unreachable: this agent runs the clinic queues (numbers from %d)",
                AGENT_NUMBERS.first,
            )
            self._handover.take_back_open_requests()
            return
        if (
            state.local is not None
            and state.state is not None
            and self._handover.covered(state.state)
        ):
            self._handover.hand_back()

    def clinic_state_arrived(self, state: ClinicStateData) -> None:
        """A ``clinic_state`` from the cloud: keep it if newer, settle the requests it
        answers, and hand the queues back once it covers the agent's last local event."""
        self.housekeeping()
        desk = self._state
        today = desk.today()
        if state.day < today:
            log.info("clinic state v%d is for %s, not today: ignored", state.version, state.day)
            return
        current = desk.state
        newer = (
            current is None
            or desk.synthetic
            or state.day > current.day
            or state.version > current.version
        )
        if newer:
            self.store.save_clinic_state(state)
            desk.state, desk.synthetic = state, False
            log.info(
                "clinic state v%d stored (%d tickets, %d appointments)",
                state.version,
                len(state.tickets),
                len(state.appointments),
            )
            self._requests.settle(state.results)
        if (
            desk.local is not None
            and desk.connected
            and self._handover.covered(desk.state or state)
        ):
            self._handover.hand_back()

    def state_stored(self) -> None:
        """The cloud's display state changed (the DisplayService tells the desk, which tells
        the displays): while the agent runs the queues it keeps the new announcement and
        brightness around its own calls."""
        if self._state.local is not None:
            self._displays.forget_local()
        self._displays.tell()

    # ------------------------------------------------------------ kiosk

    async def check_in(self, kiosk_id: str, card: PatientCardNumber) -> KioskScreen:
        """A patient tapped ``card`` at ``kiosk_id``: their number (or why not) on its screen."""
        self.housekeeping()
        now = self.clock.now()
        walk_in = self._walk_in(kiosk_id)
        tag = self._state.tag(card)
        if tag is not None:
            again = self._screens.tapped_again(kiosk_id, tag, now)
            if again is not None:
                return again
        if self.running is Running.AGENT:
            screen, _ = self._local_run.check_in(kiosk_id, walk_in, card, tag, now)
            return screen
        return await self._check_in_online(kiosk_id, walk_in, card, tag, now)

    def misread(self, kiosk_id: str) -> KioskScreen:
        """The reader sent a line that is not a card number: ask for another tap."""
        return self._screens.misread(kiosk_id)

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
            return self._local_run.act(data, now)
        request_id = self._state.new_id()
        payload = messages.make(MessageType.CLINIC_ACTION, data, ts=now, message_id=request_id)
        self.store.add_request(request_id, "action", kiosk=None, tag=None, at=now)
        waiter = self._pending.expect(request_id)
        try:
            self.outbox.add(self._events_topic, payload, request_id, now=now)
        except OutboxError as exc:
            self._requests.forget(request_id)
            log.error("staff %s not sent: %s", data.action.value, exc)  # noqa: TRY400 - expected failure, no traceback
            return ActionResult(ok=False, by=Running.CLOUD, message=str(exc))
        log.info(
            "staff %s %s sent to the cloud (request %s)",
            data.action.value,
            data.number or data.room,
            request_id,
        )
        return await self._pending.wait(request_id, waiter, pending=SENT)

    # ------------------------------------------------------------ day

    def housekeeping(self) -> None:
        """Purge the day's data once the Asia/Tokyo day has ended; hand any journalled
        local event to the outbox. Cheap; called before every operation and periodically."""
        today = self._state.today()
        if self._state.day is not None and self._state.day < today:
            self._purge(today)
        self._local_run.flush_journal({})

    def _purge(self, today: str) -> None:
        desk = self._state
        state = None if desk.state is None else next_day(desk.state, today)
        local = None if desk.local is None else next_day(desk.local, today)
        self.store.purge(today, state=state, local=local)
        desk.day = today
        desk.state, desk.synthetic = state, state is not None
        desk.local, desk.queues = local, None
        self._displays.forget_local()
        self._pending.end_all(self.running)
        log.info("the clinic day ended: its tickets, card tags and kiosk screens are deleted")
        if local is not None:
            self._displays.tell()

    # ------------------------------------------------------------ online

    async def _check_in_online(
        self,
        kiosk_id: str,
        walk_in: str | None,
        card: PatientCardNumber,
        tag: str | None,
        now: float,
    ) -> KioskScreen:
        request_id = self._state.new_id()
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
        waiter = self._pending.expect(request_id)
        try:
            self.outbox.add(self._events_topic, payload, request_id, now=now, sensitive=True)
        except OutboxError as exc:
            self._requests.forget(request_id)
            log.error("kiosk %s: check-in not sent: %s", kiosk_id, exc)  # noqa: TRY400 - expected failure, no traceback
            return self._screens.show(
                kiosk_id, ActionResult(ok=False, by=Running.CLOUD, message=NO_DAY)
            )
        log.info("kiosk %s: check-in sent to the cloud (request %s)", kiosk_id, request_id)
        result = await self._pending.wait(request_id, waiter, pending=SHORTLY)
        # the answer (or the local check-in after a lost link) may have shown it already
        current = self._screens.stored_screen(kiosk_id)
        if current is None or current.request_id == request_id:
            return self._screens.show(
                kiosk_id, result, request_id=request_id if result.pending else None
            )
        return current

    def _walk_in(self, kiosk_id: str) -> str | None:
        kiosk = self.kiosks.get(kiosk_id)
        return None if kiosk is None else kiosk.walk_in_department


_IN_A_ROOM = (TicketState.CALLED, TicketState.IN_ROOM)


__all__ = ["ClinicDesk", "DeskStatus", "QueueView", "StaffRequest"]
