"""The handover between the cloud and the agent.

**Taking over.** When the link goes down, every open request the broker has not
acknowledged is withdrawn from the outbox (:meth:`edge.outbox.Outbox.withdraw`, atomic
with the publisher's delete) and done here; one the broker has stays the cloud's to
answer, and whoever waits for it is told it is pending.

**Handing back.** The agent keeps running the queues until a ``clinic_state`` arrives
whose ``applied_through`` covers its last local event (event ids are UUIDv7, made
strictly increasing, so they compare in time order); then it drops its queues and the
displays follow the cloud's display state again.
"""

from __future__ import annotations

import logging

from edge.clinic.day_store import DayStore, OpenRequest
from edge.clinic.desk_state import DeskState
from edge.clinic.in_flight import PendingAnswers
from edge.clinic.kiosk_screens import SENT, SHORTLY
from edge.clinic.local_display import LocalDisplays
from edge.clinic.local_run import LocalRun
from edge.clinic.outcome import ActionResult, Running
from edge.errors import OutboxError
from edge.outbox import Outbox
from protocol import messages
from protocol.clock import Clock
from protocol.errors import MessageError
from protocol.messages import CheckinData, ClinicActionData, ClinicStateData
from protocol.patient_card import CardNumberError, PatientCardNumber

log = logging.getLogger(__name__)


class Handover:
    """Who takes the open requests when the link drops, and when the cloud takes back."""

    def __init__(
        self,
        *,
        store: DayStore,
        outbox: Outbox,
        clock: Clock,
        state: DeskState,
        pending: PendingAnswers,
        local_run: LocalRun,
        displays: LocalDisplays,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.clock = clock
        self.state = state
        self.pending = pending
        self.local_run = local_run
        self.displays = displays

    def take_back_open_requests(self) -> None:
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
                self.pending.resolve(
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
            tag = None if card is None else self.state.tag(card)
            if tag is not None:
                self.store.forget_card(tag)
            _, result = self.local_run.check_in(data.kiosk, data.department, card, tag, now)
            log.info(
                "kiosk %s: request %s never reached the broker; checked in here instead",
                data.kiosk,
                request.request_id,
            )
        elif isinstance(data, ClinicActionData):
            result = self.local_run.act(data.model_copy(update={"at": int(now)}), now)
        else:
            return
        self.pending.resolve(request.request_id, result)

    def covered(self, state: ClinicStateData) -> bool:
        """Whether the cloud's ``state`` has applied the agent's last local event."""
        last = self.state.last_local_event
        return last is None or (state.applied_through is not None and state.applied_through >= last)

    def hand_back(self) -> None:
        with self.store.transaction():
            self.store.set_local(None, None)
        last = self.state.last_local_event
        self.state.local, self.state.queues, self.state.last_local_event = None, None, None
        self.displays.forget_local()
        log.info(
            "the cloud has applied every local event (up to %s): it runs the queues again", last
        )
        self.displays.tell()


__all__ = ["Handover"]
