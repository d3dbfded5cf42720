"""One simulated site gateway with its locks and displays, sans-IO: it takes the payloads
the cloud sends (access snapshot, display state) and returns the payloads the real agent
would publish (birth and will, telemetry, lock events, ``access/applied``).

The locks are a small model, not :class:`firmware_sim.lock.firmware.LockFirmware`: a
sequence counter, a battery that drains with time and with every opening, the grants of
the snapshot it holds, the door. That is what the contract carries, in a few hundred bytes
per lock instead of a PIN check with keys and slots (5,000 gateways must fit one process).
Every payload is built with :func:`protocol.messages.make`, so it is the contract's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol import messages, topics
from protocol.errors import MessageError
from protocol.messages import (
    AccessAppliedData,
    AccessSnapshotData,
    DisplayStateData,
    DisplayTelemetry,
    GatewayState,
    LockEventData,
    LockEventKind,
    LockTelemetry,
    MessageType,
    StatusData,
    SyncReason,
    TelemetryData,
)

AGENT_VERSION = "fleet-sim-1"
LOCK_FIRMWARE = "sim-lock-1.0"
DISPLAY_FIRMWARE = "sim-display-1.0"
BATTERY_DRAIN_PER_DAY = 0.25  # percent: a keypad lock's batteries last about a year
BATTERY_PER_OPENING = 0.005  # percent per unlock/relock cycle (the motor)
# what a door does when a citizen opens it with a PIN, in order; a lock cycles through it
OPENING = (
    LockEventKind.UNLOCKED,
    LockEventKind.DOOR_OPENED,
    LockEventKind.DOOR_CLOSED,
    LockEventKind.RELOCKED,
)


def site_name(prefix: str, index: int) -> str:
    """The site slug of gateway ``index`` (from 1) of a fleet: ``{prefix}-00042``."""
    return f"{prefix}-{index:05d}"


def lock_name(site: str, index: int) -> str:
    """The lock id of lock ``index`` (from 1) of ``site``."""
    return f"{site}-l{index}"


def display_name(site: str, index: int) -> str:
    """The display id of display ``index`` (from 1) of ``site``."""
    return f"{site}-d{index}"


@dataclass(slots=True)
class SimLock:
    """What a lock reports: its own event numbering, battery, door, the grants it holds."""

    lock_id: str
    battery_start: float = 100.0  # percent when the simulation started
    seq: int = 0  # the last event number; events go out from 1
    openings: int = 0
    door_open: bool = False
    version: int = 0  # the access snapshot version it holds
    grant_ids: tuple[str, ...] = ()

    def battery_pct(self, elapsed_s: float) -> int:
        """Battery now, ``elapsed_s`` after the simulation started."""
        drained = elapsed_s / 86400 * BATTERY_DRAIN_PER_DAY + self.openings * BATTERY_PER_OPENING
        return max(0, min(100, round(self.battery_start - drained)))

    def next_event(self, lock_ts: int) -> LockEventData:
        """The lock's next event: a step of a door opening, numbered with its own seq."""
        kind = OPENING[self.seq % len(OPENING)]
        self.seq += 1
        if kind is LockEventKind.UNLOCKED:
            self.openings += 1
        elif kind is LockEventKind.DOOR_OPENED:
            self.door_open = True
        elif kind is LockEventKind.DOOR_CLOSED:
            self.door_open = False
        grant = self.grant_ids[0] if self.grant_ids and kind is LockEventKind.UNLOCKED else None
        return LockEventData(
            lock_id=self.lock_id,
            seq=self.seq,
            lock_ts=lock_ts,
            kind=kind,
            slot=0 if grant is not None else None,
            grant_id=grant,
        )


@dataclass(slots=True)
class SimDisplay:
    display_id: str
    shown_version: int | None = None


@dataclass(slots=True)
class SimGateway:
    """One site's agent as the cloud sees it; see the module docstring."""

    site: str
    gateway: str
    locks: tuple[SimLock, ...]
    displays: tuple[SimDisplay, ...] = ()
    started_at: float = 0.0  # epoch seconds
    access_version: int = 0
    access_taken_at: float | None = None  # monotonic time it took ``access_version``
    snapshots_taken: int = 0
    malformed: int = 0
    next_lock: int = 0  # whose turn it is to report an event
    topic_status: str = field(default="", repr=False)
    topic_telemetry: str = field(default="", repr=False)
    topic_events: str = field(default="", repr=False)
    topic_access: str = field(default="", repr=False)
    topic_applied: str = field(default="", repr=False)
    topic_display: str = field(default="", repr=False)

    @classmethod
    def create(
        cls,
        site: str,
        gateway: str,
        *,
        locks: int,
        displays: int = 0,
        started_at: float,
        battery_start: float = 100.0,
    ) -> SimGateway:
        """A gateway with ``locks`` locks and ``displays`` displays named after ``site``."""
        return cls(
            site,
            gateway,
            tuple(SimLock(lock_name(site, i), battery_start) for i in range(1, locks + 1)),
            tuple(SimDisplay(display_name(site, i)) for i in range(1, displays + 1)),
            started_at,
            topic_status=topics.status(site, gateway),
            topic_telemetry=topics.telemetry(site, gateway),
            topic_events=topics.events(site, gateway),
            topic_access=topics.access(site, gateway),
            topic_applied=topics.access_applied(site, gateway),
            topic_display=topics.display(site, gateway),
        )

    @property
    def client_id(self) -> str:
        """The MQTT client id, as the real agent forms it."""
        return f"{self.site}-{self.gateway}"

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """The topics it subscribes to (QoS 1): access, and display at a clinic."""
        if self.displays:
            return (self.topic_access, self.topic_display)
        return (self.topic_access,)

    # ------------------------------------------------------------ up

    def status(self, state: GatewayState, now: float) -> bytes:
        """Birth (``online``) or last will (``offline``), retained."""
        data = StatusData(
            state=state, agent_version=AGENT_VERSION, locks=[lock.lock_id for lock in self.locks]
        )
        return messages.make(MessageType.STATUS, data, ts=now)

    def telemetry(self, now: float, uptime_s: float, outbox_depth: int) -> bytes:
        """The periodic health report: every lock and display."""
        elapsed = max(now - self.started_at, 0.0)
        data = TelemetryData(
            uptime_s=max(uptime_s, 0.0),
            outbox_depth=outbox_depth,
            frames_dropped=0,
            time_trusted=True,
            locks=[
                LockTelemetry(
                    lock_id=lock.lock_id,
                    reachable=True,
                    battery_pct=lock.battery_pct(elapsed),
                    clock_offset_s=0.0,
                    door_open=lock.door_open,
                    locked_out=False,
                    firmware=LOCK_FIRMWARE,
                )
                for lock in self.locks
            ],
            displays=[
                DisplayTelemetry(
                    display_id=d.display_id,
                    reachable=True,
                    firmware=DISPLAY_FIRMWARE,
                    shown_version=d.shown_version,
                )
                for d in self.displays
            ],
        )
        return messages.make(MessageType.TELEMETRY, data, ts=now)

    def lock_events(self, count: int, now: float) -> list[bytes]:
        """``count`` lock events, round-robin over the locks, each with its lock's seq."""
        out = []
        for _ in range(count):
            lock = self.locks[self.next_lock % len(self.locks)]
            self.next_lock += 1
            event = lock.next_event(int(now))
            out.append(messages.make(MessageType.LOCK_EVENT, event, ts=now))
        return out

    # ------------------------------------------------------------ down

    def take_access(self, payload: bytes, now: float, monotonic: float) -> list[bytes]:
        """Take a snapshot if it is newer than the one held; returns the
        ``access/applied`` report of every lock (empty: ignored, like the agent does)."""
        if not payload:
            return []  # an empty retained message clears the topic
        try:
            _env, data = messages.parse(payload)
        except MessageError:
            self.malformed += 1
            return []
        if not isinstance(data, AccessSnapshotData) or data.version <= self.access_version:
            return []
        self.access_version = data.version
        self.access_taken_at = monotonic
        self.snapshots_taken += 1
        grants = {entry.lock_id: tuple(g.grant_id for g in entry.grants) for entry in data.locks}
        out = []
        for lock in self.locks:
            lock.version = data.version
            lock.grant_ids = grants.get(lock.lock_id, ())
            applied = AccessAppliedData(
                lock_id=lock.lock_id,
                version=data.version,
                grant_ids=list(lock.grant_ids),
                clock_offset_s=0.0,
                loaded_at=dict.fromkeys(lock.grant_ids, int(now)),
                clock_set=False,
                reason=SyncReason.CHANGE,
            )
            out.append(messages.make(MessageType.ACCESS_APPLIED, applied, ts=now))
        return out

    def take_display(self, payload: bytes) -> bool:
        """Show a display state if newer; True when taken."""
        if not payload:
            return False
        try:
            _env, data = messages.parse(payload)
        except MessageError:
            self.malformed += 1
            return False
        if not isinstance(data, DisplayStateData):
            return False
        newest = max((d.shown_version or 0 for d in self.displays), default=0)
        if data.version <= newest:
            return False
        for display in self.displays:
            display.shown_version = data.version
        return True
