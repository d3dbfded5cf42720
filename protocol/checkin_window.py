"""When a patient may check in for an appointment: one rule, applied by the cloud
(:mod:`cloud.clinic.checkin`) and by the agent while it runs the queues offline
(:mod:`edge.clinic.local_run`). Pure: ``now`` is passed in; each caller words its own
message.

The candidates are the patient's appointments at the site today (Asia/Tokyo) that are not
cancelled, not checked in, and in a department the site has. An appointment opens for
check-in ``opens_before_s`` before its time (the cloud's ``clinic_checkin_opens_s``,
30 minutes, sent to the agent in the clinic state) and stays open for the rest of the day:
a late patient still checks in for it, and the queue's tolerance orders them.

    ==============================================  =========================================
    candidates at ``now``                           verdict
    ==============================================  =========================================
    none                                            :class:`WalkIn`: a walk-in ticket, in
                                                    the department asked for or the clinic's
                                                    walk-in department
    one or more with ``now >= at - opens_before_s``  :class:`Open`: the earliest of them (by
                                                    ``at``, ties in the order given); its
                                                    department and time go on the ticket
    every one later than that                       :class:`TooEarly`: refused; names the
                                                    earliest and ``opens_at``, its ``at -
                                                    opens_before_s``
    ==============================================  =========================================

The boundary is inclusive: at exactly ``at - opens_before_s`` the appointment is open.
There is no rule on the department's hours: a walk-in is taken whenever the site's day is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class Scheduled(Protocol):
    """An appointment as the rule sees it: its time, UTC epoch seconds."""

    @property
    def at(self) -> int: ...


A = TypeVar("A", bound=Scheduled)


@dataclass(frozen=True, slots=True)
class Open(Generic[A]):
    """Check in for ``appointment`` now."""

    appointment: A


@dataclass(frozen=True, slots=True)
class TooEarly(Generic[A]):
    """Every candidate is later than its window: ``appointment`` (the earliest) opens at
    ``opens_at``."""

    appointment: A
    opens_at: int


@dataclass(frozen=True, slots=True)
class WalkIn:
    """No appointment to check in for: a walk-in ticket."""


def checkin_window(
    appointments: Sequence[A], now: float, opens_before_s: int
) -> Open[A] | TooEarly[A] | WalkIn:
    """The module's rule table for the candidate ``appointments`` at ``now``."""
    if not appointments:
        return WalkIn()
    earliest_first = sorted(appointments, key=lambda a: a.at)
    for appointment in earliest_first:
        if now >= appointment.at - opens_before_s:
            return Open(appointment)
    first = earliest_first[0]
    return TooEarly(first, first.at - opens_before_s)


__all__ = ["Open", "Scheduled", "TooEarly", "WalkIn", "checkin_window"]
