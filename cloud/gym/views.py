"""What services hand back: plain frozen values, safe to use after the session closed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from cloud.gym.models import PaymentState, ReservationStatus


@dataclass(frozen=True, slots=True)
class LockView:
    """A lock; ``room_id`` None: an entrance door every room's PIN opens."""

    lock_id: str
    name: str
    facility_id: int
    room_id: int | None = None


@dataclass(frozen=True, slots=True)
class RoomView:
    """A bookable unit of a facility, with the locks its PIN opens."""

    id: int
    facility_id: int
    name: str
    capacity: int | None
    lock_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FacilityView:
    id: int
    name: str
    site: str
    gateway: str
    locks: tuple[LockView, ...] = ()
    rooms: tuple[RoomView, ...] = ()


@dataclass(frozen=True, slots=True)
class OpeningHoursView:
    weekday: int
    opens_minute: int
    closes_minute: int


@dataclass(frozen=True, slots=True)
class RulesView:
    """A facility's booking rules as a manager edits them."""

    facility_id: int
    hourly_fee_yen: int
    min_booking_minutes: int
    max_booking_minutes: int
    lead_time_minutes: int
    horizon_days: int
    off_peak_from_minute: int | None
    off_peak_until_minute: int | None
    payment_method: str
    hours: tuple[OpeningHoursView, ...] = ()
    closed_days: tuple[tuple[date, str], ...] = ()


@dataclass(frozen=True, slots=True)
class GroupView:
    id: int
    facility_id: int
    name: str
    email: str


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of one day: ``free``, ``taken`` or ``unavailable`` (with why)."""

    start: int
    end: int
    state: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RoomDay:
    room_id: int
    room_name: str
    segments: tuple[Segment, ...]


@dataclass(frozen=True, slots=True)
class AvailabilityDay:
    """One local day of a facility: open or not, and each room's segments."""

    facility_id: int
    day: date
    opens_at: int | None
    closes_at: int | None
    closed_reason: str
    rooms: tuple[RoomDay, ...]


@dataclass(frozen=True, slots=True)
class GrantView:
    """An access grant; ``pin`` is for the citizen's eyes only (kept out of ``repr``; None
    in every view but the citizen's own).

    ``offline`` True: ``pin`` is a 12-digit offline PIN the lock ``lock_id`` checks by
    itself, valid over the whole hours ``window_start``..``window_end`` (plus the lock's
    5-minute clock grace); ``offline_reason`` says why a slot PIN would not do."""

    id: str
    pin: str | None = field(repr=False)
    window_start: int
    window_end: int
    offline: bool = False
    lock_id: str | None = None
    offline_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ReservationView:
    id: str
    facility_id: int
    facility_name: str
    room_id: int
    room_name: str
    citizen_name: str
    email: str
    group_size: int
    purpose: str
    starts_at: int
    ends_at: int
    status: ReservationStatus
    created_at: int
    fee_yen: int
    payment_method: str
    payment_state: PaymentState
    payment_instructions: str = ""
    decided_by: str | None = None
    decided_at: int | None = None
    cancelled_by: str | None = None
    cancelled_at: int | None = None
    cancel_reason: str | None = None
    paid_at: int | None = None
    refunded_at: int | None = None
    grant: GrantView | None = None


@dataclass(frozen=True, slots=True)
class NewReservation:
    """A reservation just made, with the secret of the citizen's status link."""

    reservation: ReservationView
    access_token: str = field(repr=False)
    replayed: bool = False  # the same Idempotency-Key came again: the first booking


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One lock event, with the name on the reservation whose grant opened the door."""

    lock_id: str
    seq: int
    lock_ts: int
    kind: str
    grant_id: str | None
    slot: int | None
    value: int | None
    received_at: int
    reservation_name: str | None
    offline: bool = False  # an offline PIN's event (no slot; ``value`` is its short id)
    boot: int = 0  # the run of the lock's event counter ``seq`` belongs to
