"""Booking services against a real database, on SQLite and on PostgreSQL: rules, rooms and
locks, availability, the concurrent race, double submit, cancellation, confirmation from
the mail, auto-approval, payment."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.bootstrap import DemoSeed, seed_demo
from cloud.core.bus import ChangeBus
from cloud.db import make_engine, make_sessionmaker, migrate
from cloud.errors import CloudError, ConflictError, InvalidRequestError, NotFoundError
from cloud.gym.access import AccessChanged
from cloud.gym.facility_rules import RulesUpdate
from cloud.gym.models import PaymentState, Reservation, ReservationStatus
from cloud.gym.reservations import BookingRequest
from cloud.gym.views import OpeningHoursView
from cloud.services import Services, build_services
from cloud.settings import CloudSettings
from protocol.clock import ManualClock
from protocol.pin import pin_tag
from tests.support.cloud import DB_KINDS, fresh_database
from tests.support.confirm_mail import confirm_in_service
from tests.unit.test_booking_rules import at

NOW = at("2027-01-15 09:00")  # a Friday
HOUR = 3600
EVENING = (at("2027-01-15 18:00"), at("2027-01-15 20:00"))


@dataclass
class Gym:
    """Gym B: Mon-Sat 09:00-21:00, two courts behind one entrance; court B has its own door."""

    svc: Services
    sessions: sessionmaker[Session]
    clock: ManualClock
    seed: DemoSeed
    notified: list[tuple[str, str]]
    facility_id: int
    court_a: int
    court_b: int
    keys: dict[str, str]


def recorder(into: list[tuple[str, str]]) -> ChangeBus:
    """A change bus that writes down every gateway whose access snapshot changed."""
    bus = ChangeBus()
    bus.subscribe(AccessChanged, lambda change: into.append((change.site, change.gateway)))
    return bus


@pytest.fixture(params=DB_KINDS)
def gym(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gym]:
    with fresh_database(request.param, tmp_path) as url:
        migrate(url)
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        clock = ManualClock(NOW)
        notified: list[tuple[str, str]] = []
        svc = build_services(sessions, clock, CloudSettings(dev=True), recorder(notified))
        with sessions.begin() as session:
            seed = seed_demo(session, clock=clock)
        f = svc.facilities.create_facility("Gym B", "gym-b", "gw-1")
        svc.facility_rules.set_hours(f.id, [OpeningHoursView(d, 9 * 60, 21 * 60) for d in range(6)])
        svc.facility_rules.set_rules(f.id, RulesUpdate(1200, 60, 180, 60, 30))
        svc.facility_rules.add_closed_day(f.id, date(2027, 1, 20), "school sports day")
        court_a = svc.facilities.add_room(f.id, "Court A", capacity=20).id
        court_b = svc.facilities.add_room(f.id, "Court B").id
        _, entrance = svc.facilities.add_lock(f.id, "gym-b-entrance", "Entrance")
        _, own = svc.facilities.add_lock(f.id, "gym-b-court-b", "Court B door", room_id=court_b)
        keys = {"gym-b-entrance": entrance, "gym-b-court-b": own}
        notified.clear()
        yield Gym(svc, sessions, clock, seed, notified, f.id, court_a, court_b, keys)
        engine.dispose()


def req(g: Gym, slot: tuple[int, int] = EVENING, **kw: object) -> BookingRequest:
    base = BookingRequest("Taro Yamada", "taro@example.jp", *slot, room_id=g.court_a)
    return replace(base, **kw)  # type: ignore[arg-type]


def book(g: Gym, slot: tuple[int, int] = EVENING, **kw: object) -> str:
    """Book and confirm from the mail, as the citizen does."""
    r = g.svc.reservations.create(req(g, slot, **kw)).reservation
    confirm_in_service(g.svc, g.sessions, r.email, r.id)
    return r.id


def pin_of(g: Gym, rid: str) -> str | None:
    """The PIN the citizen's status view shows (by the booking's link)."""
    with g.sessions() as session:
        r = session.get(Reservation, rid)
        assert r is not None
        token = r.access_token
    grant = g.svc.reservations.for_citizen(rid, token).grant
    return None if grant is None else grant.pin


def grants_on(g: Gym, lock_id: str) -> dict[str, str]:
    snap = g.svc.access.snapshot("gym-b", "gw-1")
    lock = next(x for x in snap.locks if x.lock_id == lock_id)
    return {e.grant_id: e.tag for e in lock.grants}


def test_a_rule_broken_through_the_service_says_what_to_do(gym: Gym) -> None:
    with pytest.raises(InvalidRequestError, match="closed on 2027-01-20 \\(school sports day\\)"):
        book(gym, (at("2027-01-20 10:00"), at("2027-01-20 11:00")))
    with pytest.raises(InvalidRequestError, match="at least 1 hour ahead"):
        book(gym, (at("2027-01-15 09:30"), at("2027-01-15 10:30")))
    with pytest.raises(InvalidRequestError, match="Court A holds groups of up to 20; you are 25"):
        book(gym, group_size=25)
    with pytest.raises(InvalidRequestError, match="please give the name"):
        book(gym, citizen_name=" ")
    with pytest.raises(NotFoundError, match="no room 999"):
        book(gym, room_id=999)


def test_a_booking_costs_hours_times_the_fee_and_records_who_and_why(gym: Gym) -> None:
    new = gym.svc.reservations.create(req(gym, group_size=12, purpose="volleyball practice"))
    r = new.reservation
    assert (r.fee_yen, r.payment_state, r.payment_method) == (2400, PaymentState.UNPAID, "counter")
    assert (r.group_size, r.purpose, r.room_name) == (12, "volleyball practice", "Court A")
    assert "pay \u00a52,400 at the counter of Gym B" in r.payment_instructions
    assert r.status is ReservationStatus.UNCONFIRMED
    (ask,) = gym.svc.mail.messages()
    assert ask.subject == "予約の確認 / Please confirm your booking: Gym B"
    confirm_in_service(gym.svc, gym.sessions, r.email, r.id)
    mail = gym.svc.mail.messages()[0]
    assert mail.subject == "Booking received: Gym B"
    assert "\u00a52,400" in mail.body
    assert new.access_token not in mail.body  # the status link is the citizen's alone


def test_two_courts_are_booked_at_once_and_each_pin_opens_the_right_doors(gym: Gym) -> None:
    a_id, b_id = book(gym), book(gym, room_id=gym.court_b, email="b@x.jp")
    a = gym.svc.approvals.approve(a_id, by="mgr").grant
    b = gym.svc.approvals.approve(b_id, by="mgr").grant
    assert a is not None
    assert b is not None
    b_pin = pin_of(gym, b_id)
    assert b_pin is not None
    assert pin_of(gym, a_id) != b_pin  # overlapping windows on the shared entrance
    entrance, court_b_door = grants_on(gym, "gym-b-entrance"), grants_on(gym, "gym-b-court-b")
    assert set(entrance) == {a.id, b.id}
    assert set(court_b_door) == {b.id}
    key = bytes.fromhex(gym.keys["gym-b-court-b"])
    assert court_b_door[b.id] == pin_tag(key, b_pin).hex()
    assert gym.notified == [("gym-b", "gw-1")] * 2


def test_a_lock_that_serves_several_rooms_cannot_be_booked_by_lock_id(gym: Gym) -> None:
    with pytest.raises(InvalidRequestError, match=r"serves 2 rooms.*book by room_id instead"):
        book(gym, room_id=None, lock_id="gym-b-entrance")
    rid = book(gym, room_id=None, lock_id="gym-b-court-b")  # its own door: one room
    assert gym.svc.reservations.get(rid).room_id == gym.court_b


def test_availability_shows_free_taken_and_not_bookable_stretches(gym: Gym) -> None:
    book(gym, (at("2027-01-15 13:00"), at("2027-01-15 15:00")))
    day = gym.svc.availability.day(gym.facility_id, date(2027, 1, 15))
    assert (day.opens_at, day.closes_at) == (at("2027-01-15 09:00"), at("2027-01-15 21:00"))
    court_a, court_b = day.rooms
    assert [(s.state, s.start, s.end) for s in court_a.segments] == [
        ("unavailable", at("2027-01-15 09:00"), at("2027-01-15 10:00")),  # lead time
        ("free", at("2027-01-15 10:00"), at("2027-01-15 13:00")),
        ("taken", at("2027-01-15 13:00"), at("2027-01-15 15:00")),
        ("free", at("2027-01-15 15:00"), at("2027-01-15 21:00")),
    ]
    assert [s.state for s in court_b.segments] == ["unavailable", "free"]
    sunday = gym.svc.availability.day(gym.facility_id, date(2027, 1, 17))
    assert sunday.closed_reason == "closed on Sundays"
    closed = gym.svc.availability.day(gym.facility_id, date(2027, 1, 20), gym.court_a)
    assert closed.closed_reason == "school sports day"
    far = gym.svc.availability.day(gym.facility_id, date(2027, 3, 1))
    assert {s.reason for r in far.rooms for s in r.segments} == {"bookings open 30 days ahead"}


def _count(g: Gym) -> int:
    with g.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Reservation)) or 0)


def test_ten_citizens_racing_for_one_slot_get_one_booking_and_nine_clear_refusals(
    gym: Gym,
) -> None:
    start = threading.Barrier(10)

    def attempt(i: int) -> str:
        start.wait()
        try:
            gym.svc.reservations.create(req(gym, citizen_name=f"c {i}", email=f"c{i}@example.jp"))
        except ConflictError as exc:
            return str(exc)
        return "booked"

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(attempt, range(10)))
    assert results.count("booked") == 1
    refusals = [r for r in results if r != "booked"]
    assert len(refusals) == 9
    assert all("overlaps an unconfirmed booking of Court A" in r for r in refusals)
    assert all("pick another time" in r for r in refusals)
    assert _count(gym) == 1


def test_a_retry_with_the_same_idempotency_key_returns_the_first_booking(gym: Gym) -> None:
    first = gym.svc.reservations.create(req(gym, idempotency_key="key-0001-abcdef"))
    again = gym.svc.reservations.create(req(gym, idempotency_key="key-0001-abcdef"))
    assert again.replayed
    assert not first.replayed
    assert (again.reservation.id, again.access_token) == (first.reservation.id, first.access_token)
    assert _count(gym) == 1
    assert len(gym.svc.mail.messages()) == 1
    with pytest.raises(ConflictError, match="was used for another booking; send a new key"):
        gym.svc.reservations.create(
            req(
                gym,
                (at("2027-01-16 10:00"), at("2027-01-16 11:00")),
                idempotency_key="key-0001-abcdef",
            )
        )


def test_concurrent_retries_with_one_key_make_one_booking(gym: Gym) -> None:
    start = threading.Barrier(6)

    def attempt(_: int) -> str:
        start.wait()
        return gym.svc.reservations.create(req(gym, idempotency_key="retry-key-42")).reservation.id

    with ThreadPoolExecutor(6) as pool:
        ids = set(pool.map(attempt, range(6)))
    assert len(ids) == 1
    assert _count(gym) == 1


def test_a_double_submit_without_a_key_is_refused_and_says_it_is_yours(gym: Gym) -> None:
    book(gym)
    with pytest.raises(
        ConflictError, match=r"you booked Court A for 18:00.*already.*link in the mail"
    ):
        book(gym, email="TARO@example.jp")
    assert _count(gym) == 1


def test_the_citizen_cancels_with_the_token_and_the_pin_leaves_the_snapshot(gym: Gym) -> None:
    new = gym.svc.reservations.create(req(gym))
    confirm_in_service(gym.svc, gym.sessions, "taro@example.jp", new.reservation.id)
    approved = gym.svc.approvals.approve(new.reservation.id, by="mgr")
    assert approved.grant is not None
    assert approved.grant.id in grants_on(gym, "gym-b-entrance")
    version = gym.svc.access.snapshot("gym-b", "gw-1").version
    gym.notified.clear()
    with pytest.raises(NotFoundError, match="no booking matches this link"):
        gym.svc.cancellations.by_citizen(new.reservation.id, "wrong", "ill")
    with pytest.raises(InvalidRequestError, match="give a reason"):
        gym.svc.cancellations.by_citizen(new.reservation.id, new.access_token, " ")
    done = gym.svc.cancellations.by_citizen(new.reservation.id, new.access_token, "we are ill")
    assert (done.status, done.cancelled_by, done.cancel_reason) == (
        ReservationStatus.CANCELLED,
        "citizen",
        "we are ill",
    )
    assert done.grant is None
    snap = gym.svc.access.snapshot("gym-b", "gw-1")
    assert snap.version > version
    assert all(not lock.grants for lock in snap.locks)
    assert gym.notified == [("gym-b", "gw-1")]
    mail = gym.svc.mail.messages()[0]
    assert mail.subject == "Booking cancelled: Gym B"
    assert "Reason: we are ill" in mail.body
    assert "no longer opens the door" in mail.body
    with pytest.raises(ConflictError, match="is cancelled; only an unconfirmed, pending or"):
        gym.svc.cancellations.by_citizen(new.reservation.id, new.access_token, "again")
    book(gym, email="other@x.jp")  # the slot is free again


def test_the_manager_cancels_a_paid_booking_and_it_is_refunded(gym: Gym) -> None:
    rid = book(gym)
    gym.svc.approvals.approve(rid, by="mgr")
    paid = gym.svc.payments.mark_paid(rid, by="manager:mgr")
    assert paid.payment_state is PaymentState.PAID
    with pytest.raises(ConflictError, match="is paid already"):
        gym.svc.payments.mark_paid(rid, by="manager:mgr")
    gym.clock.set(at("2027-01-15 18:30"))  # during the booking: only a manager may cancel
    done = gym.svc.cancellations.by_manager(rid, "mgr", "water leak in the hall")
    assert (done.cancelled_by, done.payment_state) == ("manager:mgr", PaymentState.REFUNDED)
    assert grants_on(gym, "gym-b-entrance") == {}
    body = gym.svc.mail.messages()[0].body
    assert "The facility manager cancelled your booking" in body
    assert "\u00a52,400 is refunded: collect it at the counter of Gym B" in body
    with pytest.raises(ConflictError, match="is cancelled; there is nothing to pay"):
        gym.svc.payments.mark_paid(rid, by="manager:mgr")


def test_cancelling_an_unpaid_booking_leaves_it_unpaid_and_late_cancels_are_refused(
    gym: Gym,
) -> None:
    rid = book(gym)
    new = gym.svc.reservations.create(req(gym, (at("2027-01-16 10:00"), at("2027-01-16 11:00"))))
    assert gym.svc.cancellations.by_manager(rid, "mgr", "closure").payment_state is (
        PaymentState.UNPAID
    )
    gym.clock.set(at("2027-01-16 10:30"))
    with pytest.raises(ConflictError, match="started at 2027-01-16 10:00; to end it early"):
        gym.svc.cancellations.by_citizen(new.reservation.id, new.access_token, "late")
    gym.clock.set(at("2027-01-16 11:00"))
    with pytest.raises(ConflictError, match="ended at 2027-01-16 11:00"):
        gym.svc.cancellations.by_manager(new.reservation.id, "mgr", "late")


def test_a_registered_group_is_approved_by_itself_and_gets_its_pin_at_once(gym: Gym) -> None:
    gym.svc.facility_rules.add_group(gym.facility_id, "Kaike Volleyball Club", "Club@Example.jp")
    with pytest.raises(ConflictError, match="registered at this facility already"):
        gym.svc.facility_rules.add_group(gym.facility_id, "again", "club@example.jp")
    booked = gym.svc.reservations.create(req(gym, email="club@example.jp")).reservation
    # nothing before the club's mailbox answers: no PIN, no lock told
    assert (booked.status, booked.grant, gym.notified) == (ReservationStatus.UNCONFIRMED, None, [])
    assert grants_on(gym, "gym-b-entrance") == {}
    r = confirm_in_service(gym.svc, gym.sessions, "club@example.jp", booked.id).reservation
    assert r.status is ReservationStatus.APPROVED
    assert r.decided_by == "rule:registered-group:Kaike Volleyball Club"
    assert r.grant is not None
    assert r.grant.id in grants_on(gym, "gym-b-entrance")
    assert gym.notified == [("gym-b", "gw-1")]
    mail = gym.svc.mail.messages()[0]
    assert mail.subject == "Your PIN for Court A"
    pin = pin_of(gym, r.id)
    assert pin is not None
    assert "PIN: [" in mail.body
    assert pin not in mail.body  # staff read the mail without the PIN
    other = gym.svc.reservations.create(req(gym, room_id=gym.court_b)).reservation
    confirmed = confirm_in_service(gym.svc, gym.sessions, other.email, other.id)
    assert confirmed.reservation.status is ReservationStatus.PENDING


def test_off_peak_bookings_are_approved_by_themselves(gym: Gym) -> None:
    gym.svc.facility_rules.set_rules(gym.facility_id, RulesUpdate(1200, 60, 180, 60, 30, 540, 960))
    quiet = book(gym, (at("2027-01-15 10:00"), at("2027-01-15 12:00")))
    busy = book(gym, (at("2027-01-15 15:00"), at("2027-01-15 17:00")))
    assert gym.svc.reservations.get(quiet).decided_by == "rule:off-peak"
    assert gym.svc.reservations.get(busy).status is ReservationStatus.PENDING
    approved = gym.svc.approvals.approve(busy, by="mgr")
    assert approved.decided_by == "manager:mgr"


def test_rules_edits_are_checked(gym: Gym) -> None:
    set_rules = gym.svc.facility_rules.set_rules
    with pytest.raises(InvalidRequestError, match="not more than the maximum"):
        set_rules(gym.facility_id, RulesUpdate(0, 120, 60, 0, 30))
    with pytest.raises(InvalidRequestError, match="both ends of the off-peak hours"):
        set_rules(gym.facility_id, RulesUpdate(0, 60, 120, 0, 30, 540, None))
    with pytest.raises(InvalidRequestError, match="must open before it closes"):
        gym.svc.facility_rules.set_hours(gym.facility_id, [OpeningHoursView(0, 600, 540)])
    with pytest.raises(ConflictError, match="is a closed day already"):
        gym.svc.facility_rules.add_closed_day(gym.facility_id, date(2027, 1, 20), "again")
    rules = gym.svc.facility_rules.remove_closed_day(gym.facility_id, date(2027, 1, 20))
    assert rules.closed_days == ()
    book(gym, (at("2027-01-20 10:00"), at("2027-01-20 11:00")))


def test_a_pin_is_only_ever_shown_through_the_status_view(gym: Gym) -> None:
    rid = book(gym)
    view = gym.svc.approvals.approve(rid, by="mgr")
    assert view.grant is not None
    assert view.grant.pin is None  # the manager's view holds no PIN
    pin = pin_of(gym, rid)
    assert pin is not None
    assert pin not in repr(gym.svc.reservations.get(rid))
    with pytest.raises(CloudError):
        gym.svc.approvals.approve(rid, by="mgr")
