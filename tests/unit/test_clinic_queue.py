"""The clinic queue rules, tested on their own: no database, no event loop, no sleep."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from protocol.clock import ManualClock
from protocol.display_wire import check_ticket
from protocol.queue_rules import (
    AGENT_NUMBERS,
    CLOUD_NUMBERS,
    DEFAULT_SERVICE_S,
    TOKYO,
    TRANSITIONS,
    Action,
    DepartmentQueue,
    IllegalTransitionError,
    IssuedNumber,
    NobodyWaitingError,
    NumberIssuer,
    NumberRange,
    NumbersExhaustedError,
    QueueRequestError,
    QueueRuleError,
    QueueTicket,
    RoomBusyError,
    TicketState,
    UnknownRoomError,
    UnknownTicketError,
    call_order,
    estimate_wait,
    next_state,
    tokyo_day,
)

S, A = TicketState, Action
NINE = datetime(2027, 1, 15, 9, 0, tzinfo=TOKYO).timestamp()
DAY = date(2027, 1, 15)
MIN = 60.0


def new_queue(rooms: tuple[str, ...] = ("1", "2"), **kw: object) -> DepartmentQueue:
    return DepartmentQueue(
        department="internal", issuer=NumberIssuer("A"), rooms=rooms, day=DAY, **kw
    )  # type: ignore[arg-type]


def checked_in(n: int, **kw: object) -> DepartmentQueue:
    q = new_queue()
    for i in range(n):
        q = q.check_in(NINE + i, **kw).queue  # type: ignore[arg-type]
    return q


def ticket(number: str, queued_at: float, **kw: object) -> QueueTicket:
    return QueueTicket(number=number, department="internal", queued_at=queued_at, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------ the table itself

LEGAL = [(s, a, to) for s, row in TRANSITIONS.items() for a, to in row.items()]
ILLEGAL = [(s, a) for s in S for a in A if a not in TRANSITIONS[s]]


@pytest.mark.parametrize(("state", "action", "to"), LEGAL)
def test_every_legal_transition_in_the_table(state: S, action: A, to: S) -> None:
    assert next_state(state, action) is to


@pytest.mark.parametrize(("state", "action"), ILLEGAL)
def test_every_illegal_pair_is_refused_with_a_clear_message(state: S, action: A) -> None:
    with pytest.raises(IllegalTransitionError) as info:
        next_state(state, action, "A-001")
    message = str(info.value)
    assert state.value in message
    assert action.value in message
    assert "A-001" in message
    for allowed in TRANSITIONS[state]:
        assert allowed.value in message
    assert info.value.allowed == tuple(TRANSITIONS[state])
    assert isinstance(info.value, QueueRuleError)


def test_the_table_covers_every_state_and_only_done_and_no_show_are_terminal() -> None:
    assert set(TRANSITIONS) == set(S)
    assert {s for s in S if s.terminal} == {S.DONE, S.NO_SHOW}
    assert "nothing (the ticket is closed)" in str(IllegalTransitionError(S.DONE, A.RECALL))


# ------------------------------------------------------- legal transitions via the queue


def test_happy_path_waiting_called_in_room_done() -> None:
    q = checked_in(1)
    out = q.call_next("1", NINE + 60)
    assert out.change.before is S.WAITING
    assert out.change.ticket.state is S.CALLED
    assert out.change.new_call is not None
    assert (out.change.new_call.room, out.change.new_call.number) == ("1", "A-001")
    out = out.queue.start("A-001", NINE + 120)
    assert out.change.ticket.state is S.IN_ROOM
    out = out.queue.done("A-001", NINE + 720)
    assert out.change.ticket.state is S.DONE
    assert out.queue.service_times == (600.0,)
    assert out.change.display.calls == ()


def test_recall_bumps_call_seq_so_the_display_chimes_again() -> None:
    q = checked_in(1).call_next("1", NINE).queue
    out = q.recall("A-001", NINE + 30)
    assert out.change.ticket.state is S.CALLED
    assert out.change.new_call is not None
    assert out.change.new_call.call_seq == 2
    assert out.change.display.calls[0].call_seq == 2


@pytest.mark.parametrize("from_called", [True, False])
def test_skip_then_recall_calls_the_patient_straight_to_a_room(from_called: bool) -> None:
    q = checked_in(2)
    if from_called:
        q = q.call_next("1", NINE).queue
    q = q.skip("A-001", NINE + 60).queue
    assert q.ticket("A-001").state is S.SKIPPED
    assert q.waiting_order(NINE + 60)[0].number == "A-002"  # skipped is not called next
    if not from_called:
        with pytest.raises(QueueRequestError, match="which room"):
            q.recall("A-001", NINE + 90)
    out = q.recall("A-001", NINE + 90, room="2")
    assert out.change.ticket.state is S.CALLED
    assert out.change.ticket.room == "2"


def test_skip_frees_the_room_for_the_next_call() -> None:
    q = checked_in(2).call_next("1", NINE).queue
    with pytest.raises(RoomBusyError, match="A-001"):
        q.call_next("1", NINE + 10)
    q = q.skip("A-001", NINE + 20).queue
    assert q.call_next("1", NINE + 30).change.ticket.number == "A-002"


def test_recall_of_skipped_ticket_into_a_busy_room_is_refused() -> None:
    q = checked_in(2).call_next("1", NINE).queue.skip("A-001", NINE).queue
    q = q.call_next("1", NINE + 1).queue
    with pytest.raises(RoomBusyError):
        q.recall("A-001", NINE + 2)


@pytest.mark.parametrize("via_skip", [True, False])
def test_no_show_closes_the_ticket(via_skip: bool) -> None:
    q = checked_in(1).call_next("1", NINE).queue
    if via_skip:
        q = q.skip("A-001", NINE + 1).queue
    out = q.no_show("A-001", NINE + 300)
    assert out.change.ticket.state is S.NO_SHOW
    assert out.change.ticket.state.terminal
    with pytest.raises(IllegalTransitionError, match="no_show"):
        out.queue.recall("A-001", NINE + 400)


@pytest.mark.parametrize("setup", ["waiting", "called", "skipped", "in_room"])
def test_transfer_to_another_room_goes_back_to_waiting_for_that_room(setup: str) -> None:
    q = checked_in(1)
    if setup != "waiting":
        q = q.call_next("1", NINE).queue
    if setup == "skipped":
        q = q.skip("A-001", NINE).queue
    if setup == "in_room":
        q = q.start("A-001", NINE).queue
    out = q.transfer("A-001", NINE + 60, room="2")
    assert out.change.ticket.state is S.WAITING
    assert out.change.ticket.preferred_room == "2"
    assert out.change.ticket.queued_at == NINE  # keeps its place
    with pytest.raises(NobodyWaitingError):
        out.queue.call_next("1", NINE + 70)
    assert out.queue.call_next("2", NINE + 70).change.ticket.number == "A-001"


def test_transfer_to_another_department_moves_the_ticket_with_its_place() -> None:
    q = checked_in(1).call_next("1", NINE).queue.start("A-001", NINE).queue
    xray = DepartmentQueue("xray", NumberIssuer("X"), ("R1",), DAY)
    xray = xray.check_in(NINE + 100).queue  # X-001 came later than A-001's check-in
    out = q.transfer("A-001", NINE + 600, department="xray")
    moved = out.change.moved_out
    assert moved is not None
    assert moved.department == "xray"
    assert moved.state is S.WAITING
    with pytest.raises(UnknownTicketError):
        out.queue.ticket("A-001")
    xray = xray.admit(moved, NINE + 600).queue
    assert [t.number for t in xray.waiting_order(NINE + 600)] == ["A-001", "X-001"]
    with pytest.raises(QueueRuleError, match="already"):
        xray.admit(moved, NINE + 601)
    with pytest.raises(QueueRequestError):
        new_queue().admit(moved, NINE)


def test_illegal_actions_through_the_queue_name_state_and_action() -> None:
    q = checked_in(1)
    with pytest.raises(IllegalTransitionError, match=r"cannot start: ticket A-001 is waiting"):
        q.start("A-001", NINE)
    with pytest.raises(IllegalTransitionError, match="cannot done"):
        q.done("A-001", NINE)
    with pytest.raises(UnknownTicketError):
        q.skip("A-404", NINE)
    with pytest.raises(UnknownRoomError, match="open: 1, 2"):
        q.call_next("9", NINE)


# -------------------------------------------------------------------------- ordering

TOL = 15 * MIN


def numbers(tickets: list[QueueTicket]) -> list[str]:
    return [t.number for t in tickets]


def test_fifo_among_walk_ins() -> None:
    ts = [ticket("A-003", NINE + 2), ticket("A-001", NINE), ticket("A-002", NINE + 1)]
    assert numbers(call_order(ts, NINE + 5, TOL)) == ["A-001", "A-002", "A-003"]


def test_urgent_goes_first_fifo_among_urgent() -> None:
    ts = [
        ticket("A-001", NINE, appointment_at=NINE),
        ticket("A-002", NINE + 1),
        ticket("A-003", NINE + 2, urgent=True),
        ticket("A-004", NINE + 3, urgent=True),
    ]
    assert numbers(call_order(ts, NINE + 2 * TOL, TOL))[:2] == ["A-003", "A-004"]


def test_appointments_by_appointment_time_ahead_of_fresh_walk_ins() -> None:
    ts = [
        ticket("A-001", NINE),  # walk-in
        ticket("A-002", NINE + 60, appointment_at=NINE + 30 * MIN),
        ticket("A-003", NINE + 120, appointment_at=NINE + 10 * MIN),
    ]
    assert numbers(call_order(ts, NINE + 5 * MIN, TOL)) == ["A-003", "A-002", "A-001"]


@pytest.mark.parametrize(
    ("waited", "walk_in_first"),
    [(TOL - 1, False), (TOL, False), (TOL + 0.001, True), (TOL + 1, True)],
)
def test_walk_in_is_not_overtaken_once_it_waited_longer_than_the_tolerance(
    waited: float, walk_in_first: bool
) -> None:
    ts = [
        ticket("A-001", NINE),
        ticket("A-002", NINE + 60, appointment_at=NINE),
    ]
    order = numbers(call_order(ts, NINE + waited, TOL))
    assert order == (["A-001", "A-002"] if walk_in_first else ["A-002", "A-001"])


def test_overdue_walk_in_even_ahead_of_a_late_appointment_but_behind_urgent() -> None:
    ts = [
        ticket("A-001", NINE),  # walk-in, overdue at NINE + 20 min
        ticket("A-002", NINE + 19 * MIN, appointment_at=NINE - 60 * MIN),  # very late
        ticket("A-003", NINE + 19 * MIN, urgent=True),
        ticket("A-004", NINE + 10 * MIN),  # walk-in, not yet overdue
    ]
    assert numbers(call_order(ts, NINE + 20 * MIN, TOL)) == ["A-003", "A-001", "A-002", "A-004"]


def test_room_only_calls_tickets_it_may_call() -> None:
    q = new_queue()
    q = q.check_in(NINE, preferred_room="2").queue
    q = q.check_in(NINE + 1).queue
    assert q.call_next("1", NINE + 2).change.ticket.number == "A-002"
    assert q.call_next("2", NINE + 2).change.ticket.number == "A-001"
    with pytest.raises(UnknownRoomError):
        q.check_in(NINE, preferred_room="7")


def test_call_next_on_an_empty_queue_says_nobody_is_waiting() -> None:
    with pytest.raises(NobodyWaitingError, match="room 1"):
        new_queue().call_next("1", NINE)


def test_display_shows_rooms_and_next_numbers_only() -> None:
    q = checked_in(8)
    q = q.call_next("2", NINE + 10).queue
    out = q.call_next("1", NINE + 11)
    shown = out.change.display
    assert [(c.room, c.number) for c in shown.calls] == [("1", "A-002"), ("2", "A-001")]
    assert shown.next_numbers == ("A-003", "A-004", "A-005", "A-006", "A-007")
    for label in (*shown.next_numbers, *(c.number for c in shown.calls)):
        check_ticket(label)  # the display's wire accepts every label


# --------------------------------------------------------------------------- numbers


def test_numbers_count_up_with_a_prefix() -> None:
    issuer = NumberIssuer("A")
    first = issuer.issue(DAY, None)
    second = issuer.issue(DAY, first)
    assert (first.label, second.label) == ("A-001", "A-002")
    assert NumberIssuer("B", AGENT_NUMBERS).issue(DAY, None).label == "B-700"


def test_daily_reset_happens_at_tokyo_midnight_not_utc() -> None:
    clock = ManualClock(datetime(2027, 1, 15, 23, 59, 59, tzinfo=TOKYO).timestamp())
    issuer = NumberIssuer("A")
    last = issuer.issue(tokyo_day(clock.now()), None)
    last = issuer.issue(tokyo_day(clock.now()), last)
    assert last.label == "A-002"
    clock.advance(1)  # 00:00:00 in Tokyo, still 15:00 UTC on the 15th
    assert datetime.fromtimestamp(clock.now(), TOKYO).hour == 0
    assert tokyo_day(clock.now()) == date(2027, 1, 16)
    assert issuer.issue(tokyo_day(clock.now()), last).label == "A-001"


def test_queue_refuses_a_check_in_on_another_day_and_opens_the_next() -> None:
    q = checked_in(1)
    tomorrow = datetime(2027, 1, 16, 0, 0, tzinfo=TOKYO).timestamp()
    with pytest.raises(QueueRequestError, match="open a new day"):
        q.check_in(tomorrow)
    with pytest.raises(QueueRuleError, match="A-001"):
        q.next_day(date(2027, 1, 16))
    q = q.call_next("1", NINE).queue.start("A-001", NINE).queue.done("A-001", NINE + 300).queue
    fresh = q.next_day(date(2027, 1, 16))
    assert fresh.tickets == ()
    assert fresh.service_times == (300.0,)
    assert fresh.check_in(tomorrow).change.ticket.number == "A-001"


def test_a_range_that_runs_out_is_refused() -> None:
    issuer = NumberIssuer("A", NumberRange(1, 2))
    last = issuer.issue(DAY, issuer.issue(DAY, None))
    with pytest.raises(NumbersExhaustedError, match="A-002"):
        issuer.issue(DAY, last)
    with pytest.raises(NumbersExhaustedError, match="outside"):
        NumberIssuer("A", AGENT_NUMBERS).issue(DAY, IssuedNumber("A", 5, DAY))


def test_cloud_and_agent_ranges_are_disjoint_and_fit_three_digits() -> None:
    assert CLOUD_NUMBERS.last < AGENT_NUMBERS.first
    assert AGENT_NUMBERS.last <= 999


@given(
    st.lists(st.booleans(), max_size=400),
    st.integers(0, 3),
)
def test_offline_and_online_numbers_never_collide(from_agent: list[bool], days: int) -> None:
    cloud, agent = NumberIssuer("A", CLOUD_NUMBERS), NumberIssuer("A", AGENT_NUMBERS)
    last: dict[bool, IssuedNumber | None] = {True: None, False: None}
    seen: set[tuple[date, str]] = set()
    for i, by_agent in enumerate(from_agent):
        day = DAY + timedelta(days=min(i * (days + 1) // 100, days))
        issued = (agent if by_agent else cloud).issue(day, last[by_agent])
        last[by_agent] = issued
        key = (issued.day, issued.label)
        assert key not in seen
        seen.add(key)
        check_ticket(issued.label)


# --------------------------------------------------------------------- estimated wait


def test_estimate_without_history_uses_the_default() -> None:
    assert estimate_wait(3, (), rooms_open=1) == 3 * DEFAULT_SERVICE_S


def test_estimate_is_median_times_ahead_over_rooms() -> None:
    assert estimate_wait(4, [300, 600, 900, 6000], rooms_open=2) == 750 * 4 / 2
    assert estimate_wait(0, [300], rooms_open=2) == 0
    assert estimate_wait(2, [300], rooms_open=0) == 600  # no room open: count one


def test_estimate_uses_only_the_recent_service_times() -> None:
    old = [10_000.0] * 50
    assert estimate_wait(1, [*old, *[120.0] * 20], rooms_open=1) == 120.0


def test_queue_estimate_follows_the_department_history() -> None:
    q = checked_in(4)
    assert q.estimated_wait("A-003", NINE + 10) == 2 * DEFAULT_SERVICE_S / 2
    q = q.call_next("1", NINE).queue.start("A-001", NINE).queue.done("A-001", NINE + 240).queue
    assert q.service_times == (240.0,)
    assert q.estimated_wait("A-004", NINE + 300) == 240.0 * 2 / 2
    assert q.estimated_wait("A-001", NINE + 300) == 0.0


# ------------------------------------------------- no ticket lost, duplicated, or stuck


class ClinicMachine(RuleBasedStateMachine):
    """Random staff actions on two departments; every ticket stays in exactly one place."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock(NINE)
        self.queues = {
            "internal": DepartmentQueue("internal", NumberIssuer("A"), ("1", "2"), DAY),
            "xray": DepartmentQueue("xray", NumberIssuer("X"), ("R1",), DAY),
        }
        self.issued: set[str] = set()

    def _tick(self) -> float:
        self.clock.advance(37)
        return self.clock.now()

    @rule(
        dept=st.sampled_from(["internal", "xray"]),
        urgent=st.booleans(),
        appointment=st.booleans(),
    )
    def check_in(self, dept: str, urgent: bool, appointment: bool) -> None:
        now = self._tick()
        appt = now + 600 if appointment else None
        out = self.queues[dept].check_in(now, urgent=urgent, appointment_at=appt)
        assert out.change.ticket.number not in self.issued
        self.issued.add(out.change.ticket.number)
        self.queues[dept] = out.queue

    @rule(
        dept=st.sampled_from(["internal", "xray"]),
        action=st.sampled_from(list(A)),
        pick=st.integers(0, 50),
        to_dept=st.sampled_from([None, "internal", "xray"]),
    )
    def act(self, dept: str, action: A, pick: int, to_dept: str | None) -> None:
        now = self._tick()
        q = self.queues[dept]
        try:
            if action is A.CALL_NEXT:
                out = q.call_next(q.rooms[pick % len(q.rooms)], now)
            elif not q.tickets:
                return
            else:
                number = q.tickets[pick % len(q.tickets)].number
                if action is A.TRANSFER:
                    out = q.transfer(number, now, department=to_dept)
                elif action is A.RECALL:
                    out = q.recall(number, now, room=q.rooms[pick % len(q.rooms)])
                else:
                    method = {A.NO_SHOW: q.no_show, A.SKIP: q.skip, A.START: q.start}
                    out = method.get(action, q.done)(number, now)
        except (IllegalTransitionError, RoomBusyError, NobodyWaitingError):
            return
        except QueueRequestError as exc:
            if "which room" not in str(exc):  # only a skipped-while-waiting recall
                raise
            return
        self.queues[dept] = out.queue
        moved = out.change.moved_out
        if moved is not None:
            self.queues[moved.department] = self.queues[moved.department].admit(moved, now).queue

    @invariant()
    def every_ticket_is_in_exactly_one_queue(self) -> None:
        everywhere = [t.number for q in self.queues.values() for t in q.tickets]
        assert len(everywhere) == len(set(everywhere))
        assert set(everywhere) == self.issued

    @invariant()
    def a_room_holds_at_most_one_ticket(self) -> None:
        for q in self.queues.values():
            rooms = [t.room for t in q.tickets if t.state in (S.CALLED, S.IN_ROOM)]
            assert len(rooms) == len(set(rooms))

    @precondition(lambda self: bool(self.issued))
    @rule()
    def close_the_day(self) -> None:
        """Staff work through everything: each ticket ends in exactly one terminal state."""
        for name, start in self.queues.items():
            now = self._tick()
            q = start
            for t in start.tickets:
                if t.state is S.IN_ROOM:
                    q = q.done(t.number, now).queue
                elif t.state in (S.CALLED, S.SKIPPED):
                    q = q.no_show(t.number, now).queue
            while q.waiting_order(now):
                head = q.waiting_order(now)[0]
                room = head.preferred_room or q.rooms[0]
                q = q.call_next(room, now).queue.start(head.number, now).queue
                q = q.done(head.number, now).queue
            assert all(t.state.terminal for t in q.tickets)
            q.next_day(DAY + timedelta(days=1))  # would refuse an open ticket
            self.queues[name] = q
        terminal = [t.state for q in self.queues.values() for t in q.tickets]
        assert len(terminal) == len(self.issued)


ClinicMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestClinicMachine = ClinicMachine.TestCase
