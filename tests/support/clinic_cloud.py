"""Plays the cloud's clinic side for the agent's tests, over a real broker.

It publishes ``clinic_state`` and ``display_state`` retained on the gateway's topics and
reads the agent's ``events`` (a persistent MQTT session, so nothing published while it was
away is lost), recording every delivery, duplicates included. While ``answering`` it
applies each event once (by envelope id) with the real queue rules
(:mod:`protocol.queue_rules`), answers requests in ``results``, moves ``applied_through``
and publishes the new states; with ``answering`` off it only records, and the test applies
when it chooses (:meth:`ClinicCloud.apply`). The real service is ``cloud.clinic``; this is
only the contract's other end, small enough to read in one go.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from protocol import messages, topics
from protocol.clinic_sync import (
    apply_action,
    department_queue,
    display_contents,
    ticket_message,
)
from protocol.clock import Clock
from protocol.messages import (
    CheckinData,
    ClinicActionData,
    ClinicAppointment,
    ClinicDepartment,
    ClinicDisplay,
    ClinicResult,
    ClinicStateData,
    DisplayAnnouncement,
    DisplayContent,
    DisplayStateData,
    MessageType,
)
from protocol.patient_card import PatientCardNumber, card_tag
from protocol.queue_rules import (
    AGENT_NUMBERS,
    DepartmentQueue,
    Outcome,
    QueueError,
    QueueTicket,
    tokyo_day,
)
from tests.support.mosquitto import Mosquitto

ANNOUNCEMENT = "番号でお呼びします"


@dataclass(frozen=True)
class Received:
    """One delivery of an agent event."""

    id: str
    data: CheckinData | ClinicActionData


@dataclass(frozen=True)
class Appointment:
    card: PatientCardNumber
    department: str
    at: int


@dataclass
class ClinicCloud:
    broker: Mosquitto
    site: str
    gateway: str
    clock: Clock
    departments: list[ClinicDepartment]
    displays: list[ClinicDisplay]
    walk_in_department: str
    card_key: bytes
    appointments: list[Appointment] = field(default_factory=list)
    answering: bool = True
    received: list[Received] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    results: list[ClinicResult] = field(default_factory=list)
    applied_through: str | None = None
    version: int = 0
    display_version: int = 0
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    queues: dict[str, DepartmentQueue] = field(default_factory=dict)
    _cards: dict[str, str] = field(default_factory=dict)  # card digits -> ticket number
    _client: aiomqtt.Client | None = None
    _task: asyncio.Task[None] | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> ClinicCloud:
        day = tokyo_day(self.clock.now())
        self.queues = {d.id: department_queue(d, [], day) for d in self.departments}
        self._task = asyncio.create_task(self._run(), name="clinic-cloud")
        await asyncio.wait_for(self.connected.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    # ------------------------------------------------------------ what the test reads

    def events(self) -> list[Received]:
        return list(self.received)

    async def wait_for_events(self, n: int, limit_s: float = 10) -> list[Received]:
        """Until ``n`` deliveries have arrived (more may follow)."""

        async def enough() -> None:
            while len(self.received) < n:
                self._arrived.clear()
                await self._arrived.wait()

        try:
            await asyncio.wait_for(enough(), limit_s)
        except TimeoutError:
            raise AssertionError(
                f"the cloud got {len(self.received)} events, not {n}, within {limit_s}s"
            ) from None
        return self.events()

    def numbers(self, department: str) -> list[str]:
        return [t.number for t in self.queues[department].tickets]

    # ------------------------------------------------------------ what the test does

    def walk_in(self, department: str) -> QueueTicket:
        """An app check-in the cloud took itself."""
        outcome = self.queues[department].check_in(self.clock.now())
        self.queues[department] = outcome.queue
        return outcome.change.ticket

    async def apply(self, upto: str | None = None) -> None:
        """Apply the received events not applied yet (up to ``upto``), then publish."""
        for event in self.received:
            if event.id in self.applied:
                continue
            self._apply(event)
            self.applied.append(event.id)
            if self.applied_through is None or event.id > self.applied_through:
                self.applied_through = event.id
            if event.id == upto:
                break
        await self.publish()

    async def publish(self) -> None:
        """The clinic state and the display state, retained, each with a new version."""
        now = self.clock.now()
        self.version += 1
        self.display_version += 1
        key = self.card_key
        checked_in = set(self._cards)
        state = ClinicStateData(
            version=self.version,
            day=tokyo_day(now).isoformat(),
            card_key=key.hex(),
            walk_in_department=self.walk_in_department,
            departments=[self._department(d) for d in self.departments],
            tickets=[ticket_message(t) for q in self.queues.values() for t in q.tickets],
            appointments=[
                ClinicAppointment(card_tag=card_tag(key, a.card), department=a.department, at=a.at)
                for a in self.appointments
                if a.card.digits not in checked_in
            ],
            displays=self.displays,
            results=self.results[-50:],
            applied_through=self.applied_through,
        )
        base = DisplayStateData(
            version=1,
            displays=[
                DisplayContent(
                    display_id=d.display_id,
                    announcement=DisplayAnnouncement(text=ANNOUNCEMENT),
                    brightness=80,
                )
                for d in self.displays
            ],
        )
        display = DisplayStateData(
            version=self.display_version,
            displays=display_contents(self.queues, self.displays, now, base=base),
        )
        await self._publish(
            topics.clinic(self.site, self.gateway),
            messages.make(MessageType.CLINIC_STATE, state, ts=now),
        )
        await self._publish(
            topics.display(self.site, self.gateway),
            messages.make(MessageType.DISPLAY_STATE, display, ts=now),
        )

    # ------------------------------------------------------------ the rules

    def _department(self, department: ClinicDepartment) -> ClinicDepartment:
        queue = self.queues[department.id]
        values = [int(t.number.rsplit("-", 1)[1]) for t in queue.tickets]
        local = [v for v in values if v >= AGENT_NUMBERS.first]
        return department.model_copy(
            update={
                "last_number": queue.last_number.value if queue.last_number else None,
                "last_local_number": max(local) if local else None,
                "service_times": list(queue.service_times),
            }
        )

    def _apply(self, event: Received) -> None:
        data, now = event.data, self.clock.now()
        if isinstance(data, CheckinData):
            if data.local is not None:
                ticket = QueueTicket(
                    number=data.local.number,
                    department=data.local.department,
                    queued_at=data.at,
                    appointment_at=data.local.appointment_at,
                )
                queue = self.queues[ticket.department]
                self.queues[ticket.department] = queue.admit(ticket, now).queue
                if data.card is not None:
                    self._cards[data.card] = ticket.number
                return
            self.results.append(self._check_in(event.id, data, now))
            return
        try:
            outcome = _act(self.queues[data.department], data, now)
        except QueueError as exc:
            self.results.append(ClinicResult(request_id=event.id, ok=False, error=str(exc)))
            return
        self.queues[data.department] = outcome.queue
        moved = outcome.change.moved_out
        if moved is not None:
            self.queues[moved.department] = self.queues[moved.department].admit(moved, now).queue
        ticket = outcome.change.ticket
        if not data.local:
            self.results.append(
                ClinicResult(
                    request_id=event.id,
                    ok=True,
                    number=ticket.number,
                    department=ticket.department,
                )
            )

    def _check_in(self, request_id: str, data: CheckinData, now: float) -> ClinicResult:
        assert data.card is not None
        held = self._cards.get(data.card)
        if held is not None:  # a second tap gives the same open ticket back
            for queue in self.queues.values():
                for t in queue.tickets:
                    if t.number == held and not t.state.terminal:
                        return ClinicResult(
                            request_id=request_id,
                            ok=True,
                            number=t.number,
                            department=t.department,
                            estimated_wait_s=queue.estimated_wait(t.number, now),
                        )
        department = data.department or self.walk_in_department
        appointment_at = None
        for a in self.appointments:
            if a.card.digits == data.card and now >= a.at - 30 * 60:
                department, appointment_at = a.department, a.at
        queue = self.queues[department]
        outcome = queue.check_in(now, appointment_at=appointment_at)
        self.queues[department] = outcome.queue
        ticket = outcome.change.ticket
        self._cards[data.card] = ticket.number
        return ClinicResult(
            request_id=request_id,
            ok=True,
            number=ticket.number,
            department=department,
            estimated_wait_s=outcome.queue.estimated_wait(ticket.number, now),
        )

    # ------------------------------------------------------------ the wire

    async def _publish(self, topic: str, payload: bytes) -> None:
        while True:
            await self.connected.wait()
            client = self._client
            assert client is not None
            try:
                await client.publish(topic, payload, qos=1, retain=True)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.05)
            else:
                return

    async def _run(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        while True:
            try:
                async with aiomqtt.Client(
                    self.broker.host,
                    self.broker.port,
                    identifier=f"cloud-{self.site}",
                    protocol=aiomqtt.ProtocolVersion.V5,
                    clean_start=False,
                    properties=props,
                ) as client:
                    await client.subscribe(topics.events(self.site, self.gateway), qos=1)
                    self._client = client
                    self.connected.set()
                    async for message in client.messages:
                        await self._on_event(message.payload)
            except aiomqtt.MqttError:
                pass
            self._client = None
            self.connected.clear()
            await asyncio.sleep(0.05)

    async def _on_event(self, payload: object) -> None:
        assert isinstance(payload, bytes | bytearray)
        envelope, data = messages.parse(payload)
        assert isinstance(data, CheckinData | ClinicActionData), data
        self.received.append(Received(envelope.id, data))
        self._arrived.set()
        if self.answering:
            await self.apply()


def _act(queue: DepartmentQueue, data: ClinicActionData, now: float) -> Outcome:
    return apply_action(
        queue,
        data.action,
        now,
        number=data.number,
        room=data.room,
        to_department=data.to_department,
        to_room=data.to_room,
    )
