"""The clinic desk running the queues by itself (the link is down), on its real SQLite
stores and outbox, with a :class:`ManualClock`: numbering, appointments, staff actions as
events, handing back, the end of the day, and what stays in the files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.clinic.day_store import DayStore
from edge.clinic.desk import ClinicDesk, StaffRequest
from edge.clinic.kiosk_screens import ScreenKind
from edge.clinic.local_display import LOCAL_DISPLAY_VERSIONS
from edge.clinic.outcome import Running
from edge.config import SiteConfig, parse_config
from edge.outbox import Outbox
from edge.store import Store
from protocol import messages
from protocol.clock import ManualClock
from protocol.messages import (
    CheckinData,
    ClinicAction,
    ClinicActionData,
    ClinicAppointment,
    ClinicDepartment,
    ClinicDisplay,
    ClinicStateData,
    ClinicTicket,
    ClinicTicketState,
)
from protocol.patient_card import PatientCardNumber, card_tag

T0 = 1_799_971_200  # 2027-01-15 09:00 Asia/Tokyo
DAY = "2027-01-15"
KEY = bytes.fromhex("cd" * 32)
KIOSK = "kiosk-1"
WALK_IN = PatientCardNumber.issue(1, 1)
BOOKED = PatientCardNumber.issue(2, 42)
LATE = PatientCardNumber.issue(3, 3)


def config(tmp_path: Path) -> SiteConfig:
    return parse_config(
        {
            "site": "clinic-a",
            "gateway": "gw-1",
            "state_dir": str(tmp_path),
            "mqtt": {"host": "127.0.0.1"},
            "card_readers": [
                {"id": KIOSK, "transport": "serial:/dev/null", "walk_in_department": "internal"}
            ],
        }
    )


def clinic_state(version: int = 1, *, applied_through: str | None = None) -> ClinicStateData:
    return ClinicStateData(
        version=version,
        day=DAY,
        card_key=KEY.hex(),
        walk_in_department="internal",
        departments=[
            ClinicDepartment(id="internal", name="Internal medicine", prefix="A", rooms=["1", "2"]),
            ClinicDepartment(id="ortho", name="Orthopaedics", prefix="B", rooms=["3"]),
        ],
        tickets=[
            ClinicTicket(
                number="A-001",
                department="internal",
                state=ClinicTicketState.WAITING,
                queued_at=T0 - 600,
            )
        ],
        appointments=[
            ClinicAppointment(card_tag=card_tag(KEY, BOOKED), department="ortho", at=T0 + 600),
            ClinicAppointment(card_tag=card_tag(KEY, LATE), department="ortho", at=T0 + 3600),
        ],
        displays=[ClinicDisplay(display_id="disp-1", departments=["internal", "ortho"])],
        applied_through=applied_through,
    )


class Parts:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.clock = ManualClock(T0)
        self.outbox = Outbox(tmp_path / "outbox.sqlite3")
        self.store = Store(tmp_path / "state.sqlite3")
        self.outbox.open()
        self.store.open()

    def desk(self) -> ClinicDesk:
        desk = ClinicDesk(
            config(self.tmp_path),
            store=DayStore(self.tmp_path / "clinic.sqlite3"),
            outbox=self.outbox,
            display_store=self.store,
            clock=self.clock,
        )
        desk.open()
        return desk

    def events(self) -> list[CheckinData | ClinicActionData]:
        out = []
        for row in self.outbox.peek(100):
            _, data = messages.parse(row.payload)
            assert isinstance(data, CheckinData | ClinicActionData)
            out.append(data)
        return out

    def close(self) -> None:
        self.outbox.close()
        self.store.close()


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    p = Parts(tmp_path)
    yield p
    p.close()


@pytest.fixture
def desk(parts: Parts) -> Iterator[ClinicDesk]:
    d = parts.desk()
    d.clinic_state_arrived(clinic_state())
    yield d
    d.close()


def staff(action: ClinicAction, number: str | None = None, **kw: str) -> StaffRequest:
    return StaffRequest(action=action, department="internal", number=number, **kw)


async def test_offline_check_ins_number_from_700_and_a_card_twice_keeps_its_ticket(
    desk: ClinicDesk, parts: Parts
) -> None:
    assert desk.running is Running.AGENT  # the link never came up
    walk_in = await desk.check_in(KIOSK, WALK_IN)
    assert (walk_in.kind, walk_in.number, walk_in.department) == (
        ScreenKind.TICKET,
        "A-700",
        "Internal medicine",
    )
    assert walk_in.estimated_wait_s == 300  # A-001 ahead, two rooms, ten minutes each
    booked = await desk.check_in(KIOSK, BOOKED)
    assert (booked.number, booked.department) == ("B-700", "Orthopaedics")
    again = await desk.check_in(KIOSK, WALK_IN)
    assert (again.number, again.message) == ("A-700", "You are already checked in.")

    first, second = parts.events()
    assert isinstance(first, CheckinData)
    assert first.local is not None
    assert (first.card, first.kiosk, first.department) == (WALK_IN.digits, KIOSK, "internal")
    assert (first.local.number, first.local.department, first.local.appointment_at) == (
        "A-700",
        "internal",
        None,
    )
    assert isinstance(second, CheckinData)
    assert second.local is not None
    assert (second.local.number, second.local.appointment_at) == ("B-700", T0 + 600)


async def test_an_appointment_opens_thirty_minutes_before_its_time(
    desk: ClinicDesk, parts: Parts
) -> None:
    early = await desk.check_in(KIOSK, LATE)  # 10:00; it is 09:00
    assert early.kind is ScreenKind.ERROR
    assert early.message == "Your appointment is at 10:00. Please check in from 09:30."
    parts.clock.set(T0 + 30 * 60)
    assert (await desk.check_in(KIOSK, LATE)).number == "B-700"
    assert len(parts.events()) == 1


async def test_offline_the_check_in_window_is_the_one_the_cloud_sent(
    desk: ClinicDesk, parts: Parts
) -> None:
    desk.clinic_state_arrived(
        clinic_state(2).model_copy(update={"checkin_opens_before_s": 90 * 60})
    )
    # 10:00 appointment, 09:00 now: inside this clinic's 90 minutes, so no refusal
    assert (await desk.check_in(KIOSK, LATE)).number == "B-700"


async def test_a_no_show_who_comes_back_gets_a_new_number(desk: ClinicDesk) -> None:
    assert (await desk.check_in(KIOSK, WALK_IN)).number == "A-700"
    assert (await desk.staff_action(staff(ClinicAction.CALL, "A-700", room="1"))).ok
    assert (await desk.staff_action(staff(ClinicAction.NO_SHOW, "A-700"))).ok
    assert (await desk.check_in(KIOSK, WALK_IN)).number == "A-701"


async def test_local_staff_actions_become_the_events_the_cloud_replays(
    desk: ClinicDesk, parts: Parts
) -> None:
    await desk.check_in(KIOSK, WALK_IN)
    called = await desk.staff_action(staff(ClinicAction.CALL_NEXT, room="1"))
    assert (called.ok, called.by, called.number) == (True, Running.AGENT, "A-001")
    busy = await desk.staff_action(staff(ClinicAction.CALL_NEXT, room="1"))
    assert not busy.ok
    assert "room 1 still has A-001 called" in busy.message
    missing = await desk.staff_action(staff(ClinicAction.START))
    assert not missing.ok
    assert "start needs a ticket number" in missing.message
    moved = await desk.staff_action(
        staff(ClinicAction.TRANSFER, "A-700", to_department="ortho", to_room="3")
    )
    assert moved.ok
    view = desk.queue_view("ortho")
    assert view is not None
    assert [t.number for t in view.waiting] == ["A-700"]

    _, call, transfer = parts.events()
    assert isinstance(call, ClinicActionData)
    assert (call.action, call.number, call.room, call.local) == (
        ClinicAction.CALL,
        "A-001",
        "1",
        True,
    )
    assert isinstance(transfer, ClinicActionData)
    assert (transfer.action, transfer.to_department, transfer.to_room) == (
        ClinicAction.TRANSFER,
        "ortho",
        "3",
    )

    shown = desk.display_state()
    assert shown is not None
    assert shown.version >= LOCAL_DISPLAY_VERSIONS
    (content,) = shown.displays
    assert [(r.room, r.number) for r in content.rooms] == [("1", "A-001")]
    assert content.next_numbers == ["A-700"]


async def test_event_ids_grow_while_the_clock_stands_still_and_after_a_restart(
    parts: Parts, desk: ClinicDesk
) -> None:
    for card in (WALK_IN, BOOKED):
        await desk.check_in(KIOSK, card)
    await desk.staff_action(staff(ClinicAction.CALL_NEXT, room="1"))
    desk.close()
    again = parts.desk()
    await again.staff_action(staff(ClinicAction.CALL_NEXT, room="2"))
    ids = [r.dedupe_key for r in parts.outbox.peek(10)]
    assert len(ids) == 4
    assert ids == sorted(ids)
    assert len(set(ids)) == 4
    assert (await again.check_in(KIOSK, LATE)).kind is ScreenKind.ERROR
    assert (await again.check_in(KIOSK, PatientCardNumber.issue(9, 9))).number == "A-701"
    again.close()


async def test_the_queues_are_handed_back_once_the_cloud_applied_the_last_event(
    desk: ClinicDesk, parts: Parts
) -> None:
    await desk.check_in(KIOSK, WALK_IN)
    await desk.check_in(KIOSK, BOOKED)
    first, last = (r.dedupe_key for r in parts.outbox.peek(2))
    desk.link_changed(True)
    assert desk.running is Running.AGENT  # connected, but events wait to be reconciled
    desk.clinic_state_arrived(clinic_state(2, applied_through=first))
    assert desk.running is Running.AGENT
    desk.clinic_state_arrived(clinic_state(3, applied_through=last))
    assert desk.status().running is Running.CLOUD
    assert desk.display_state() is None  # the cloud's (none stored here): not the local one
    desk.link_changed(False)
    assert desk.status().running is Running.AGENT


async def test_a_local_event_the_outbox_refused_is_sent_later_without_the_card(
    desk: ClinicDesk, parts: Parts
) -> None:
    parts.outbox.close()  # as if the disk were full: every add fails
    screen = await desk.check_in(KIOSK, WALK_IN)
    assert screen.number == "A-700"  # the patient has a number all the same
    parts.outbox.open()
    assert parts.outbox.depth() == 0
    desk.housekeeping()
    (event,) = parts.events()
    assert isinstance(event, CheckinData)
    assert event.local is not None
    assert (event.card, event.local.number) == (None, "A-700")


async def test_the_day_ends_and_its_data_leaves_the_files(desk: ClinicDesk, parts: Parts) -> None:
    await desk.check_in(KIOSK, WALK_IN)
    await desk.check_in(KIOSK, BOOKED)
    await desk.staff_action(staff(ClinicAction.CALL_NEXT, room="1"))
    for row in parts.outbox.peek(10):  # the broker took them
        parts.outbox.remove(row.id)
    tag = card_tag(KEY, WALK_IN)

    parts.clock.set(T0 + 15 * 3600 + 1)  # 00:00:01 the next day in Tokyo
    desk.housekeeping()
    assert desk.kiosk_screen(KIOSK).kind is ScreenKind.READY
    view = desk.queue_view("internal")
    assert view is not None
    assert view.waiting == []
    assert view.in_rooms == []
    assert desk.status().day == "2027-01-16"
    for path in parts.tmp_path.glob("*.sqlite3*"):
        data = path.read_bytes()
        assert tag.encode() not in data, path.name
        assert KEY.hex().encode() not in data, path.name
        assert WALK_IN.digits.encode() not in data, path.name
        if path.name.startswith("clinic"):
            assert b"A-700" not in data, path.name

    # still offline: the new day numbers from 700 again; yesterday's appointments are gone
    assert (await desk.check_in(KIOSK, WALK_IN)).number == "A-700"
    booked = await desk.check_in(KIOSK, BOOKED)
    assert (booked.number, booked.department) == ("A-701", "Internal medicine")


@pytest.mark.parametrize(
    ("stray_at", "why"),
    [(T0 + 600, "open now"), (T0 + 5 * 3600, "too early")],
)
async def test_offline_an_appointment_in_a_department_the_site_lacks_is_no_appointment(
    desk: ClinicDesk, parts: Parts, stray_at: int, why: str
) -> None:
    """As in the cloud (``check_in_on`` keeps only appointments whose department has a
    queue): such an appointment neither refuses the card nor sends it nowhere; the card
    checks in as a walk-in, or for its appointment in a department the site has."""
    stray = ClinicAppointment(card_tag=card_tag(KEY, WALK_IN), department="derm", at=stray_at)
    late_stray = ClinicAppointment(card_tag=card_tag(KEY, LATE), department="derm", at=T0)
    state = clinic_state(2)
    desk.clinic_state_arrived(
        state.model_copy(update={"appointments": [*state.appointments, stray, late_stray]})
    )
    walk_in = await desk.check_in(KIOSK, WALK_IN)
    assert (walk_in.kind, walk_in.number, walk_in.department) == (
        ScreenKind.TICKET,
        "A-700",
        "Internal medicine",
    ), why
    # LATE's 10:00 orthopaedics appointment is still too early at 09:00, whatever "derm" says
    early = await desk.check_in(KIOSK, LATE)
    assert early.message == "Your appointment is at 10:00. Please check in from 09:30."
    (event,) = parts.events()
    assert isinstance(event, CheckinData)
    assert event.local is not None
    assert (event.local.department, event.local.appointment_at) == ("internal", None)
