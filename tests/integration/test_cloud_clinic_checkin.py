"""Clinic check-in, imports, concurrent calls and patient notices against a real database
(SQLite and PostgreSQL), on a manual clock. The seeded site: internal medicine (A, rooms
1 and 2, the walk-in department) and pediatrics (B, room 3); Yamada Hanako has an
internal appointment at 09:20, Suzuki Taro a pediatrics one at 11:00; Tanaka Yuki's card
was issued by another hospital (facility 07); Sato Ken has no email."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cloud.bootstrap import seed_clinic
from cloud.clinic.appointments import AppointmentRecord, ImportResult, PatientRecord
from cloud.clinic.errors import CardNotRegisteredError, CheckinTooEarlyError, InvalidCardError
from cloud.clinic.models import Ticket, TicketSource
from cloud.clinic.staff import StaffRequest
from cloud.core.models import Role
from cloud.errors import InvalidRequestError, NotFoundError
from protocol.messages import ClinicAction
from protocol.patient_card import PatientCardNumber
from tests.support.clinic import MIN, NINE, ClinicWorld, clinic_world, extra_card
from tests.support.cloud import DB_KINDS

SITE = "clinic-a"
HANAKO, TARO, YUKI, KEN = "Yamada Hanako", "Suzuki Taro", "Tanaka Yuki", "Sato Ken"


@pytest.fixture(params=DB_KINDS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ClinicWorld]:
    with clinic_world(request.param, tmp_path) as w:
        yield w


def act(world: ClinicWorld, action: ClinicAction, number: str | None = None, **kw: str) -> str:
    request = StaffRequest(action, number, kw.get("room"), kw.get("to_department"))
    return world.clinic.staff.act(SITE, request, "clinic:test").number


def test_an_appointment_opens_for_check_in_30_minutes_before_its_time(world: ClinicWorld) -> None:
    checkin = world.clinic.checkin
    with pytest.raises(CheckinTooEarlyError) as refused:
        checkin.check_in(SITE, world.card(TARO))
    assert str(refused.value) == (
        "check-in for your 11:00 appointment opens at 10:30; please come back then"
    )
    assert refused.value.opens_at == NINE + 90 * MIN
    world.clock.set(NINE + 90 * MIN - 1)
    with pytest.raises(CheckinTooEarlyError):
        checkin.check_in(SITE, world.card(TARO))
    world.clock.set(NINE + 90 * MIN)
    taro = checkin.check_in(SITE, world.card(TARO))
    assert (taro.number, taro.department, taro.appointment_at) == (
        "B-001",
        "pediatrics",
        NINE + 2 * 3600,
    )
    hanako = checkin.check_in(SITE, world.card(HANAKO))  # 09:20 appointment, late is fine
    assert (hanako.number, hanako.department, hanako.appointment_at) == (
        "A-001",
        "internal",
        NINE + 20 * MIN,
    )
    assert world.changed == [(SITE, "gw-1")] * 2


def test_a_walk_in_goes_to_the_asked_department_or_the_walk_in_one(world: ClinicWorld) -> None:
    checkin = world.clinic.checkin
    yuki = checkin.check_in(SITE, world.card(YUKI), department="pediatrics")
    ken = checkin.check_in(SITE, world.card(KEN))
    assert (yuki.number, yuki.department, yuki.appointment_at) == ("B-001", "pediatrics", None)
    assert (ken.number, ken.department, ken.department_name) == (
        "A-001",
        "internal",
        "Internal medicine",
    )
    with pytest.raises(
        NotFoundError, match=r"no department 'x-ray' \(departments: internal, pediatrics\)"
    ):
        checkin.check_in(SITE, None, department="x-ray", source=TicketSource.DESK)
    with pytest.raises(NotFoundError, match="no clinic at site 'clinic-z'"):
        checkin.check_in("clinic-z", world.card(KEN))


def test_an_unknown_card_is_sent_to_reception_and_a_misread_is_refused(
    world: ClinicWorld, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cloud.clinic")
    stranger = extra_card(424242)
    with pytest.raises(
        CardNotRegisteredError, match=r"^this card is not registered; please see reception$"
    ):
        world.clinic.checkin.check_in(SITE, stranger)
    misread = world.card(KEN)[:-1] + str((int(world.card(KEN)[-1]) + 1) % 10)
    with pytest.raises(InvalidCardError) as bad:
        world.clinic.checkin.check_in(SITE, misread)
    assert "bad check digit" in str(bad.value)
    assert misread not in str(bad.value)
    ken = world.clinic.checkin.check_in(SITE, world.card(KEN))
    assert ken.number == "A-001"  # nothing was issued for the refused ones
    assert world.card(KEN) not in caplog.text
    assert KEN not in caplog.text
    assert "A-001" in caplog.text


def test_a_second_tap_gives_the_same_ticket_back(world: ClinicWorld) -> None:
    first = world.clinic.checkin.check_in(SITE, world.card(YUKI))
    again = world.clinic.checkin.check_in(SITE, world.card(YUKI))
    assert (again.number, again.existing, again.status_token) == (
        first.number,
        True,
        first.status_token,
    )
    assert not first.existing
    act(world, ClinicAction.CALL_NEXT, room="1")
    called = world.clinic.checkin.check_in(SITE, world.card(YUKI))
    assert (called.number, called.existing, called.estimated_wait_s) == ("A-001", True, 0.0)
    act(world, ClinicAction.START, "A-001")
    act(world, ClinicAction.DONE, "A-001")
    later = world.clinic.checkin.check_in(SITE, world.card(YUKI))  # back after being seen
    assert (later.number, later.existing) == ("A-002", False)
    with world.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Ticket)) == 2


def test_a_card_issued_by_another_hospital_checks_in_at_every_site(world: ClinicWorld) -> None:
    with world.sessions.begin() as session:
        seed_clinic(session, site="clinic-b", users={"clinic-b": Role.CLINIC}, clock=world.clock)
    card = world.card(YUKI)
    assert PatientCardNumber(card).facility == "07"
    at_a = world.clinic.checkin.check_in(SITE, card)
    at_b = world.clinic.checkin.check_in("clinic-b", card)
    assert (at_a.site, at_a.number, at_b.site, at_b.number) == (SITE, "A-001", "clinic-b", "A-001")


def test_urgent_first_then_appointments_then_walk_ins(world: ClinicWorld) -> None:
    checkin = world.clinic.checkin
    ken = checkin.check_in(SITE, world.card(KEN)).number  # walk-in, 09:00
    world.clock.advance(MIN)
    hanako = checkin.check_in(SITE, world.card(HANAKO)).number  # appointment 09:20
    world.clock.advance(MIN)
    urgent = checkin.check_in(SITE, None, urgent=True, source=TicketSource.DESK)
    assert urgent.number == "A-003"
    assert [act(world, ClinicAction.CALL_NEXT, room=r) for r in ("1", "2")] == [
        urgent.number,
        hanako,
    ]
    view = world.clinic.staff.queue(SITE, "internal")
    assert [(w.number, w.position, w.patient_name) for w in view.waiting] == [(ken, 1, KEN)]
    assert [(r.room, r.number, r.state) for r in view.rooms] == [
        ("1", "A-003", "called"),
        ("2", "A-002", "called"),
    ]


def test_two_rooms_calling_at_once_never_get_the_same_ticket(world: ClinicWorld) -> None:
    for i in range(8):
        world.clock.set(NINE + i)
        world.clinic.checkin.check_in(SITE, None, source=TicketSource.DESK)
    barrier = threading.Barrier(2)

    def call(room: str) -> str:
        barrier.wait(timeout=10)
        number = act(world, ClinicAction.CALL_NEXT, room=room)
        act(world, ClinicAction.START, number)
        act(world, ClinicAction.DONE, number)
        return number

    called: list[str] = []
    with ThreadPoolExecutor(2) as pool:
        for _ in range(4):
            called += pool.map(call, ["1", "2"])
    assert sorted(called) == [f"A-{i:03d}" for i in range(1, 9)]


def test_patients_are_told_once_when_their_turn_is_near_and_when_called(world: ClinicWorld) -> None:
    cards = [extra_card(5000 + i) for i in range(6)]
    world.clinic.appointments.upsert_patients(
        [
            PatientRecord(card, f"Patient {i}", None if i == 1 else f"p{i}@example.jp")
            for i, card in enumerate(cards)
        ],
        "ops:his",
    )
    for i, card in enumerate(cards):  # A-001 … A-006; the first four hear it at check-in
        world.clock.set(NINE + i)
        world.clinic.checkin.check_in(SITE, card)
    assert world.mails() == []
    assert act(world, ClinicAction.CALL_NEXT, room="1") == "A-001"
    act(world, ClinicAction.RECALL, "A-001")  # called again: no second mail
    assert act(world, ClinicAction.CALL_NEXT, room="2") == "A-002"  # no email: skipped
    act(world, ClinicAction.SKIP, "A-002")
    act(world, ClinicAction.RECALL, "A-002", room="2")
    mails = [(m.to, m.subject) for m in world.mails()]
    assert mails == [
        ("p0@example.jp", f"{world.seed.name}: A-001, please come to room 1"),
        ("p4@example.jp", f"{world.seed.name}: A-005, 3 patients before you"),
        ("p5@example.jp", f"{world.seed.name}: A-006, 3 patients before you"),
    ]
    assert all(card not in m.body for m in world.mails() for card in cards)


def test_imports_are_idempotent_and_a_cancelled_appointment_is_not_offered(
    world: ClinicWorld,
) -> None:
    svc = world.clinic.appointments
    card = extra_card(777)
    patients = [PatientRecord(card, "Kato Mai", "MAI@example.jp")]
    assert svc.upsert_patients(patients, "ops:his") == ImportResult(1, 0, 0)
    assert svc.upsert_patients(patients, "ops:his") == ImportResult(0, 0, 1)
    visit = AppointmentRecord("his-1", card, SITE, "pediatrics", int(NINE + 10 * MIN))
    assert svc.upsert_appointments("his", [visit]) == ImportResult(1, 0, 0)
    assert svc.upsert_appointments("his", [visit]) == ImportResult(0, 0, 1)
    assert world.changed == [(SITE, "gw-1")]  # today's list changed once
    cancelled = AppointmentRecord("his-1", card, SITE, "pediatrics", int(NINE + 10 * MIN), True)
    assert svc.upsert_appointments("his", [cancelled]) == ImportResult(0, 1, 0)
    mai = world.clinic.checkin.check_in(SITE, card)
    assert (mai.department, mai.appointment_at) == ("internal", None)  # a walk-in now
    with pytest.raises(
        InvalidRequestError, match=r"^appointments\[1\]: that is not a patient card"
    ):
        svc.upsert_appointments(
            "his", [visit, AppointmentRecord("x", card[:-1] + "0", SITE, "internal", 1)]
        )
    with pytest.raises(NotFoundError, match=r"appointments\[0\]: clinic-a has no department 'eye'"):
        svc.upsert_appointments("his", [AppointmentRecord("y", card, SITE, "eye", 1)])
    with pytest.raises(InvalidRequestError, match=r"patients\[0\]: the name is empty"):
        svc.upsert_patients([PatientRecord(card, " ")], "ops:his")
