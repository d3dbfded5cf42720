"""Request and response bodies of the JSON API."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from cloud.api.params import JSON_INTEGER, BodyId, Epoch, Integer, IsoDay
from cloud.gym.models import PaymentState, ReservationStatus
from protocol.messages import SLUG_PATTERN


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FacilityIn(_In):
    name: str = Field(min_length=1, max_length=200)
    site: str = Field(pattern=SLUG_PATTERN)
    gateway: str = Field(pattern=SLUG_PATTERN)


class LockIn(_In):
    lock_id: str = Field(pattern=SLUG_PATTERN)
    name: str = Field(default="", max_length=200)
    pin_key: str | None = Field(default=None, description="64 hex digits; generated if left out")
    offline_secret: str | None = Field(
        default=None,
        description="64 hex digits from the lock's pairing file; without it the lock gets "
        "no offline PINs",
    )
    room_id: BodyId | None = Field(
        default=None, description="the room whose own door this is; leave out for an entrance"
    )


class LockOut(BaseModel):
    lock_id: str
    name: str
    facility_id: int
    room_id: int | None = Field(description="null: an entrance lock every room's PIN opens")


class RoomIn(_In):
    name: str = Field(min_length=1, max_length=200)
    capacity: Annotated[int, Field(ge=1, le=100_000), JSON_INTEGER] | None = Field(
        default=None, description="the largest group"
    )


class RoomOut(BaseModel):
    id: int
    facility_id: int
    name: str
    capacity: int | None
    locks: list[str] = Field(description="the locks a PIN for this room opens")


class LockCreated(LockOut):
    pin_key: str = Field(description="shown once, to pair the lock")


class FacilityOut(BaseModel):
    id: int
    name: str
    site: str
    gateway: str
    locks: list[LockOut]
    rooms: list[RoomOut]


class OpeningHoursIO(_In):
    weekday: Integer = Field(ge=0, le=6, description="0 = Monday … 6 = Sunday")
    opens: str = Field(description="HH:MM local time", examples=["09:00"])
    closes: str = Field(description="HH:MM local time, up to 24:00", examples=["21:00"])


class HoursIn(_In):
    hours: list[OpeningHoursIO] = Field(description="a weekday left out is closed")


class ClosedDayIO(_In):
    day: IsoDay
    reason: str = Field(min_length=1, max_length=200)


class RulesIn(_In):
    hourly_fee_yen: Integer = Field(ge=0, le=1_000_000)
    min_booking_minutes: Integer = Field(ge=1, le=10_080)
    max_booking_minutes: Integer = Field(ge=1, le=10_080)
    lead_time_minutes: Integer = Field(
        ge=0, le=525_600, description="how long before the start one may book"
    )
    horizon_days: Integer = Field(ge=1, le=730, description="how many days ahead bookings open")
    off_peak_from: str | None = Field(
        default=None, description="HH:MM; Mon-Fri bookings inside off-peak hours auto-approve"
    )
    off_peak_until: str | None = None


class RulesOut(RulesIn):
    facility_id: int
    payment_method: str
    hours: list[OpeningHoursIO]
    closed_days: list[ClosedDayIO]


class GroupIn(_In):
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=320)


class GroupOut(GroupIn):
    id: int
    facility_id: int


class SlotOut(BaseModel):
    start: int
    end: int
    start_local: str
    end_local: str
    state: str = Field(description="free, taken or unavailable")
    reason: str = ""


class RoomDayOut(BaseModel):
    room_id: int
    room: str
    slots: list[SlotOut]


class AvailabilityOut(BaseModel):
    facility_id: int
    date: date
    timezone: str
    open: bool
    opens_local: str | None
    closes_local: str | None
    closed_reason: str
    rooms: list[RoomDayOut]


class ReservationIn(_In):
    room_id: BodyId | None = Field(default=None, description="the room to book")
    lock_id: str | None = Field(
        default=None,
        pattern=SLUG_PATTERN,
        description="instead of room_id: a lock that serves exactly one room",
    )
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=320)
    group_size: Integer = Field(default=1, ge=1, le=1000)
    purpose: str = Field(default="", max_length=500)
    start: Epoch | AwareDatetime = Field(description="UTC epoch seconds or ISO 8601 with offset")
    end: Epoch | AwareDatetime


class ReservationCreated(BaseModel):
    id: str
    status: ReservationStatus
    access_token: str
    status_url: str
    fee_yen: int
    payment_state: PaymentState
    payment_instructions: str
    decided_by: str | None = Field(description="set when an auto-approval rule approved it")
    message: str = Field(
        description="what to do next: confirm the booking from the mail sent to its address"
    )


class ConfirmIn(_In):
    token: str = Field(min_length=1, max_length=100, description="``t`` of the mailed link")


class ConfirmedOut(BaseModel):
    id: str
    status: ReservationStatus
    already_confirmed: bool
    message: str


class CancelIn(_In):
    reason: str = Field(min_length=1, max_length=500)
    token: str | None = Field(
        default=None, description="the citizen's status-link token; managers use HTTP Basic"
    )


class AccessStatusOut(BaseModel):
    """Where a booking's PIN stands on one lock."""

    lock_id: str
    lock: str
    state: str = Field(
        description="on_lock, waiting_sync, waiting_slot, gateway_offline or offline_pin"
    )
    text: str = Field(description="what the manager page says, in the facility's time zone")
    since: int | None = Field(default=None, description="on_lock: when the PIN was loaded")
    next_sync_at: int | None = Field(
        default=None, description="waiting: the lock's next scheduled sync, when known"
    )


class LockSyncOut(BaseModel):
    """What the site's agent last reported about a lock (nulls: never reported)."""

    lock_id: str
    name: str
    gateway_state: str | None
    gateway_last_seen: int | None
    applied_version: int | None
    grant_ids: list[str]
    deferred: list[str]
    loaded_reason: str | None = Field(description="why the agent last synced it")
    clock_offset_s: float | None = Field(
        description="the lock's clock minus the agent's at the last sync, before correction"
    )
    clock_set: bool | None
    revocation_error: str | None
    applied_received_at: int | None
    reachable: bool | None
    last_sync_at: int | None
    next_sync_at: int | None
    clock_drift_s: float | None
    telemetry_received_at: int | None
    revoked_offline: int = Field(description="live entries on its offline-PIN revocation list")
    last_sync_local: str | None
    next_sync_local: str | None


class ReservationOut(BaseModel):
    id: str
    status: ReservationStatus
    facility_id: int
    facility: str
    room_id: int
    room: str
    name: str
    email: str
    group_size: int
    purpose: str
    start: int
    end: int
    start_local: str
    end_local: str
    created_at: int
    fee_yen: int
    payment_method: str
    payment_state: PaymentState
    decided_by: str | None
    cancelled_by: str | None
    cancel_reason: str | None
    offline_pin: bool = Field(default=False, description="the grant is an offline PIN")
    access: list[AccessStatusOut] = Field(
        default_factory=list, description="approved: the PIN's sync status on each lock"
    )


class CitizenStatus(BaseModel):
    id: str
    status: ReservationStatus
    facility: str
    room: str
    name: str
    group_size: int
    start: int
    end: int
    start_local: str
    end_local: str
    timezone: str
    fee_yen: int
    payment_state: PaymentState
    payment_instructions: str
    cancel_reason: str | None = None
    pin: str | None = None
    window_start: int | None = None
    window_end: int | None = None
    window_start_local: str | None = None
    window_end_local: str | None = None
    offline_pin: bool = Field(
        default=False,
        description="pin is a 12-digit offline PIN the lock checks by itself, valid over "
        "the whole hours of the window",
    )


class AuditOut(BaseModel):
    lock_id: str
    seq: int
    lock_ts: int
    kind: str
    grant_id: str | None
    slot: int | None
    value: int | None
    received_at: int
    who: str | None
    offline: bool = Field(default=False, description="an offline PIN's event")
    boot: int = Field(default=0, description="the run of the lock's event counter of seq")


class MailOut(BaseModel):
    id: int
    to: str
    subject: str
    body: str
    created_at: int


class Health(BaseModel):
    ok: bool
    db: str
    mqtt: str
