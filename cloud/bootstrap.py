"""Seed a database quickly for the demo and for tests: a facility with one room (the main
hall) behind one entrance lock, and users."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from cloud.db.models import Facility, Lock, OpeningHours, Role, Room, User
from cloud.services.access import bump_version
from cloud.services.facilities import check_offline_secret
from cloud.services.users import generate_password, hash_password
from protocol.clock import Clock, SystemClock


@dataclass(frozen=True, slots=True)
class SeededUser:
    username: str
    role: Role
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class DemoSeed:
    """What :func:`seed_demo` created; passwords and the PIN key are shown once here."""

    facility_id: int
    facility_name: str
    site: str
    gateway: str
    lock_id: str
    lock_name: str
    pin_key: str = field(repr=False)
    users: dict[str, SeededUser] = field(default_factory=dict)
    room_id: int = 0
    room_name: str = ""

    @property
    def manager(self) -> SeededUser:
        """The seeded manager."""
        return next(u for u in self.users.values() if u.role is Role.MANAGER)

    @property
    def ops(self) -> SeededUser:
        """The seeded ops user."""
        return next(u for u in self.users.values() if u.role is Role.OPS)


def seed_demo(
    session: Session,
    *,
    site: str = "gym-a",
    gateway: str = "gw-1",
    facility_name: str = "Yonago Gym A",
    lock_id: str = "gym-a-1",
    lock_name: str = "Gym A front door",
    room_name: str = "Main hall",
    hourly_fee_yen: int = 600,
    pin_key: str | None = None,
    offline_secret: str | None = None,
    users: dict[str, Role] | None = None,
    clock: Clock | None = None,
) -> DemoSeed:
    """Create a facility with one room behind one entrance lock (``pin_key`` hex, random
    unless given; ``offline_secret`` hex from the lock's pairing, none unless given: then
    the lock gets no offline PINs) and users with generated passwords (default ``manager``
    and ``ops``). The facility is open around the clock with no lead time, so the demo and the
    end-to-end tests can book "in ten minutes" at any hour; rules are edited by the API.

    Flushes but does not commit: the caller owns the transaction
    (``with sessions.begin() as s: seed = seed_demo(s)``).
    """
    now = int((clock or SystemClock()).now())
    key = pin_key or secrets.token_hex(32)
    facility = Facility(
        name=facility_name,
        site=site,
        gateway=gateway,
        hourly_fee_yen=hourly_fee_yen,
        min_booking_minutes=30,
        max_booking_minutes=24 * 60,
        lead_time_minutes=0,
        horizon_days=90,
    )
    session.add(facility)
    session.flush()
    session.add_all(
        OpeningHours(facility_id=facility.id, weekday=d, opens_minute=0, closes_minute=24 * 60)
        for d in range(7)
    )
    room = Room(facility_id=facility.id, name=room_name)
    session.add(room)
    session.add(
        Lock(
            lock_id=lock_id,
            facility_id=facility.id,
            name=lock_name,
            pin_key=key,
            offline_secret=check_offline_secret(offline_secret),
        )
    )
    seeded: dict[str, SeededUser] = {}
    for username, role in (users or {"manager": Role.MANAGER, "ops": Role.OPS}).items():
        password = generate_password()
        session.add(
            User(
                username=username, password_hash=hash_password(password), role=role, created_at=now
            )
        )
        seeded[username] = SeededUser(username, role, password)
    session.flush()
    bump_version(session, site, gateway, now)
    return DemoSeed(
        facility.id,
        facility_name,
        site,
        gateway,
        lock_id,
        lock_name,
        key,
        seeded,
        room_id=room.id,
        room_name=room_name,
    )
