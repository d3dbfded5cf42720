"""The agent's clinic events applied by the cloud (SQLite and PostgreSQL): once each by
envelope id, and a busy morning with the internet cut reconciled with the tickets the
cloud issued meanwhile: no ticket lost, none twice, refused replays answered and logged,
the figures counting the offline tickets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.clinic.agent_sync import ClinicEvent
from cloud.clinic.appointments import AppointmentRecord, PatientRecord
from cloud.clinic.models import TicketSource
from cloud.clinic.staff import StaffRequest
from protocol.ids import uuid7
from protocol.messages import CheckinData, ClinicAction, ClinicActionData, LocalTicket
from protocol.patient_card import PatientCardNumber, card_tag
from protocol.queue_rules import tokyo_day
from tests.support.clinic import MIN, NINE, ClinicWorld, clinic_world, extra_card
from tests.support.cloud import DB_KINDS

SITE, GW = "clinic-a", "gw-1"
HANAKO, YUKI, KEN = "Yamada Hanako", "Tanaka Yuki", "Sato Ken"


@pytest.fixture(params=DB_KINDS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ClinicWorld]:
    with clinic_world(request.param, tmp_path) as w:
        yield w


def event(at: float, data: ClinicEvent) -> tuple[str, ClinicEvent]:
    """An event as the agent numbers it: a UUIDv7 of its birth time."""
    return uuid7(int(at * 1000)), data


def checkin(at: float, card: str | None = None, local: LocalTicket | None = None) -> ClinicEvent:
    return CheckinData(card=card, kiosk="kiosk-1", at=int(at), local=local)


def action(
    at: float,
    kind: ClinicAction,
    number: str | None = None,
    *,
    room: str | None = None,
    department: str = "internal",
    local: bool = False,
) -> ClinicEvent:
    return ClinicActionData(
        action=kind, department=department, number=number, room=room, at=int(at), local=local
    )


def test_agent_events_delivered_twice_are_applied_once(world: ClinicWorld) -> None:
    events = [
        event(NINE, checkin(NINE, world.card(HANAKO))),
        event(NINE + 1, checkin(NINE + 1, world.card(KEN))),
        event(NINE + 2, action(NINE + 2, ClinicAction.CALL_NEXT, room="1")),
        event(NINE + 3, checkin(NINE + 3, extra_card(999_999))),  # not registered
    ]
    sync = world.clinic.agent_sync
    assert sync.apply(SITE, GW, events) == 4
    assert sync.apply(SITE, GW, events) == 0  # redelivered: nothing more
    assert sync.apply(SITE, GW, events[1:2] * 2) == 0
    state = world.clinic.publisher.documents(SITE).state
    assert [(t.number, t.state.value, t.room) for t in state.tickets] == [
        ("A-001", "called", "1"),
        ("A-002", "waiting", None),
    ]
    answers = {r.request_id: (r.ok, r.number, r.error) for r in state.results}
    assert answers == {
        events[0][0]: (True, "A-001", None),
        events[1][0]: (True, "A-002", None),
        events[2][0]: (True, "A-001", None),
        events[3][0]: (False, None, "this card is not registered; please see reception"),
    }
    assert state.applied_through == max(request_id for request_id, _ in events)
    # Hanako's appointment is checked in: only Taro's (11:00) is left, as a card tag
    key = bytes.fromhex(state.card_key)
    taro = PatientCardNumber(world.card("Suzuki Taro"))
    assert [(a.card_tag, a.department) for a in state.appointments] == [
        (card_tag(key, taro), "pediatrics")
    ]
    # the answers leave the state after ten minutes
    world.clock.advance(11 * MIN)
    assert world.clinic.publisher.documents(SITE).state.results == []


def test_an_offline_morning_reconciles_with_the_tickets_the_cloud_issued_meanwhile(
    world: ClinicWorld,
) -> None:
    sync, svc = world.clinic.agent_sync, world.clinic
    late = extra_card(6001)
    svc.appointments.upsert_patients([PatientRecord(late, "Kato Mai", "mai@example.jp")], "ops:his")
    svc.appointments.upsert_appointments(
        "his", [AppointmentRecord("his-9", late, SITE, "internal", int(NINE + 15 * MIN))]
    )
    # 09:00 online: two kiosk check-ins the cloud answers (A-001 Hanako, A-002 Ken)
    online = [
        event(NINE, checkin(NINE, world.card(HANAKO))),
        event(NINE + 60, checkin(NINE + 60, world.card(KEN))),
    ]
    assert sync.apply(SITE, GW, online) == 2
    # 09:05 the internet is cut; the agent runs the queue itself (numbers from 700) …
    t = NINE + 5 * MIN
    offline = [
        event(
            t + 60,
            checkin(t + 60, world.card(YUKI), LocalTicket(number="A-700", department="internal")),
        ),
        event(
            t + 90,
            checkin(
                t + 90, None, LocalTicket(number="B-700", department="pediatrics", urgent=True)
            ),
        ),
        event(
            t + 100,
            checkin(
                t + 100,
                late,
                LocalTicket(
                    number="A-701", department="internal", appointment_at=int(NINE + 15 * MIN)
                ),
            ),
        ),
        event(t + 120, action(t + 120, ClinicAction.CALL, "A-001", room="1", local=True)),
        event(t + 180, action(t + 180, ClinicAction.START, "A-001", local=True)),
        event(t + 200, action(t + 200, ClinicAction.CALL, "A-700", room="2", local=True)),
        event(
            t + 240,
            action(
                t + 240, ClinicAction.CALL, "B-700", room="3", department="pediatrics", local=True
            ),
        ),
        event(t + 600, action(t + 600, ClinicAction.DONE, "A-001", local=True)),
        event(
            t + 660,
            action(t + 660, ClinicAction.NO_SHOW, "B-700", department="pediatrics", local=True),
        ),
    ]
    # … while the cloud goes on: an app check-in, and reception calls that patient to
    # room 2 from the cloud's staff page
    svc.appointments.upsert_patients([PatientRecord(extra_card(6003), "Ito Jun", None)], "ops:his")
    world.clock.set(t + 30)
    jun = svc.checkin.check_in(SITE, extra_card(6003), source=TicketSource.APP)
    assert jun.number == "A-003"
    world.clock.set(t + 60)
    call = StaffRequest(ClinicAction.CALL, "A-003", room="2")
    assert svc.staff.act(SITE, call, "clinic:desk").room == "2"
    # 09:30 the link is back: the agent's outbox arrives in order, then again (redelivery)
    world.clock.set(NINE + 30 * MIN)
    assert sync.apply(SITE, GW, offline) == len(offline)
    assert sync.apply(SITE, GW, offline) == 0
    state = svc.publisher.documents(SITE).state
    tickets = {t.number: (t.department, t.state.value, t.room) for t in state.tickets}
    assert tickets == {
        "A-001": ("internal", "done", "1"),  # called and seen offline
        "A-002": ("internal", "waiting", None),
        "A-003": ("internal", "called", "2"),  # checked in and called in the cloud meanwhile
        "A-700": ("internal", "waiting", None),  # room 2 was busy: refused, kept waiting
        "A-701": ("internal", "waiting", None),
        "B-700": ("pediatrics", "no_show", "3"),
    }
    refused = [r for r in state.results if not r.ok]
    assert [(r.request_id, r.number) for r in refused] == [(offline[5][0], "A-700")]
    assert refused[0].error is not None
    assert refused[0].error.startswith("room 2 still has A-003 called")
    log = svc.audit.actions(SITE, tokyo_day(NINE))
    assert [(e.action, e.number, e.ok) for e in log if e.actor.startswith("agent")] == [
        ("call", "A-001", True),
        ("start", "A-001", True),
        ("call", "A-700", False),
        ("call", "B-700", True),
        ("done", "A-001", True),
        ("no_show", "B-700", True),
    ]
    assert state.applied_through == offline[-1][0]
    internal = state.department("internal")
    assert internal is not None
    assert (internal.last_number, internal.last_local_number) == (3, 701)
    # the late patient's appointment is taken by her offline ticket; the next cloud number
    # follows the cloud's own
    assert all(a.at != int(NINE + 15 * MIN) for a in state.appointments)
    view = svc.staff.queue(SITE, "internal")
    names = {w.number: w.patient_name for w in view.waiting}
    assert names["A-700"] == YUKI
    assert names["A-701"] == "Kato Mai"
    nxt = svc.checkin.check_in(SITE, None, source=TicketSource.DESK)
    assert nxt.number == "A-004"
    figures = svc.figures.day(SITE, tokyo_day(NINE))
    assert (figures.checkins, figures.offline_tickets) == (7, 3)
    by_department = {d.department: d for d in figures.departments}
    internal_figures = by_department["internal"]
    assert internal_figures.called == 2  # A-001 after 7 min (offline), A-003 after 30 s
    assert (internal_figures.wait_median_s, internal_figures.wait_p90_s) == (225.0, 420.0)
    assert (by_department["pediatrics"].no_shows, by_department["pediatrics"].no_show_rate) == (
        1,
        1.0,
    )
    assert figures.no_show_rate == 0.5
    assert [(h.hour, h.checkins) for h in figures.checkins_per_hour] == [(9, 7)]
