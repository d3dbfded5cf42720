"""What the clinic desk knows of the day, shared by its parts (:mod:`edge.clinic.desk`):
the cloud's last ``clinic_state``, the agent's own while it runs the queues, the queues
built from them, the link, and the ids of the events it made."""

from __future__ import annotations

from edge.clinic.day_store import DayStore
from edge.clinic.outcome import ActionResult, Running
from protocol.clinic_sync import agent_queues
from protocol.clock import Clock
from protocol.ids import uuid7
from protocol.messages import ClinicStateData
from protocol.patient_card import PatientCardNumber, card_tag
from protocol.queue_rules import DepartmentQueue, QueueTicket, tokyo_day


class DeskState:
    """The desk's day in memory (its durable half is the :class:`DayStore`). Only the
    desk's parts read and write it; see :mod:`edge.clinic.desk` for the rules."""

    def __init__(self, store: DayStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.connected = False
        self.state: ClinicStateData | None = None  # the cloud's
        self.synthetic = False  # ``state`` is a midnight skeleton, not the cloud's
        self.local: ClinicStateData | None = None  # the agent's, while it runs the queues
        self.queues: dict[str, DepartmentQueue] | None = None
        self.last_local_event: str | None = None
        self.last_event: str | None = None
        self.day: str | None = None  # the Tokyo day the stored day's data belongs to

    @property
    def running(self) -> Running:
        return Running.AGENT if self.local is not None or not self.connected else Running.CLOUD

    def today(self) -> str:
        return tokyo_day(self.clock.now()).isoformat()

    def base(self) -> ClinicStateData | None:
        return self.local if self.local is not None else self.state

    def writable_queues(self) -> dict[str, DepartmentQueue]:
        if self.queues is None:
            base = self.base()
            self.queues = {} if base is None else agent_queues(base)
        return self.queues

    def read_queues(self) -> dict[str, DepartmentQueue]:
        if self.local is not None:
            return self.writable_queues()
        return {} if self.state is None else agent_queues(self.state)

    def find_ticket(self, number: str) -> QueueTicket | None:
        for queue in self.read_queues().values():
            for ticket in queue.tickets:
                if ticket.number == number:
                    return ticket
        return None

    def tag(self, card: PatientCardNumber) -> str | None:
        base = self.base()
        if base is None:
            return None
        return card_tag(bytes.fromhex(base.card_key), card)

    def new_id(self) -> str:
        """A UUIDv7 later than every id made before, here or before a restart."""
        ms = int(self.clock.now() * 1000)
        if self.last_event is not None:
            ms = max(ms, int(self.last_event.replace("-", "")[:12], 16) + 1)
        new = uuid7(ms)
        self.store.set_last_event(new)
        self.last_event = new
        return new

    def department_name(self, department_id: str | None) -> str | None:
        base = self.base()
        department = (
            None if base is None or department_id is None else base.department(department_id)
        )
        return department.name if department is not None else department_id

    def ticket_result(
        self,
        ticket: QueueTicket,
        by: Running,
        now: float,
        message: str,
        *,
        queue: DepartmentQueue | None = None,
    ) -> ActionResult:
        queue = queue or self.read_queues().get(ticket.department)
        wait = None if queue is None else queue.estimated_wait(ticket.number, now)
        return ActionResult(
            ok=True,
            by=by,
            number=ticket.number,
            department=ticket.department,
            estimated_wait_s=wait,
            message=message,
        )


__all__ = ["DeskState"]
