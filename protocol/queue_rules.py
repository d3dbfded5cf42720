"""Every rule of a clinic department's queue, in one pure module (h11 ``_state.py`` style).

No database, no I/O, no web framework: time is passed in as UTC epoch seconds (what a
:class:`protocol.clock.Clock` returns), and every operation returns a new value.

Ticket life
    ``waiting → called → in_room → done``, with side paths. Every transition is one row
    of :data:`TRANSITIONS`; a pair missing from it is refused with
    :class:`IllegalTransitionError`, which names the state, the action and what is allowed.

    =========  ==========  ========  =========================================================
    from       action      to        why
    =========  ==========  ========  =========================================================
    waiting    call_next   called    a room calls the next ticket (see *Call order*)
    waiting    skip        skipped   set aside (patient went to the lab); only recall returns
    waiting    transfer    waiting   to another room or department, keeping its place
    called     recall      called    call the same number again (the display chimes again)
    called     start       in_room   the patient entered the room
    called     skip        skipped   did not come; set aside, the room can call the next one
    called     no_show     no_show   did not come; the ticket is closed
    called     transfer    waiting   sent elsewhere before being seen
    skipped    recall      called    the patient is back: called straight to a room
    skipped    no_show     no_show   never came back
    skipped    transfer    waiting   sent elsewhere
    in_room    done        done      seen; the in_room→done time feeds the wait estimate
    in_room    transfer    waiting   sent on (to X-ray, to another room)
    =========  ==========  ========  =========================================================

    ``done`` and ``no_show`` are terminal: a patient who turns up after a no-show checks in
    again and gets a new number, so every ticket ends in exactly one terminal state.
    A room holds at most one ``called`` or ``in_room`` ticket; calling the next one while
    the room still has one is refused (:class:`RoomBusyError`).

Numbers
    Per department, ``<prefix>-<nnn>`` (``A-001``), restarting at the first number of its
    range every Asia/Tokyo day. The cloud issues 001-699 (:data:`CLOUD_NUMBERS`); a site's
    agent issues 700-999 (:data:`AGENT_NUMBERS`) while the internet is down. The ranges are
    disjoint, so an offline number never collides with a cloud one and the labels stay
    plain digits, which is all a call-number display accepts (``A-023``, no names). A range
    that runs out in one day is refused (:class:`NumbersExhaustedError`).

Call order (:func:`call_order`)
    At time ``now``, waiting tickets are sorted into tiers, and within each tier by time:

    1. urgent tickets, by ``queued_at`` (FIFO);
    2. *overdue* walk-ins, by ``queued_at``: a walk-in is overdue when it has waited
       strictly longer than the tolerance, ``now - queued_at > tolerance``;
    3. appointments (checked in), by appointment time, then ``queued_at``;
    4. the other walk-ins, by ``queued_at``.

    So an appointment goes ahead of a walk-in for at most ``tolerance`` seconds of the
    walk-in's wait; from then on only urgent tickets and walk-ins who came earlier are
    called before it: it is never overtaken again. Ties break on the number.
    ``call_next(room)`` takes the first ticket in this order whose preferred room is
    ``None`` or ``room`` (the department always matches: a queue holds one department).

Transfer
    Back to ``waiting``, keeping its number, urgency, appointment time and ``queued_at``:
    the ordering treats it as if it had waited there since check-in. Within the department
    the target room becomes its preferred room; to another department the ticket leaves this
    queue (``Change.moved_out``) and the caller hands it to the target's :meth:`admit`.

Estimated wait (:func:`estimate_wait`)
    Median of the department's last :data:`SERVICE_HISTORY` in_room→done durations
    (:data:`DEFAULT_SERVICE_S` when there are none yet), times the tickets ahead in call
    order, divided by the rooms open. It is the wait until called, not until done.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import Enum
from zoneinfo import ZoneInfo

from protocol.errors import DenenError

TOKYO = ZoneInfo("Asia/Tokyo")
DEFAULT_TOLERANCE_S = 15 * 60
DEFAULT_SERVICE_S = 10 * 60  # until the department has finished a first patient today
SERVICE_HISTORY = 20  # the last N in_room->done durations feed the estimate
NEXT_SHOWN = 5  # how many upcoming numbers a display lists


# ------------------------------------------------------------------------ state machine


class TicketState(Enum):
    WAITING = "waiting"
    CALLED = "called"
    IN_ROOM = "in_room"
    SKIPPED = "skipped"
    DONE = "done"
    NO_SHOW = "no_show"

    @property
    def terminal(self) -> bool:
        return not TRANSITIONS[self]


class Action(Enum):
    CALL_NEXT = "call_next"
    RECALL = "recall"
    NO_SHOW = "no_show"
    SKIP = "skip"
    TRANSFER = "transfer"
    START = "start"
    DONE = "done"


_S, _A = TicketState, Action

TRANSITIONS: dict[TicketState, dict[Action, TicketState]] = {
    _S.WAITING: {
        _A.CALL_NEXT: _S.CALLED,
        _A.SKIP: _S.SKIPPED,
        _A.TRANSFER: _S.WAITING,
    },
    _S.CALLED: {
        _A.RECALL: _S.CALLED,
        _A.START: _S.IN_ROOM,
        _A.SKIP: _S.SKIPPED,
        _A.NO_SHOW: _S.NO_SHOW,
        _A.TRANSFER: _S.WAITING,
    },
    _S.SKIPPED: {
        _A.RECALL: _S.CALLED,
        _A.NO_SHOW: _S.NO_SHOW,
        _A.TRANSFER: _S.WAITING,
    },
    _S.IN_ROOM: {
        _A.DONE: _S.DONE,
        _A.TRANSFER: _S.WAITING,
    },
    _S.DONE: {},
    _S.NO_SHOW: {},
}

# the states that occupy a room
_IN_A_ROOM = (TicketState.CALLED, TicketState.IN_ROOM)


class QueueError(DenenError):
    """Root of everything the queue rules refuse (the cloud answers 400, 404 or 409)."""


class QueueRuleError(QueueError, ValueError):
    """The action clashes with the queue's state (HTTP 409)."""


class QueueRequestError(QueueError, ValueError):
    """The action names something the department does not have (HTTP 400)."""


class IllegalTransitionError(QueueRuleError):
    """``action`` is not allowed for a ticket in ``state``."""

    def __init__(self, state: TicketState, action: Action, number: str | None = None) -> None:
        self.state = state
        self.action = action
        self.allowed = tuple(TRANSITIONS[state])
        allowed = ", ".join(a.value for a in self.allowed) or "nothing (the ticket is closed)"
        who = f"ticket {number} is" if number else "a ticket"
        super().__init__(f"cannot {action.value}: {who} {state.value}; allowed there: {allowed}")


class UnknownTicketError(QueueError, LookupError):
    """No ticket with that number in this department's queue."""


class UnknownRoomError(QueueRequestError):
    """The room is not one of the department's open rooms."""


class RoomBusyError(QueueRuleError):
    """The room still has a called or in-room ticket."""


class NobodyWaitingError(QueueRuleError, LookupError):
    """``call_next`` found no waiting ticket this room may call."""


class NumbersExhaustedError(QueueRuleError):
    """The day's number range is used up."""


def next_state(state: TicketState, action: Action, number: str | None = None) -> TicketState:
    """Where ``action`` leads from ``state``; raises :class:`IllegalTransitionError`."""
    try:
        return TRANSITIONS[state][action]
    except KeyError:
        raise IllegalTransitionError(state, action, number) from None


# ------------------------------------------------------------------------------ numbers


@dataclass(frozen=True)
class NumberRange:
    """The numbers one issuer may hand out in a day, both ends included."""

    first: int
    last: int


CLOUD_NUMBERS = NumberRange(1, 699)
AGENT_NUMBERS = NumberRange(700, 999)  # issued by a site's agent while offline


def tokyo_day(epoch: float) -> date:
    """The Asia/Tokyo calendar day of ``epoch``: numbers restart at Tokyo midnight."""
    return datetime.fromtimestamp(epoch, TOKYO).date()


@dataclass(frozen=True)
class IssuedNumber:
    """A ticket number: ``A-001`` on ``day``."""

    prefix: str
    value: int
    day: date

    @property
    def label(self) -> str:
        return f"{self.prefix}-{self.value:03d}"


@dataclass(frozen=True)
class NumberIssuer:
    """Issues a department's numbers from one range, restarting every Tokyo day."""

    prefix: str
    numbers: NumberRange = CLOUD_NUMBERS

    def issue(self, day: date, last: IssuedNumber | None) -> IssuedNumber:
        """The number after ``last``; the range's first one when ``last`` is another day's."""
        if last is None or last.day != day:
            return IssuedNumber(self.prefix, self.numbers.first, day)
        if not self.numbers.first <= last.value <= self.numbers.last:
            raise NumbersExhaustedError(f"{last.label} is outside this issuer's range")
        if last.value == self.numbers.last:
            raise NumbersExhaustedError(
                f"department {self.prefix} has issued every number up to {last.label} today"
            )
        return IssuedNumber(self.prefix, last.value + 1, day)


# ------------------------------------------------------------------------------ tickets


@dataclass(frozen=True)
class QueueTicket:
    """One patient's place in a department's queue. Never holds a name or card number."""

    number: str
    department: str
    queued_at: float  # check-in time; kept on transfer so the place is kept
    urgent: bool = False
    appointment_at: float | None = None  # None: a walk-in
    preferred_room: str | None = None
    state: TicketState = TicketState.WAITING
    room: str | None = None  # the room it was last called to
    call_seq: int = 0  # goes up on each call and recall: the display chimes on a change
    called_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def walk_in(self) -> bool:
        return self.appointment_at is None


def _tier_key(ticket: QueueTicket, now: float, tolerance: float) -> tuple[int, float, float, str]:
    if ticket.urgent:
        return (0, ticket.queued_at, ticket.queued_at, ticket.number)
    if ticket.appointment_at is None:
        overdue = now - ticket.queued_at > tolerance
        return (1 if overdue else 3, ticket.queued_at, ticket.queued_at, ticket.number)
    return (2, ticket.appointment_at, ticket.queued_at, ticket.number)


def call_order(
    tickets: Iterable[QueueTicket], now: float, tolerance: float = DEFAULT_TOLERANCE_S
) -> list[QueueTicket]:
    """The waiting tickets in the order rooms call them at ``now`` (module docstring)."""
    waiting = [t for t in tickets if t.state is TicketState.WAITING]
    return sorted(waiting, key=lambda t: _tier_key(t, now, tolerance))


def may_call(ticket: QueueTicket, department: str, room: str) -> bool:
    """True when ``room`` of ``department`` may call ``ticket``."""
    return ticket.department == department and ticket.preferred_room in (None, room)


def estimate_wait(
    ahead: int,
    service_times: Sequence[float],
    rooms_open: int,
    default_service: float = DEFAULT_SERVICE_S,
) -> float:
    """Seconds until called: median recent service time x tickets ahead / rooms open."""
    recent = service_times[-SERVICE_HISTORY:]
    per_patient = statistics.median(recent) if recent else default_service
    return per_patient * ahead / max(rooms_open, 1)


# ------------------------------------------------------------------------------- queue


@dataclass(frozen=True)
class RoomCall:
    """Room ``room`` calls ticket ``number``; ``call_seq`` rises on each call and recall."""

    room: str
    number: str
    call_seq: int


@dataclass(frozen=True)
class DisplayState:
    """What the waiting room's displays show: numbers only, never names."""

    calls: tuple[RoomCall, ...]
    next_numbers: tuple[str, ...]


@dataclass(frozen=True)
class Change:
    """What one action changed, for the staff page, the notifier and the displays."""

    action: Action | None  # None for a check-in or an admitted transfer
    ticket: QueueTicket  # the ticket after the action
    before: TicketState | None  # None when the ticket is new to this queue
    display: DisplayState
    new_call: RoomCall | None = None  # set on call_next and recall: chime
    moved_out: QueueTicket | None = None  # transferred to another department: admit() it


@dataclass(frozen=True)
class Outcome:
    queue: DepartmentQueue
    change: Change


@dataclass(frozen=True)
class DepartmentQueue:
    """One department's queue for one Tokyo day; every method returns a new queue."""

    department: str
    issuer: NumberIssuer
    rooms: tuple[str, ...]  # open rooms
    day: date
    tickets: tuple[QueueTicket, ...] = ()
    last_number: IssuedNumber | None = None
    service_times: tuple[float, ...] = ()  # recent in_room->done seconds, oldest first
    tolerance: float = DEFAULT_TOLERANCE_S
    default_service: float = DEFAULT_SERVICE_S
    _index: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._index.update({t.number: i for i, t in enumerate(self.tickets)})

    # ------------------------------------------------------------------- reading

    def ticket(self, number: str) -> QueueTicket:
        try:
            return self.tickets[self._index[number]]
        except KeyError:
            raise UnknownTicketError(
                f"no ticket {number} in the {self.department} queue today"
            ) from None

    def waiting_order(self, now: float) -> list[QueueTicket]:
        return call_order(self.tickets, now, self.tolerance)

    def in_room(self, room: str) -> QueueTicket | None:
        """The called or in-room ticket of ``room``, if any."""
        for t in self.tickets:
            if t.room == room and t.state in _IN_A_ROOM:
                return t
        return None

    def display(self, now: float) -> DisplayState:
        calls = tuple(
            RoomCall(t.room, t.number, t.call_seq)
            for t in sorted(self.tickets, key=lambda t: t.room or "")
            if t.state in _IN_A_ROOM and t.room is not None
        )
        upcoming = tuple(t.number for t in self.waiting_order(now)[:NEXT_SHOWN])
        return DisplayState(calls, upcoming)

    def estimated_wait(self, number: str, now: float) -> float:
        """Seconds until ``number`` is likely called (0 once it is no longer waiting)."""
        ticket = self.ticket(number)
        if ticket.state is not TicketState.WAITING:
            return 0.0
        ahead = [t.number for t in self.waiting_order(now)].index(number)
        return estimate_wait(ahead, self.service_times, len(self.rooms), self.default_service)

    # ------------------------------------------------------------------- actions

    def check_in(
        self,
        now: float,
        *,
        urgent: bool = False,
        appointment_at: float | None = None,
        preferred_room: str | None = None,
    ) -> Outcome:
        """Issue the next number and put a new ticket at the back of its tier."""
        day = tokyo_day(now)
        if day != self.day:
            raise QueueRequestError(
                f"the {self.department} queue is for {self.day}, not {day}: open a new day"
            )
        if preferred_room is not None:
            self._check_room(preferred_room)
        issued = self.issuer.issue(day, self.last_number)
        ticket = QueueTicket(
            number=issued.label,
            department=self.department,
            queued_at=now,
            urgent=urgent,
            appointment_at=appointment_at,
            preferred_room=preferred_room,
        )
        queue = replace(self, tickets=(*self.tickets, ticket), last_number=issued)
        return queue._outcome(None, ticket, None, now)

    def admit(self, ticket: QueueTicket, now: float) -> Outcome:
        """Take in a ticket transferred from another department (``Change.moved_out``)."""
        if ticket.department != self.department or ticket.state is not TicketState.WAITING:
            raise QueueRequestError(
                f"ticket {ticket.number} is {ticket.state.value} for {ticket.department}, "
                f"not waiting for {self.department}"
            )
        if ticket.number in self._index:
            raise QueueRuleError(f"ticket {ticket.number} is already in the queue")
        if ticket.preferred_room is not None:
            self._check_room(ticket.preferred_room)
        queue = replace(self, tickets=(*self.tickets, ticket))
        return queue._outcome(None, ticket, None, now)

    def call_next(self, room: str, now: float) -> Outcome:
        """``room`` calls the first waiting ticket it may call."""
        self._check_room(room)
        self._check_room_free(room)
        for candidate in self.waiting_order(now):
            if may_call(candidate, self.department, room):
                return self._call(candidate, Action.CALL_NEXT, room, now)
        raise NobodyWaitingError(f"nobody is waiting for room {room} of {self.department}")

    def call(self, number: str, room: str, now: float) -> Outcome:
        """``room`` calls the waiting ticket ``number`` out of turn (staff chose it, or the
        agent called it while it ran the queue offline)."""
        ticket = self.ticket(number)
        next_state(ticket.state, Action.CALL_NEXT, number)
        self._check_room(room)
        self._check_room_free(room)
        return self._call(ticket, Action.CALL_NEXT, room, now)

    def recall(self, number: str, now: float, room: str | None = None) -> Outcome:
        """Call ``number`` again: to its room, or to ``room`` for a skipped ticket."""
        ticket = self.ticket(number)
        next_state(ticket.state, Action.RECALL, number)
        target = room or ticket.room
        if target is None:  # skipped while still waiting: it never had a room
            raise QueueRequestError(f"say which room recalls {number}")
        self._check_room(target)
        if ticket.state is TicketState.SKIPPED or target != ticket.room:
            self._check_room_free(target)
        return self._call(ticket, Action.RECALL, target, now)

    def start(self, number: str, now: float) -> Outcome:
        """The patient entered the room."""
        return self._step(number, Action.START, now, started_at=now)

    def done(self, number: str, now: float) -> Outcome:
        """The patient was seen; the in-room time joins the service history."""
        ticket = self.ticket(number)
        next_state(ticket.state, Action.DONE, number)
        started = ticket.started_at if ticket.started_at is not None else now
        served = max(now - started, 0.0)
        queue = replace(self, service_times=(*self.service_times, served)[-SERVICE_HISTORY:])
        return queue._step(number, Action.DONE, now, finished_at=now)

    def no_show(self, number: str, now: float) -> Outcome:
        return self._step(number, Action.NO_SHOW, now, finished_at=now)

    def skip(self, number: str, now: float) -> Outcome:
        return self._step(number, Action.SKIP, now)

    def transfer(
        self, number: str, now: float, *, room: str | None = None, department: str | None = None
    ) -> Outcome:
        """Back to waiting in another room's or department's queue, keeping its place."""
        ticket = self.ticket(number)
        to = next_state(ticket.state, Action.TRANSFER, number)
        if department is None or department == self.department:
            if room is not None:
                self._check_room(room)
            return self._step(number, Action.TRANSFER, now, preferred_room=room, room=None)
        moved = replace(ticket, state=to, department=department, preferred_room=room, room=None)
        queue = replace(self, tickets=tuple(t for t in self.tickets if t.number != number))
        change = queue._outcome(Action.TRANSFER, moved, ticket.state, now).change
        return Outcome(queue, replace(change, moved_out=moved))

    def next_day(self, day: date) -> DepartmentQueue:
        """An empty queue for ``day`` that keeps the rooms and the service history."""
        open_tickets = [t.number for t in self.tickets if not t.state.terminal]
        if open_tickets:
            raise QueueRuleError(
                f"close these tickets before opening {day}: {', '.join(open_tickets)}"
            )
        return replace(self, day=day, tickets=(), last_number=None)

    # ------------------------------------------------------------------- helpers

    def _check_room(self, room: str) -> None:
        if room not in self.rooms:
            raise UnknownRoomError(
                f"room {room} is not open in {self.department} (open: {', '.join(self.rooms)})"
            )

    def _check_room_free(self, room: str) -> None:
        busy = self.in_room(room)
        if busy is not None:
            raise RoomBusyError(
                f"room {room} still has {busy.number} {busy.state.value}: "
                "mark it done, no-show, skip or transfer it first"
            )

    def _call(self, ticket: QueueTicket, action: Action, room: str, now: float) -> Outcome:
        outcome = self._step(
            ticket.number,
            action,
            now,
            room=room,
            call_seq=ticket.call_seq + 1,
            called_at=now,
        )
        call = RoomCall(room, ticket.number, ticket.call_seq + 1)
        return Outcome(outcome.queue, replace(outcome.change, new_call=call))

    def _step(
        self, number: str, action: Action, now: float, **fields: str | float | int | None
    ) -> Outcome:
        ticket = self.ticket(number)
        to = next_state(ticket.state, action, number)
        updated = replace(ticket, state=to, **fields)  # type: ignore[arg-type]  # fields are QueueTicket's
        tickets = list(self.tickets)
        tickets[self._index[number]] = updated
        queue = replace(self, tickets=tuple(tickets))
        return queue._outcome(action, updated, ticket.state, now)

    def _outcome(
        self, action: Action | None, ticket: QueueTicket, before: TicketState | None, now: float
    ) -> Outcome:
        return Outcome(self, Change(action, ticket, before, self.display(now)))
