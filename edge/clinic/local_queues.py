"""The queue rules (:mod:`protocol.queue_rules`) applied to the clinic state the agent
runs while the internet is down. Pure: no I/O, no clock; the desk passes ``now`` in.

The check-in window is the cloud's rule (:mod:`protocol.checkin_window`), with the
cloud's ``checkin_opens_before_s`` from the clinic state (30 minutes unless the cloud says
otherwise); the desk applies it to :func:`appointments_of`.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from protocol import clinic_sync
from protocol.clinic_sync import ticket_message
from protocol.messages import (
    ClinicActionData,
    ClinicAppointment,
    ClinicStateData,
)
from protocol.queue_rules import (
    AGENT_NUMBERS,
    DepartmentQueue,
    Outcome,
)

SERVICE_TIMES_KEPT = 100  # ClinicDepartment.service_times holds at most this many


def apply_action(queue: DepartmentQueue, data: ClinicActionData, now: float) -> Outcome:
    """One staff action from the local page (the request was validated by its model)."""
    return clinic_sync.apply_action(
        queue,
        data.action,
        now,
        number=data.number,
        room=data.room,
        to_department=data.to_department,
        to_room=data.to_room,
    )


def appointments_of(state: ClinicStateData, tag: str | None) -> list[ClinicAppointment]:
    """The card's appointments today not yet checked in, in a department the site has
    (as the cloud counts them), earliest first."""
    if tag is None:
        return []
    mine = (
        a
        for a in state.appointments
        if a.card_tag == tag and state.department(a.department) is not None
    )
    return sorted(mine, key=lambda a: a.at)


def with_queues(
    base: ClinicStateData,
    queues: Mapping[str, DepartmentQueue],
    appointments: list[ClinicAppointment],
) -> ClinicStateData:
    """``base`` with the tickets, numbers and service times of ``queues``."""
    departments = []
    for department in base.departments:
        queue = queues.get(department.id)
        if queue is None:
            departments.append(department)
            continue
        last = queue.last_number
        local_last = department.last_local_number
        if last is not None and AGENT_NUMBERS.first <= last.value <= AGENT_NUMBERS.last:
            local_last = max(last.value, local_last or 0)
        departments.append(
            department.model_copy(
                update={
                    "service_times": list(queue.service_times)[-SERVICE_TIMES_KEPT:],
                    "last_local_number": local_last,
                }
            )
        )
    tickets = [ticket_message(t) for q in queues.values() for t in q.tickets]
    return base.model_copy(
        update={
            "departments": departments,
            "tickets": tickets,
            "appointments": appointments,
            "results": [],
        }
    )


def next_day(state: ClinicStateData, today: str) -> ClinicStateData:
    """The site as it stands, for a new day: no tickets, appointments, results or card key
    of yesterday (a fresh random key tags the cards tapped while offline)."""
    departments = [
        d.model_copy(update={"last_number": None, "last_local_number": None})
        for d in state.departments
    ]
    return state.model_copy(
        update={
            "day": today,
            "card_key": secrets.token_hex(32),
            "departments": departments,
            "tickets": [],
            "appointments": [],
            "results": [],
        }
    )
