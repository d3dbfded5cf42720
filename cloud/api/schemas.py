"""Request and response bodies of the JSON API."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from cloud.db.models import ReservationStatus
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


class LockOut(BaseModel):
    lock_id: str
    name: str
    facility_id: int


class LockCreated(LockOut):
    pin_key: str = Field(description="shown once, to pair the lock")


class FacilityOut(BaseModel):
    id: int
    name: str
    site: str
    gateway: str
    locks: list[LockOut]


class ReservationIn(_In):
    lock_id: str = Field(pattern=SLUG_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=320)
    start: int | AwareDatetime = Field(description="UTC epoch seconds or ISO 8601 with offset")
    end: int | AwareDatetime


class ReservationCreated(BaseModel):
    id: str
    status: ReservationStatus
    access_token: str
    status_url: str


class ReservationOut(BaseModel):
    id: str
    status: ReservationStatus
    facility_id: int
    facility: str
    lock_id: str
    lock: str
    name: str
    email: str
    start: int
    end: int
    start_local: str
    end_local: str
    created_at: int


class CitizenStatus(BaseModel):
    id: str
    status: ReservationStatus
    facility: str
    lock: str
    name: str
    start: int
    end: int
    start_local: str
    end_local: str
    timezone: str
    pin: str | None = None
    window_start: int | None = None
    window_end: int | None = None
    window_start_local: str | None = None
    window_end_local: str | None = None


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
