"""What services hand back: plain frozen values, safe to use after the session closed."""

from __future__ import annotations

from dataclasses import dataclass, field

from cloud.db.models import ReservationStatus, Role


@dataclass(frozen=True, slots=True)
class LockView:
    lock_id: str
    name: str
    facility_id: int


@dataclass(frozen=True, slots=True)
class FacilityView:
    id: int
    name: str
    site: str
    gateway: str
    locks: tuple[LockView, ...] = ()


@dataclass(frozen=True, slots=True)
class GrantView:
    """An access grant; ``pin`` is for the citizen's eyes only (kept out of ``repr``)."""

    id: str
    pin: str = field(repr=False)
    window_start: int
    window_end: int


@dataclass(frozen=True, slots=True)
class ReservationView:
    id: str
    facility_id: int
    facility_name: str
    lock_id: str
    lock_name: str
    citizen_name: str
    email: str
    starts_at: int
    ends_at: int
    status: ReservationStatus
    created_at: int
    grant: GrantView | None = None


@dataclass(frozen=True, slots=True)
class NewReservation:
    """A reservation just made, with the secret of the citizen's status link."""

    reservation: ReservationView
    access_token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class UserView:
    id: int
    username: str
    role: Role


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


@dataclass(frozen=True, slots=True)
class MailView:
    id: int
    to: str
    subject: str
    body: str = field(repr=False)
    created_at: int = 0
