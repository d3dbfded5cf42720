"""Between the queue rules and the wire: a clinic's day as a message, and back, and what its
call-number displays show. Pure; used by the cloud (which publishes ``clinic_state`` and
``display_state``) and by the agent (which runs the same queues while the internet is down
and drives the displays from them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date

from protocol import display_wire as dw
from protocol.messages import (
    ClinicAction,
    ClinicDepartment,
    ClinicDisplay,
    ClinicStateData,
    ClinicTicket,
    ClinicTicketState,
    DisplayContent,
    DisplayRoomCall,
    DisplayStateData,
)
from protocol.queue_rules import (
    AGENT_NUMBERS,
    CLOUD_NUMBERS,
    NEXT_SHOWN,
    DepartmentQueue,
    IssuedNumber,
    NumberIssuer,
    NumberRange,
    Outcome,
    QueueRequestError,
    QueueTicket,
    TicketState,
)


def ticket_message(ticket: QueueTicket) -> ClinicTicket:
    return ClinicTicket(
        number=ticket.number,
        department=ticket.department,
        state=ClinicTicketState(ticket.state.value),
        queued_at=ticket.queued_at,
        urgent=ticket.urgent,
        appointment_at=ticket.appointment_at,
        preferred_room=ticket.preferred_room,
        room=ticket.room,
        call_seq=ticket.call_seq,
        called_at=ticket.called_at,
        started_at=ticket.started_at,
        finished_at=ticket.finished_at,
    )


def queue_ticket(ticket: ClinicTicket) -> QueueTicket:
    return QueueTicket(
        number=ticket.number,
        department=ticket.department,
        queued_at=ticket.queued_at,
        urgent=ticket.urgent,
        appointment_at=ticket.appointment_at,
        preferred_room=ticket.preferred_room,
        state=TicketState(ticket.state.value),
        room=ticket.room,
        call_seq=ticket.call_seq,
        called_at=ticket.called_at,
        started_at=ticket.started_at,
        finished_at=ticket.finished_at,
    )


def apply_action(
    queue: DepartmentQueue,
    action: ClinicAction,
    now: float,
    *,
    number: str | None = None,
    room: str | None = None,
    to_department: str | None = None,
    to_room: str | None = None,
) -> Outcome:
    """One staff action on a department's queue: the one dispatch from the wire's action
    names to the queue rules, for the cloud, the agent offline and the tests' stand-in."""
    if action is ClinicAction.CALL_NEXT:
        if room is None:
            raise QueueRequestError("say which room calls the next patient")
        return queue.call_next(room, now)
    if number is None:
        raise QueueRequestError(f"{action.value} needs a ticket number")
    match action:
        case ClinicAction.CALL:
            if room is None:
                raise QueueRequestError(f"say which room calls {number}")
            return queue.call(number, room, now)
        case ClinicAction.RECALL:
            return queue.recall(number, now, room=room)
        case ClinicAction.START:
            return queue.start(number, now)
        case ClinicAction.DONE:
            return queue.done(number, now)
        case ClinicAction.NO_SHOW:
            return queue.no_show(number, now)
        case ClinicAction.SKIP:
            return queue.skip(number, now)
        case ClinicAction.TRANSFER:
            return queue.transfer(number, now, room=to_room, department=to_department)
    raise QueueRequestError(f"{action.value} is not an action on a ticket")


def number_value(label: str) -> int:
    """``A-023`` → 23."""
    return int(label.rsplit("-", 1)[-1])


def department_queue(
    department: ClinicDepartment,
    tickets: Iterable[ClinicTicket],
    day: date,
    *,
    numbers: NumberRange = CLOUD_NUMBERS,
) -> DepartmentQueue:
    """The department's queue as the message describes it, issuing from ``numbers``.

    The last issued number is the highest one of ``numbers``'s range the state knows (from
    its tickets and ``last_number`` / ``last_local_number``), so an agent that restarts
    offline never issues a number twice.
    """
    own = [t for t in tickets if t.department == department.id]
    known = [number_value(t.number) for t in own]
    known += [n for n in (department.last_number, department.last_local_number) if n]
    in_range = [n for n in known if numbers.first <= n <= numbers.last]
    last = IssuedNumber(department.prefix, max(in_range), day) if in_range else None
    return DepartmentQueue(
        department=department.id,
        issuer=NumberIssuer(department.prefix, numbers),
        rooms=tuple(department.rooms),
        day=day,
        tickets=tuple(queue_ticket(t) for t in own),
        last_number=last,
        service_times=tuple(department.service_times),
        tolerance=department.tolerance_s,
        default_service=department.default_service_s,
    )


def agent_queues(state: ClinicStateData) -> dict[str, DepartmentQueue]:
    """Every department's queue as the agent runs it offline (numbers 700-999)."""
    day = date.fromisoformat(state.day)
    return {
        d.id: department_queue(d, state.tickets, day, numbers=AGENT_NUMBERS)
        for d in state.departments
    }


def display_contents(
    queues: Mapping[str, DepartmentQueue],
    displays: Sequence[ClinicDisplay],
    now: float,
    *,
    base: DisplayStateData | None = None,
) -> list[DisplayContent]:
    """What each display shows: the calls of its departments' rooms and their next numbers.

    ``base`` keeps each display's announcement, brightness and standby schedule (the agent
    passes the last state the cloud sent); only the calls and next numbers come from the
    queues. Numbers only, never names.
    """
    out = []
    for display in displays:
        calls: list[DisplayRoomCall] = []
        upcoming: list[str] = []
        for department_id in display.departments:
            queue = queues.get(department_id)
            if queue is None:
                continue
            shown = queue.display(now)
            calls += [
                DisplayRoomCall(room=c.room, number=c.number, call_seq=c.call_seq)
                for c in shown.calls
            ]
            upcoming += list(shown.next_numbers[:NEXT_SHOWN])
        previous = base.content(display.display_id) if base is not None else None
        content = DisplayContent(
            display_id=display.display_id,
            rooms=calls[: dw.MAX_ROOMS],
            next_numbers=upcoming[: dw.MAX_NEXT],
        )
        if previous is not None:
            content = previous.model_copy(
                update={"rooms": content.rooms, "next_numbers": content.next_numbers}
            )
        out.append(content)
    return out
