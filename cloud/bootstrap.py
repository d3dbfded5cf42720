"""Seed a database quickly for the demo and for tests: a facility with one room (the main
hall) behind one entrance lock, and users; a clinic site with departments, patients and
today's appointments (:func:`seed_clinic`). Each site belongs to a city department with
the seeded manager or clinic staff as members, so they see it (:mod:`cloud.core.scope`).
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.clinic.models import Appointment, Patient
from cloud.clinic.sites import DepartmentSpec, create_clinic
from cloud.core.api_tokens import new_token
from cloud.core.models import ApiToken, CityDepartment, Role, User
from cloud.core.users import generate_password, hash_password
from cloud.fleet import sites as fleet_sites
from cloud.fleet.ports import FleetPorts
from cloud.gym.access import bump_version
from cloud.gym.facilities import check_offline_secret
from cloud.gym.models import Facility, Lock, OpeningHours, Room
from cloud.services import SITE_NAMES
from protocol.clock import Clock, SystemClock
from protocol.patient_card import PatientCardNumber

# the city departments the seeds put their sites in (slug -> name)
DEPARTMENT_NAMES = {
    "education": "教育委員会 / Board of Education",
    "health": "保健部 / Health Department",
}
SEED_ACTOR = "seed"


def seed_department(
    session: Session, department: str, site: str, members: Collection[str], now: int
) -> None:
    """Put ``site`` in ``department`` (created when missing, named from
    :data:`DEPARTMENT_NAMES`) with ``members`` in it, through the fleet's own functions in
    the caller's transaction."""
    if session.get(CityDepartment, department) is None:
        name = DEPARTMENT_NAMES.get(department, department)
        fleet_sites.put_department(session, department, name, actor=SEED_ACTOR, now=now)
    for username in members:
        fleet_sites.add_member(session, department, username, actor=SEED_ACTOR, now=now)
    fleet_sites.put_site(
        session,
        site,
        actor=SEED_ACTOR,
        now=now,
        department=department,
        ports=FleetPorts(names=SITE_NAMES),
    )


@dataclass(frozen=True, slots=True)
class SeededUser:
    """A seeded user: a password for the pages (where a role that needs a second factor
    enrols an authenticator at its first login) and an API token for HTTP Basic."""

    username: str
    role: Role
    password: str = field(repr=False)
    api_token: str = field(repr=False)


def seed_users(session: Session, users: dict[str, Role], now: int) -> dict[str, SeededUser]:
    """Users with generated passwords and one API token each ("seed"), in the caller's
    transaction (flushed)."""
    seeded: dict[str, SeededUser] = {}
    for username, role in users.items():
        password = generate_password()
        user = User(
            username=username, password_hash=hash_password(password), role=role, created_at=now
        )
        session.add(user)
        session.flush()
        token, token_hash = new_token()
        session.add(
            ApiToken(user_id=user.id, token_hash=token_hash, label=SEED_ACTOR, created_at=now)
        )
        seeded[username] = SeededUser(username, role, password, token)
    session.flush()
    return seeded


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
    department: str = "education",
    members: Collection[str] | None = None,
    clock: Clock | None = None,
) -> DemoSeed:
    """Create a facility with one room behind one entrance lock (``pin_key`` hex, random
    unless given; ``offline_secret`` hex from the lock's pairing, none unless given: then
    the lock gets no offline PINs) and users with generated passwords (default ``manager``
    and ``ops``). The facility is open around the clock with no lead time, so the demo and the
    end-to-end tests can book "in ten minutes" at any hour; rules are edited by the API.
    Its site belongs to the city ``department`` with ``members`` (default: the seeded
    managers) in it.

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
    seeded = seed_users(session, users or {"manager": Role.MANAGER, "ops": Role.OPS}, now)
    bump_version(session, site, gateway, now)
    if members is None:
        members = [u.username for u in seeded.values() if u.role is Role.MANAGER]
    seed_department(session, department, site, members, now)
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


# ------------------------------------------------------------------------------ clinic


@dataclass(frozen=True, slots=True)
class SeededPatient:
    """A registered patient; ``card`` is the 16 digits the kiosk reader sends."""

    card: str = field(repr=False)
    name: str
    email: str | None
    facility: str  # the facility that issued the card


@dataclass(frozen=True, slots=True)
class SeededAppointment:
    external_id: str
    card: str = field(repr=False)
    department: str
    at: int


@dataclass(frozen=True, slots=True)
class ClinicSeed:
    """What :func:`seed_clinic` created; passwords are shown once here."""

    site: str
    gateway: str
    name: str
    displays: tuple[str, ...]
    walk_in_department: str
    departments: dict[str, tuple[str, ...]]  # slug -> rooms
    patients: tuple[SeededPatient, ...]
    appointments: tuple[SeededAppointment, ...]
    users: dict[str, SeededUser] = field(default_factory=dict)

    @property
    def staff(self) -> SeededUser:
        """The seeded clinic staff user."""
        return next(u for u in self.users.values() if u.role is Role.CLINIC)


APPOINTMENT_SOURCE = "demo-his"


def seed_clinic(
    session: Session,
    *,
    site: str = "clinic-a",
    gateway: str = "gw-1",
    name: str = "Yonago Clinic A",
    displays: Sequence[str] = ("clinic-a-disp-1",),
    users: dict[str, Role] | None = None,
    department: str = "health",
    members: Collection[str] | None = None,
    clock: Clock | None = None,
) -> ClinicSeed:
    """A clinic site: internal medicine (numbers ``A-…``, rooms 1 and 2; also the walk-in
    department) and pediatrics (``B-…``, room 3), every display showing both; four
    patients (one card issued by another hospital, one patient without email) and two
    appointments today relative to the clock: one that can be checked in now (in 20
    minutes, internal medicine) and one too early for it (in 2 hours, pediatrics); users
    with generated passwords (default ``clinic`` with the clinic role). The site belongs to
    the city ``department`` with ``members`` (default: the seeded clinic staff) in it.

    Flushes but does not commit, like :func:`seed_demo`.
    """
    now = int((clock or SystemClock()).now())
    departments = (
        DepartmentSpec("internal", "Internal medicine", "A", ("1", "2")),
        DepartmentSpec("pediatrics", "Pediatrics", "B", ("3",)),
    )
    create_clinic(
        session,
        site=site,
        gateway=gateway,
        name=name,
        departments=departments,
        walk_in_department="internal",
        displays={d: [spec.slug for spec in departments] for d in displays},
        now=now,
    )
    patients = (
        SeededPatient(
            PatientCardNumber.issue(1, 1001).digits, "Yamada Hanako", "hanako@example.jp", "01"
        ),
        SeededPatient(
            PatientCardNumber.issue(1, 1002).digits, "Suzuki Taro", "taro@example.jp", "01"
        ),
        SeededPatient(
            PatientCardNumber.issue(7, 2001).digits, "Tanaka Yuki", "yuki@example.jp", "07"
        ),
        SeededPatient(PatientCardNumber.issue(1, 1003).digits, "Sato Ken", None, "01"),
    )
    known = set(  # the registry is the network's: a second site finds them there
        session.scalars(
            select(Patient.card_number).where(Patient.card_number.in_([p.card for p in patients]))
        )
    )
    session.add_all(
        Patient(
            card_number=p.card,
            name=p.name,
            email=p.email,
            issuing_facility=p.facility,
            created_at=now,
            updated_at=now,
        )
        for p in patients
        if p.card not in known
    )
    appointments = (
        SeededAppointment(f"{site}-1", patients[0].card, "internal", now + 20 * 60),
        SeededAppointment(f"{site}-2", patients[1].card, "pediatrics", now + 2 * 3600),
    )
    session.add_all(
        Appointment(
            source=APPOINTMENT_SOURCE,
            external_id=a.external_id,
            card_number=a.card,
            site=site,
            department=a.department,
            at=a.at,
            cancelled=False,
            imported_at=now,
        )
        for a in appointments
    )
    seeded = seed_users(session, {"clinic": Role.CLINIC} if users is None else users, now)
    if members is None:
        members = [u.username for u in seeded.values() if u.role is Role.CLINIC]
    seed_department(session, department, site, members, now)
    return ClinicSeed(
        site=site,
        gateway=gateway,
        name=name,
        displays=tuple(displays),
        walk_in_department="internal",
        departments={d.slug: d.rooms for d in departments},
        patients=patients,
        appointments=appointments,
        users=seeded,
    )
