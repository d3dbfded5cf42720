"""Pull a lock's events into the outbox, and acknowledge them only once they are stored.

Events go into the outbox (committed, fsynced) *before* the lock is told ACK_EVENTS, so a
crash between the two makes the lock send them again and the outbox's dedupe key drops
the copy. That key names the event's boot as well as its seq: a lock that restarted counts
from 1 again, and its new events must not be taken for ones delivered before.
"""

from __future__ import annotations

import logging

from edge.devices.slot_loader import Request
from edge.errors import OutboxError, StoreError
from edge.outbox import Outbox
from protocol import messages, topics
from protocol.clock import Clock
from protocol.lock_wire import (
    MAX_EVENTS_PER_FRAME,
    FrameType,
    WireEvent,
    decode_events,
    encode_u32,
)
from protocol.messages import LockEventData, LockEventKind, MessageType

log = logging.getLogger(__name__)

MAX_EVENT_ROUNDS = 64  # GET_EVENTS rounds per drain, so a chatty lock cannot starve syncs


class EventDrain:
    """Moves one lock's events to the outbox over whatever ``request`` it is handed."""

    def __init__(
        self, lock_id: str, *, site: str, gateway: str, outbox: Outbox, clock: Clock
    ) -> None:
        self.lock_id = lock_id
        self.site = site
        self.gateway = gateway
        self.outbox = outbox
        self.clock = clock

    async def drain(self, request: Request) -> None:
        """Fetch, store and acknowledge events until the lock has none left."""
        for _ in range(MAX_EVENT_ROUNDS):
            reply = await request(
                FrameType.GET_EVENTS, bytes([MAX_EVENTS_PER_FRAME]), FrameType.EVENTS
            )
            events = decode_events(reply.payload)
            if not events:
                return
            try:
                for event in events:
                    self._queue(event)
            except (OutboxError, StoreError) as exc:
                # not acknowledged: the lock keeps the events and we try again next poll
                log.error(  # noqa: TRY400 - expected failure, no traceback
                    "lock %s: could not store events, not acknowledging: %s", self.lock_id, exc
                )
                return
            last = max(e.seq for e in events)
            await request(FrameType.ACK_EVENTS, encode_u32(last), FrameType.ACK)

    def _queue(self, event: WireEvent) -> None:
        now = self.clock.now()
        data = LockEventData(
            lock_id=self.lock_id,
            seq=event.seq,
            boot=event.boot,
            lock_ts=event.ts,
            kind=event.kind,
            slot=event.slot,
            grant_id=event.grant_id,
            value=event.value,
        )
        stored = self.outbox.add(
            topics.events(self.site, self.gateway),
            messages.make(MessageType.LOCK_EVENT, data, ts=now),
            f"event:{self.lock_id}:{event.boot}:{event.seq}",
            now=now,
        )
        if not stored:
            return
        if event.kind is LockEventKind.FRAMES_REFUSED:  # someone at the lock's wires or radio
            log.warning(
                "lock %s refused %d frame(s) not from us (forged, replayed or another key); "
                "the fleet raises a tamper alert",
                self.lock_id,
                event.value,
            )
        else:
            log.info("lock %s: event %d %s queued", self.lock_id, event.seq, event.kind.value)
