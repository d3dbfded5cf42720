"""The MQTT message envelope and the data of each message type (DESIGN.md, MQTT contract).

Every payload is ``{"v": 1, "type": …, "id": …, "ts": …, "data": {…}}``. ``id`` is fixed
where the message was born (a UUIDv7 made by the agent or the cloud); ``ts`` is UTC epoch
seconds. JSON Schema for each model is exported by :func:`json_schemas`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)

from protocol import display_wire as dw
from protocol.errors import LocalProtocolError, MessageError
from protocol.ids import SLUG_RE, uuid7
from protocol.offline_pin import OfflinePinId

PROTOCOL_VERSION = 1
Slug = str  # validated with SLUG_PATTERN where it is a field
# pydantic checks patterns with Rust's regex, where ``$`` is the end of the text
SLUG_PATTERN = f"^{SLUG_RE.pattern}$"
HEX_TAG_PATTERN = r"^[0-9a-f]{32}$"
OFFLINE_ID_PATTERN = r"^[0-9a-f]{12}$"
CONFIG_HASH_PATTERN = r"^[0-9a-f]{16}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MessageType(StrEnum):
    STATUS = "status"
    TELEMETRY = "telemetry"
    LOCK_EVENT = "lock_event"
    ACCESS_SNAPSHOT = "access_snapshot"
    ACCESS_APPLIED = "access_applied"
    DISPLAY_STATE = "display_state"
    CHECKIN = "checkin"
    CLINIC_ACTION = "clinic_action"
    CLINIC_STATE = "clinic_state"
    COMMAND = "command"  # cloud -> agent on req/{verb}
    COMMAND_REPLY = "command_reply"  # agent -> cloud on res/{verb}
    AGENT_CONFIG = "agent_config"  # cloud -> agent on config, retained
    PAIRING_KEY = "pairing_key"  # cloud -> every gateway on broadcast/pairing-key, retained
    LOCK_KEYS = "lock_keys"  # pairing -> cloud on pairing, sealed to the pairing key
    LOCK_KEYS_RESULT = "lock_keys_result"  # cloud -> pairing on pairing/result
    CERT_RENEWAL = "cert_renewal"  # agent -> cloud on cert/renew
    CERT_ISSUED = "cert_issued"  # cloud -> agent on cert
    CERT_IN_USE = "cert_in_use"  # agent -> cloud on cert/in-use/{tag}


class GatewayState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class StatusData(_Model):
    """Birth (``online``) and last will (``offline``) of a gateway, retained."""

    state: GatewayState
    agent_version: str | None = None
    locks: list[str] = Field(default_factory=list)


class LockTelemetry(_Model):
    """One lock's health. Fields after ``next_sync_at`` are left out while they hold their
    default, so a peer that knows only the first ones still reads it."""

    lock_id: str = Field(pattern=SLUG_PATTERN)
    reachable: bool
    battery_pct: int | None = Field(default=None, ge=0, le=100)
    clock_offset_s: float | None = None
    door_open: bool | None = None
    locked_out: bool | None = None
    clock_drift_s: float | None = Field(
        default=None,
        description="the lock's clock minus the agent's, measured at the last sync before "
        "the agent corrected it (positive: the lock runs ahead)",
    )
    last_sync_at: int | None = Field(default=None, ge=0, description="last confirmed sync")
    next_sync_at: int | None = Field(default=None, ge=0, description="next scheduled sync")
    firmware: str | None = Field(
        default=None, max_length=64, description="the firmware the lock last reported"
    )
    rssi_dbm: int | None = Field(
        default=None,
        ge=-127,
        le=20,
        description="BLE signal strength heard when the agent connected (null: not on BLE)",
    )

    @model_serializer(mode="wrap")
    def _serialize(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        return _drop_defaults(self, handler, ("firmware", "rssi_dbm"))


class DisplayTelemetry(_Model):
    """One call-number display's health."""

    display_id: str = Field(pattern=SLUG_PATTERN)
    reachable: bool
    firmware: str | None = Field(default=None, max_length=64)
    shown_version: int | None = Field(
        default=None, ge=0, description="the display state version the display acknowledged"
    )


class CardReaderTelemetry(_Model):
    """One kiosk card reader's health."""

    reader_id: str = Field(pattern=SLUG_PATTERN)
    reachable: bool


class TelemetryData(_Model):
    """The agent's periodic health report. Fields after ``locks`` are left out while they
    hold their default, so a peer that knows only the first ones still reads it."""

    uptime_s: float = Field(ge=0)
    outbox_depth: int = Field(ge=0)
    frames_dropped: int = Field(ge=0)
    time_trusted: bool
    locks: list[LockTelemetry] = Field(default_factory=list)
    outbox_oldest_age_s: float | None = Field(
        default=None, ge=0, description="age of the oldest message waiting in the outbox"
    )
    displays: list[DisplayTelemetry] = Field(default_factory=list)
    card_readers: list[CardReaderTelemetry] = Field(default_factory=list)
    config_version: int | None = Field(
        default=None, ge=1, description="the agent config (config topic) the agent runs"
    )
    config_hash: str | None = Field(
        default=None,
        pattern=CONFIG_HASH_PATTERN,
        description="SHA-256 (first 16 hex digits) of the effective config: site file and twin",
    )
    config_error: str | None = Field(
        default=None,
        max_length=300,
        description="why the newest config received was not applied (the old one runs)",
    )

    @model_serializer(mode="wrap")
    def _serialize(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        return _drop_defaults(
            self,
            handler,
            (
                "outbox_oldest_age_s",
                "displays",
                "card_readers",
                "config_version",
                "config_hash",
                "config_error",
            ),
        )


class LockEventKind(StrEnum):
    """What a lock reports. The wire codes live in :mod:`protocol.lock_wire`."""

    UNLOCKED = "unlocked"
    DENIED_WRONG_PIN = "denied_wrong_pin"
    DENIED_OUTSIDE_WINDOW = "denied_outside_window"
    DENIED_LOCKED_OUT = "denied_locked_out"
    RELOCKED = "relocked"
    DOOR_OPENED = "door_opened"
    DOOR_CLOSED = "door_closed"
    DOOR_HELD_OPEN = "door_held_open"
    LOCKOUT_STARTED = "lockout_started"
    BATTERY = "battery"
    CLOCK_SET = "clock_set"
    JAM = "jam"
    # a genuine offline PIN on the lock's revocation list (cancelled); value: its short id
    DENIED_REVOKED = "denied_revoked"
    # the emergency remote unlock of a fleet command (the reason is in the agent's log)
    REMOTE_UNLOCKED = "remote_unlocked"
    # frames the lock refused (forged, replayed, another key, PAIR without the button);
    # value: how many since its last such event (at most one event a minute)
    FRAMES_REFUSED = "frames_refused"


class LockEventData(_Model):
    """One event as the lock numbered it: ``(lock_id, boot, seq)`` names it, and the site
    of the topic it arrives on completes the cloud's idempotency key. ``boot`` is the run
    of the lock's event counter (:mod:`protocol.lock_wire`); 0, also when a payload has
    none, is a lock without boot ids."""

    lock_id: str = Field(pattern=SLUG_PATTERN)
    seq: int = Field(ge=0, lt=2**32)
    boot: int = Field(
        default=0, ge=0, lt=2**32, description="the run of the lock's event counter (0: none)"
    )
    lock_ts: int = Field(ge=0, lt=2**32, description="the lock's own clock, epoch seconds")
    kind: LockEventKind
    slot: int | None = Field(default=None, ge=0, le=254)
    grant_id: str | None = None
    value: int | None = None


class AccessGrantEntry(_Model):
    """One PIN window for one lock. The PIN itself never travels: ``tag`` is the keyed
    hash the lock checks (:func:`protocol.pin.pin_tag`)."""

    grant_id: str = Field(min_length=1, max_length=64)
    tag: str = Field(pattern=HEX_TAG_PATTERN)
    start: int = Field(ge=0, lt=2**32)
    end: int = Field(ge=0, lt=2**32)


class RevokedOffline(_Model):
    """A cancelled offline PIN on a lock's revocation list (:mod:`protocol.offline_pin`).

    ``id`` is the code's id as the 6 bytes of a ``REVOKE_OFFLINE`` entry, in hex:
    ``start_hour`` u32, ``hours`` u8, ``nonce`` u8. Not secret; the code is never sent."""

    id: str = Field(pattern=OFFLINE_ID_PATTERN)
    expires_at: int = Field(ge=0, description="when no lock accepts the code any more")

    @classmethod
    def of(cls, pid: OfflinePinId) -> RevokedOffline:
        """The entry for ``pid``."""
        raw = pid.start_hour.to_bytes(4, "big") + bytes([pid.hours, pid.nonce])
        return cls(id=raw.hex(), expires_at=pid.expires_at)

    def pin_id(self) -> OfflinePinId:
        """The code's id; raises :class:`~protocol.offline_pin.OfflinePinError` (a
        ``ValueError``) for fields outside the scheme."""
        raw = bytes.fromhex(self.id)
        return OfflinePinId(int.from_bytes(raw[:4], "big"), raw[4], raw[5])


def _drop_defaults(
    model: BaseModel, handler: SerializerFunctionWrapHandler, names: tuple[str, ...]
) -> dict[str, Any]:
    # fields added after v1 shipped stay off the wire while they hold their default, so a
    # peer that forbids unknown fields keeps reading what it read before
    out: dict[str, Any] = handler(model)
    for name in names:
        if name in out and getattr(model, name) == _default_of(type(model), name):
            del out[name]
    return out


@functools.cache
def _default_of(model: type[BaseModel], name: str) -> Any:
    # pydantic inspects the default_factory on every get_default() (~100 µs a field, paid
    # per field per message); these defaults are constants (None, []) and only compared
    return model.model_fields[name].get_default(call_default_factory=True)


class LockAccess(_Model):
    lock_id: str = Field(pattern=SLUG_PATTERN)
    grants: list[AccessGrantEntry] = Field(default_factory=list)
    revoked_offline: list[RevokedOffline] = Field(
        default_factory=list,
        description="cancelled offline PINs that have not expired: the lock's whole "
        "revocation list, sent with REVOKE_OFFLINE at every sync (left out when empty)",
    )

    @model_serializer(mode="wrap")
    def _serialize(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        return _drop_defaults(self, handler, ("revoked_offline",))


class AccessSnapshotData(_Model):
    """Desired access for every lock of a gateway, retained and versioned: a newer
    ``version`` replaces an older one; an older one is ignored."""

    version: int = Field(ge=1)
    locks: list[LockAccess] = Field(default_factory=list)


class SyncReason(StrEnum):
    """Why the agent synced a lock (reported in ``access/applied``)."""

    CONNECT = "connect"  # the agent (re)connected to the lock
    SCHEDULED = "scheduled"  # the periodic full sync
    KEYPAD = "keypad"  # the keypad woke the lock and it held an outdated snapshot
    CHANGE = "change"  # a new, changed or cancelled window needed the lock before its sync
    COMMAND = "command"  # a fleet command asked for it (force-sync, revoke-pin)


class AccessAppliedData(_Model):
    """What one lock holds now: the snapshot version and the grants in its slots."""

    lock_id: str = Field(pattern=SLUG_PATTERN)
    version: int = Field(ge=0)
    grant_ids: list[str] = Field(default_factory=list)
    clock_offset_s: float | None = Field(
        default=None,
        description="the lock's clock minus the agent's, measured during this sync before "
        "any correction (positive: the lock runs ahead); null when the lock had no time",
    )
    loaded_at: dict[str, int] = Field(
        default_factory=dict,
        description="per grant id in grant_ids: when its PIN was loaded (epoch seconds)",
    )
    deferred: list[str] = Field(
        default_factory=list,
        description="grants in the snapshot that wait for a free slot on this lock",
    )
    clock_set: bool | None = Field(
        default=None, description="whether the agent set the lock's clock during this sync"
    )
    reason: SyncReason | None = None
    revocations: int | None = Field(
        default=None,
        ge=0,
        description="live entries of the revocation list sent with REVOKE_OFFLINE in this "
        "sync (left out: none sent)",
    )
    revocation_error: str | None = Field(
        default=None,
        max_length=200,
        description="why the lock refused the revocation list (e.g. revocations_full: it "
        "refuses every offline PIN until a list that fits arrives); left out: no error",
    )

    @model_serializer(mode="wrap")
    def _serialize(
        self, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, Any]:
        return _drop_defaults(self, handler, ("revocations", "revocation_error"))


TICKET_PATTERN = f"^{dw.TICKET_RE.pattern}$"
Ticket = Annotated[str, Field(pattern=TICKET_PATTERN, description="a ticket label like A-023")]


class DisplayRoomCall(_Model):
    """Room ``room`` calls ticket ``number``; ``call_seq`` goes up on every call and
    recall, so the display chimes once per call. Numbers only, never names."""

    room: str = Field(min_length=1, max_length=dw.ROOM_MAX_BYTES)
    number: Ticket
    call_seq: int = Field(default=0, ge=0, le=0xFFFF)


class DisplayAnnouncementLevel(StrEnum):
    INFO = "info"
    URGENT = "urgent"  # disaster information: shown even in standby


class DisplayAnnouncement(_Model):
    """The announcement line; empty text clears it."""

    text: str = Field(default="", max_length=dw.ANNOUNCEMENT_MAX_BYTES)
    level: DisplayAnnouncementLevel = DisplayAnnouncementLevel.INFO
    expires_at: int = Field(default=0, ge=0, lt=2**32, description="0: until replaced")


class DisplayStandby(_Model):
    """Daily on and off times in local minutes after midnight; equal: always on."""

    on_minute: int = Field(default=0, ge=0, lt=dw.MINUTES_PER_DAY)
    off_minute: int = Field(default=0, ge=0, lt=dw.MINUTES_PER_DAY)
    utc_offset_min: int = Field(default=540, ge=-720, le=840)


class DisplayContent(_Model):
    """What one call-number display shows."""

    display_id: str = Field(pattern=SLUG_PATTERN)
    rooms: list[DisplayRoomCall] = Field(default_factory=list, max_length=dw.MAX_ROOMS)
    next_numbers: list[Ticket] = Field(default_factory=list, max_length=dw.MAX_NEXT)
    announcement: DisplayAnnouncement = Field(default_factory=DisplayAnnouncement)
    brightness: int = Field(default=dw.BRIGHTNESS_MAX, ge=0, le=dw.BRIGHTNESS_MAX)
    standby: DisplayStandby = Field(default_factory=DisplayStandby)

    @model_validator(mode="after")
    def _fits_the_wire(self) -> DisplayContent:
        # byte lengths, printable text, ticket labels, rooms listed once: the wire's rules
        try:
            self.to_wire(version=0, time=0)
        except LocalProtocolError as exc:
            raise ValueError(str(exc)) from None
        return self

    def to_wire(self, *, version: int, time: int) -> dw.DisplayState:
        """The ``SHOW_STATE`` document for this display."""
        return dw.DisplayState(
            version=version,
            calls=dw.Calls(
                tuple(dw.RoomCall(c.room, c.number, c.call_seq) for c in self.rooms),
                tuple(self.next_numbers),
            ),
            announcement=dw.Announcement(
                self.announcement.text,
                dw.AnnouncementLevel[self.announcement.level.name],
                self.announcement.expires_at,
            ),
            brightness=self.brightness,
            standby=dw.StandbySchedule(
                self.standby.on_minute, self.standby.off_minute, self.standby.utc_offset_min
            ),
            time=time,
        )


class DisplayStateData(_Model):
    """What every call-number display of a gateway shows, retained and versioned: a newer
    ``version`` replaces an older one; an older one is ignored. Numbers only, never names."""

    version: int = Field(ge=1, lt=2**32)
    displays: list[DisplayContent] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> DisplayStateData:
        ids = [d.display_id for d in self.displays]
        if len(set(ids)) != len(ids):
            raise ValueError("a display is listed twice")
        return self

    def content(self, display_id: str) -> DisplayContent:
        """This display's part; a display not listed shows nothing."""
        for display in self.displays:
            if display.display_id == display_id:
                return display
        return DisplayContent(display_id=display_id)


# ------------------------------------------------------------------------------ clinic
#
# Up on ``events``: ``checkin`` and ``clinic_action`` (the envelope id is the request id).
# Down on ``clinic`` (retained, versioned): ``clinic_state``, the site's queues for the day
# as the cloud holds them, which is what the agent runs on while the internet is down, and
# the answers to the agent's requests. Never a patient's name; card numbers travel only
# up, in ``checkin``; appointments come down as card tags (protocol.patient_card.card_tag).

CARD_PATTERN = r"^[0-9]{16}$"
CARD_TAG_PATTERN = r"^[0-9a-f]{32}$"
CARD_KEY_PATTERN = r"^[0-9a-f]{64}$"
PREFIX_PATTERN = r"^[A-Z]{1,3}$"
DAY_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
Room = Annotated[str, Field(min_length=1, max_length=dw.ROOM_MAX_BYTES)]


class LocalTicket(_Model):
    """The ticket an agent issued itself while the internet was down (numbers 700-999)."""

    number: Ticket
    department: str = Field(pattern=SLUG_PATTERN)
    appointment_at: int | None = Field(default=None, ge=0)
    urgent: bool = False


class CheckinData(_Model):
    """A patient checked in at the site (agent -> cloud, on ``events``).

    ``card`` is the number the kiosk read (check digit verified); null for a patient the
    staff checked in at the desk without a card. ``department`` is where a walk-in goes when
    no appointment matches (the kiosk's walk-in department). With ``local`` the agent ran
    the queue and already gave the patient that number: the cloud records it as issued."""

    card: str | None = Field(default=None, pattern=CARD_PATTERN)
    kiosk: str = Field(pattern=SLUG_PATTERN)
    at: int = Field(ge=0, description="when the card was read, epoch seconds")
    department: str | None = Field(default=None, pattern=SLUG_PATTERN)
    urgent: bool = False
    local: LocalTicket | None = None


class ClinicAction(StrEnum):
    CALL_NEXT = "call_next"
    CALL = "call"  # a chosen waiting ticket, out of turn
    RECALL = "recall"
    START = "start"
    DONE = "done"
    NO_SHOW = "no_show"
    SKIP = "skip"
    TRANSFER = "transfer"


class ClinicActionData(_Model):
    """A staff action made on the agent's local staff page (agent -> cloud, ``events``).

    ``number`` is required for every action but ``call_next``. With ``local`` the agent ran
    the queue itself (internet down) and this records what it did: a ``call_next`` it made
    is sent as ``call`` with the number it called, so the cloud replays the same outcome."""

    action: ClinicAction
    department: str = Field(pattern=SLUG_PATTERN)
    number: Ticket | None = None
    room: Room | None = None
    to_department: str | None = Field(default=None, pattern=SLUG_PATTERN)
    to_room: Room | None = None
    at: int = Field(ge=0)
    local: bool = False

    @model_validator(mode="after")
    def _number_given(self) -> ClinicActionData:
        if self.action is not ClinicAction.CALL_NEXT and self.number is None:
            raise ValueError(f"{self.action.value} needs a ticket number")
        if self.action in (ClinicAction.CALL_NEXT, ClinicAction.CALL) and self.room is None:
            raise ValueError(f"{self.action.value} needs a room")
        return self


class ClinicTicketState(StrEnum):
    """:class:`protocol.queue_rules.TicketState` on the wire."""

    WAITING = "waiting"
    CALLED = "called"
    IN_ROOM = "in_room"
    SKIPPED = "skipped"
    DONE = "done"
    NO_SHOW = "no_show"


class ClinicTicket(_Model):
    """One ticket of the day: a number and its place, never who holds it."""

    number: Ticket
    department: str = Field(pattern=SLUG_PATTERN)
    state: ClinicTicketState
    queued_at: float = Field(ge=0)
    urgent: bool = False
    appointment_at: float | None = None
    preferred_room: Room | None = None
    room: Room | None = None
    call_seq: int = Field(default=0, ge=0, le=0xFFFF)
    called_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None


class ClinicDepartment(_Model):
    """A department of the site: its number prefix, its open rooms (room labels are
    unique within the site) and what its wait estimate rests on."""

    id: str = Field(pattern=SLUG_PATTERN)
    name: str = Field(min_length=1, max_length=60)
    prefix: str = Field(pattern=PREFIX_PATTERN)
    rooms: list[Room] = Field(default_factory=list)
    tolerance_s: float = Field(default=15 * 60, ge=0)
    default_service_s: float = Field(default=10 * 60, gt=0)
    service_times: list[float] = Field(default_factory=list, max_length=100)
    last_number: int | None = Field(
        default=None, ge=1, le=999, description="the highest number the cloud issued today"
    )
    last_local_number: int | None = Field(
        default=None, ge=1, le=999, description="the highest agent-issued number it knows today"
    )


class ClinicAppointment(_Model):
    """An appointment today not yet checked in, by card tag (never the card number)."""

    card_tag: str = Field(pattern=CARD_TAG_PATTERN)
    department: str = Field(pattern=SLUG_PATTERN)
    at: int = Field(ge=0)


class ClinicDisplay(_Model):
    """Which departments' calls a display shows."""

    display_id: str = Field(pattern=SLUG_PATTERN)
    departments: list[str] = Field(default_factory=list)


class ClinicResult(_Model):
    """The answer to one of the agent's ``checkin`` or ``clinic_action`` requests."""

    request_id: str = Field(min_length=1, max_length=64)
    ok: bool
    number: Ticket | None = None
    department: str | None = Field(default=None, pattern=SLUG_PATTERN)
    estimated_wait_s: float | None = Field(default=None, ge=0)
    error: str | None = Field(default=None, max_length=300)


class ClinicStateData(_Model):
    """A clinic site's day as the cloud holds it (cloud -> agent, ``clinic``, retained).

    A newer ``version`` replaces an older one. ``applied_through`` is the id of the newest
    agent event the cloud has applied (UUIDv7, so ids compare in time order): an agent that
    ran the queue offline takes this state again once it covers its last local event."""

    version: int = Field(ge=1)
    day: str = Field(pattern=DAY_PATTERN, description="the Asia/Tokyo day, YYYY-MM-DD")
    card_key: str = Field(pattern=CARD_KEY_PATTERN, description="the day's card-tag key")
    walk_in_department: str | None = Field(default=None, pattern=SLUG_PATTERN)
    checkin_opens_before_s: int = Field(
        default=30 * 60,
        ge=0,
        description="an appointment can be checked in from this long before its time; the "
        "agent applies the cloud's value while it runs the queues offline",
    )
    departments: list[ClinicDepartment] = Field(default_factory=list)
    tickets: list[ClinicTicket] = Field(default_factory=list)
    appointments: list[ClinicAppointment] = Field(default_factory=list)
    displays: list[ClinicDisplay] = Field(default_factory=list)
    results: list[ClinicResult] = Field(default_factory=list)
    applied_through: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _consistent(self) -> ClinicStateData:
        ids = [d.id for d in self.departments]
        if len(set(ids)) != len(ids):
            raise ValueError("a department is listed twice")
        rooms = [r for d in self.departments for r in d.rooms]
        if len(set(rooms)) != len(rooms):
            raise ValueError("room labels must be unique within a site")
        numbers = [t.number for t in self.tickets]
        if len(set(numbers)) != len(numbers):
            raise ValueError("a ticket number is listed twice")
        known = set(ids)
        if any(t.department not in known for t in self.tickets):
            raise ValueError("a ticket names a department that is not listed")
        return self

    def department(self, department_id: str) -> ClinicDepartment | None:
        for d in self.departments:
            if d.id == department_id:
                return d
        return None


# ------------------------------------------------------------------------------- fleet
#
# Commands: the cloud publishes ``command`` on ``req/{verb}`` (QoS 1, not retained); the
# agent answers ``command_reply`` on ``res/{verb}`` through its outbox. Request and reply
# pair by ``transaction``; a transaction delivered twice acts once and is answered with the
# same reply. ``data`` holds the verb's arguments (COMMAND_ARGS) and results
# (COMMAND_RESULTS). The agent config twin is ``agent_config`` on ``config``, retained.

TRANSACTION_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"  # also usable as a trace id as it is
# a firmware image in a command: at most 1 MiB, base64 in the JSON
FIRMWARE_IMAGE_MAX = 1 << 20
FIRMWARE_IMAGE_B64_MAX = 4 * ((FIRMWARE_IMAGE_MAX + 2) // 3)


class CommandVerb(StrEnum):
    FORCE_SYNC = "force-sync"  # sync every lock (or one) now; reply: what each holds
    UNLOCK = "unlock"  # emergency remote unlock of one lock, audited
    REVOKE_PIN = "revoke-pin"  # take one grant off a lock now, before the next snapshot
    RESTART = "restart"  # the agent replies, then exits for systemd to start it again
    LOGS = "logs"  # the agent's recent log lines
    FIRMWARE_UPDATE = "firmware-update"  # a signed image for one lock or display


class CommandStatus(StrEnum):
    OK = "ok"
    ERROR = "error"  # tried and failed: ``error`` says why (a lock away, a device refusal)
    EXPIRED = "expired"  # received after ``expires_at``: not carried out
    REJECTED = "rejected"  # unknown verb, malformed arguments, or not allowed now


class CommandRequestData(_Model):
    """A command to one gateway (cloud -> agent, ``req/{verb}``, QoS 1, not retained)."""

    transaction: str = Field(pattern=TRANSACTION_PATTERN)
    expires_at: int = Field(ge=0, description="not carried out when received after this")
    data: dict[str, Any] = Field(default_factory=dict, description="the verb's arguments")


class CommandReplyData(_Model):
    """The answer to one command (agent -> cloud, ``res/{verb}``, QoS 1)."""

    transaction: str = Field(pattern=TRANSACTION_PATTERN)
    status: CommandStatus
    data: dict[str, Any] = Field(default_factory=dict, description="the verb's results")
    error: str | None = Field(default=None, max_length=500)


class ForceSyncArgs(_Model):
    lock_id: str | None = Field(default=None, pattern=SLUG_PATTERN, description="null: all")


class LockHolding(_Model):
    """What one lock holds after a command's sync (or why it could not be synced)."""

    lock_id: str = Field(pattern=SLUG_PATTERN)
    synced: bool
    version: int | None = Field(default=None, ge=0)
    grant_ids: list[str] = Field(default_factory=list)
    clock_offset_s: float | None = None
    error: str | None = Field(default=None, max_length=300)


class ForceSyncResult(_Model):
    locks: list[LockHolding] = Field(default_factory=list)


class UnlockArgs(_Model):
    """Who asked and why; the cloud checked the role, the agent writes both to its log."""

    lock_id: str = Field(pattern=SLUG_PATTERN)
    reason: str = Field(min_length=1, max_length=200)
    requested_by: str = Field(min_length=1, max_length=64)


class UnlockResult(_Model):
    lock_id: str = Field(pattern=SLUG_PATTERN)
    event_seq: int = Field(ge=0, lt=2**32, description="the lock's remote_unlocked event")
    event_boot: int = Field(default=0, ge=0, lt=2**32, description="that event's boot")
    unlocked_at: int = Field(ge=0)


class RevokePinArgs(_Model):
    lock_id: str = Field(pattern=SLUG_PATTERN)
    grant_id: str = Field(min_length=1, max_length=64)


class RevokePinResult(_Model):
    lock_id: str = Field(pattern=SLUG_PATTERN)
    grant_id: str = Field(min_length=1, max_length=64)
    was_on_lock: bool
    grant_ids: list[str] = Field(default_factory=list, description="what the lock holds now")


class RestartArgs(_Model):
    pass


class RestartResult(_Model):
    exit_status: int = Field(description="the status the agent exits with")


class LogsArgs(_Model):
    lines: int = Field(default=100, ge=1, le=1000)


class LogsResult(_Model):
    lines: list[str] = Field(default_factory=list, description="JSON log lines, oldest first")


class FirmwareUpdateArgs(_Model):
    """A signed image (:mod:`protocol.firmware_image`) for one lock or one display."""

    lock_id: str | None = Field(default=None, pattern=SLUG_PATTERN)
    display_id: str | None = Field(default=None, pattern=SLUG_PATTERN)
    image: str = Field(min_length=4, max_length=FIRMWARE_IMAGE_B64_MAX, description="base64")

    @model_validator(mode="after")
    def _one_device(self) -> FirmwareUpdateArgs:
        if (self.lock_id is None) == (self.display_id is None):
            raise ValueError("name exactly one of lock_id and display_id")
        self.image_bytes()
        return self

    def image_bytes(self) -> bytes:
        """The image; ``ValueError`` when it is not base64 or larger than 1 MiB."""
        try:
            raw = base64.b64decode(self.image, validate=True)
        except binascii.Error:
            raise ValueError("image is not base64") from None
        if len(raw) > FIRMWARE_IMAGE_MAX:
            raise ValueError(f"image is larger than {FIRMWARE_IMAGE_MAX} bytes")
        return raw


class FirmwareUpdateResult(_Model):
    device_id: str = Field(pattern=SLUG_PATTERN)
    kind: Literal["lock", "display"]
    previous: str = Field(max_length=64, description="the firmware it ran before")
    version: str = Field(max_length=64, description="the firmware it runs now")
    installed: bool = Field(description="false: it ran this version already")


COMMAND_ARGS: dict[CommandVerb, type[_Model]] = {
    CommandVerb.FORCE_SYNC: ForceSyncArgs,
    CommandVerb.UNLOCK: UnlockArgs,
    CommandVerb.REVOKE_PIN: RevokePinArgs,
    CommandVerb.RESTART: RestartArgs,
    CommandVerb.LOGS: LogsArgs,
    CommandVerb.FIRMWARE_UPDATE: FirmwareUpdateArgs,
}
COMMAND_RESULTS: dict[CommandVerb, type[_Model]] = {
    CommandVerb.FORCE_SYNC: ForceSyncResult,
    CommandVerb.UNLOCK: UnlockResult,
    CommandVerb.REVOKE_PIN: RevokePinResult,
    CommandVerb.RESTART: RestartResult,
    CommandVerb.LOGS: LogsResult,
    CommandVerb.FIRMWARE_UPDATE: FirmwareUpdateResult,
}


def command_args(verb: str, data: dict[str, Any]) -> tuple[CommandVerb, _Model]:
    """The verb and its typed arguments; :class:`MessageError` naming what is wrong (an
    unknown verb, or field paths and reasons, never the values)."""
    try:
        known = CommandVerb(verb)
    except ValueError:
        raise MessageError(f"unknown verb {verb[:40]!r}") from None
    try:
        return known, COMMAND_ARGS[known].model_validate(data)
    except ValidationError as exc:
        raise MessageError(f"invalid {known.value} arguments: {_describe(exc)}") from None


class SyncSettings(_Model):
    """The lock sync settings the agent can change while it runs (null: the site file's)."""

    full_sync_interval_s: float | None = Field(default=None, ge=60, le=7 * 24 * 3600)
    jitter_s: float | None = Field(default=None, ge=0, le=24 * 3600)
    awake_s: float | None = Field(default=None, ge=0, le=600)
    event_poll_s: float | None = Field(default=None, ge=1, le=24 * 3600)


class DisplaySettings(_Model):
    """Brightness and standby of every display of the site (null: as the display state
    says); they take the place of what the display state carries."""

    brightness: int | None = Field(default=None, ge=0, le=dw.BRIGHTNESS_MAX)
    standby: DisplayStandby | None = None


class OpeningHours(_Model):
    """Daily opening hours in local minutes after midnight (close <= open: past midnight)."""

    open_minute: int = Field(ge=0, lt=dw.MINUTES_PER_DAY)
    close_minute: int = Field(ge=0, le=dw.MINUTES_PER_DAY)
    utc_offset_min: int = Field(default=540, ge=-720, le=840)
    weekdays: list[int] = Field(
        default_factory=lambda: list(range(7)), description="0 Monday .. 6 Sunday"
    )

    def is_open(self, at: float) -> bool:
        """Whether ``at`` (UTC epoch seconds) falls inside the hours."""
        day, second = divmod(int(at) + self.utc_offset_min * 60, 86400)
        minute = second // 60
        if self.open_minute < self.close_minute:
            return self.open_minute <= minute < self.close_minute and self._opens_on(day)
        # past midnight: the evening belongs to this day, the small hours to the day before
        if minute >= self.open_minute:
            return self._opens_on(day)
        return minute < self.close_minute and self._opens_on(day - 1)

    def _opens_on(self, day: int) -> bool:
        return (day + 3) % 7 in self.weekdays  # day 0, 1970-01-01, was a Thursday


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class AgentConfigData(_Model):
    """The desired agent config of one gateway (cloud -> agent, ``config``, retained): a
    newer ``version`` replaces an older one. A field left null keeps the site file's value.
    The agent reports the version it runs, and a config it refused, in its telemetry."""

    version: int = Field(ge=1)
    telemetry_interval_s: float | None = Field(default=None, ge=1, le=3600)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    display: DisplaySettings = Field(default_factory=DisplaySettings)
    clinic_hours: OpeningHours | None = Field(
        default=None, description="display firmware updates are refused inside these hours"
    )
    log_level: LogLevel | None = None


# lock pairing: the PIN key and offline secret go from the pairing CLI straight to the cloud,
# sealed to the cloud's pairing key (protocol.sealed), never through a file on the Pi

PAIRING_KEY_PATTERN = r"^[0-9a-f]{64}$"
SEALED_B64_MAX = 512  # 32 + 12 + a 160-byte body and its tag, as base64, with room


class PairingKeyData(_Model):
    """The cloud's X25519 public key that pairings seal lock keys to (hex)."""

    public_key: str = Field(pattern=PAIRING_KEY_PATTERN)


class LockKeysData(_Model):
    """A freshly paired lock's PIN key and offline secret, sealed (base64) to the cloud's
    pairing key for the topic's site and gateway and ``lock_id``."""

    lock_id: str = Field(pattern=SLUG_PATTERN)
    sealed: str = Field(min_length=4, max_length=SEALED_B64_MAX, description="base64")

    def sealed_bytes(self) -> bytes:
        """The sealed blob; ``ValueError`` when it is not base64."""
        try:
            return base64.b64decode(self.sealed, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("sealed is not base64") from None


class LockKeysResult(_Model):
    """The cloud's answer to :class:`LockKeysData` (``request_id``: its envelope id):
    stored, or why not and what to do."""

    request_id: str = Field(min_length=1, max_length=64)
    lock_id: str = Field(pattern=SLUG_PATTERN)
    stored: bool
    error: str | None = Field(default=None, max_length=400)


class CertRenewalData(_Model):
    """A gateway asks for its next certificate: a CSR for a key it made and keeps."""

    csr_pem: str = Field(min_length=1, max_length=20_000)


class CertIssuedData(_Model):
    """The certificate the cloud signed for a gateway's CSR (cloud -> agent, ``cert``)."""

    certificate_pem: str = Field(min_length=1, max_length=20_000)
    serial: str = Field(pattern=r"^[0-9a-f]{1,40}$")
    not_after: int = Field(ge=0, description="UTC epoch seconds")


class CertInUseData(_Model):
    """Sent on every connect on ``cert/in-use/{tag}``: the gateway is connected with that
    certificate, so the cloud revokes the ones it held before."""

    serial: str = Field(pattern=r"^[0-9a-f]{1,40}$")


DATA_MODELS: dict[MessageType, type[_Model]] = {
    MessageType.STATUS: StatusData,
    MessageType.TELEMETRY: TelemetryData,
    MessageType.LOCK_EVENT: LockEventData,
    MessageType.ACCESS_SNAPSHOT: AccessSnapshotData,
    MessageType.ACCESS_APPLIED: AccessAppliedData,
    MessageType.DISPLAY_STATE: DisplayStateData,
    MessageType.CHECKIN: CheckinData,
    MessageType.CLINIC_ACTION: ClinicActionData,
    MessageType.CLINIC_STATE: ClinicStateData,
    MessageType.COMMAND: CommandRequestData,
    MessageType.COMMAND_REPLY: CommandReplyData,
    MessageType.AGENT_CONFIG: AgentConfigData,
    MessageType.PAIRING_KEY: PairingKeyData,
    MessageType.LOCK_KEYS: LockKeysData,
    MessageType.LOCK_KEYS_RESULT: LockKeysResult,
    MessageType.CERT_RENEWAL: CertRenewalData,
    MessageType.CERT_ISSUED: CertIssuedData,
    MessageType.CERT_IN_USE: CertInUseData,
}


class Envelope(_Model):
    v: Literal[1] = 1
    type: MessageType
    id: str = Field(min_length=1, max_length=64)
    ts: int = Field(ge=0)
    data: dict[str, Any]


def make(kind: MessageType, data: _Model, *, ts: float, message_id: str | None = None) -> bytes:
    """Serialise ``data`` in an envelope, ready to publish."""
    if not isinstance(data, DATA_MODELS[kind]):
        raise TypeError(f"{kind.value} carries {DATA_MODELS[kind].__name__}, not {type(data)}")
    env = Envelope(
        type=kind,
        id=message_id or uuid7(int(ts * 1000)),
        ts=int(ts),
        data=data.model_dump(mode="json"),
    )
    return env.model_dump_json().encode()


def parse(payload: bytes | bytearray | str) -> tuple[Envelope, _Model]:
    """Parse a payload into its envelope and typed data; raise :class:`MessageError`.

    The error message names what was wrong but never echoes field values (a payload may
    carry a PIN tag or a citizen's name).
    """
    try:
        raw = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MessageError(
            f"payload is not JSON: {exc.msg if hasattr(exc, 'msg') else exc}"
        ) from None
    if not isinstance(raw, dict):
        raise MessageError("payload is not a JSON object")
    if raw.get("v") != PROTOCOL_VERSION:
        raise MessageError(f"unsupported protocol version (expected v={PROTOCOL_VERSION})")
    try:
        env = Envelope.model_validate(raw)
        data = DATA_MODELS[env.type].model_validate(env.data)
    except ValidationError as exc:
        raise MessageError(f"invalid message: {_describe(exc)}") from None
    return env, data


def _describe(exc: ValidationError) -> str:
    """Field paths and reasons only; never the offending values."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "message"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts[:5])


def json_schemas() -> dict[str, Any]:
    """JSON Schema of the envelope and of every message's data, for the docs."""
    out: dict[str, Any] = {"envelope": Envelope.model_json_schema()}
    for kind, model in DATA_MODELS.items():
        out[kind.value] = model.model_json_schema()
    for verb in CommandVerb:
        out[f"command.{verb.value}"] = COMMAND_ARGS[verb].model_json_schema()
        out[f"command_reply.{verb.value}"] = COMMAND_RESULTS[verb].model_json_schema()
    return out
