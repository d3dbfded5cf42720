"""Domain services against a real database, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from cloud.bootstrap import DemoSeed, seed_demo
from cloud.core.bus import ChangeBus
from cloud.db import make_engine, make_sessionmaker, migrate
from cloud.errors import ConflictError, InvalidRequestError, NotFoundError
from cloud.gym.access import AccessChanged
from cloud.gym.models import LockEvent, ReservationStatus
from cloud.gym.reservations import BookingRequest
from cloud.gym.views import GrantView
from cloud.services import Services, build_services
from cloud.settings import CloudSettings
from protocol.clock import ManualClock
from protocol.messages import LockEventData, LockEventKind, LockTelemetry, TelemetryData
from protocol.pin import is_trivial, pin_tag
from tests.support.cloud import DB_KINDS, fresh_database
from tests.support.confirm_mail import citizen_view, confirm_in_service

# 2027-01-15 09:00 in Tokyo; bookings below are on that day
NOW = 1_799_971_200
HOUR = 3600
TEN = NOW + HOUR  # 10:00 Tokyo


@dataclass
class World:
    svc: Services
    sessions: sessionmaker[Session]
    clock: ManualClock
    seed: DemoSeed
    notified: list[tuple[str, str]]


def recorder(into: list[tuple[str, str]]) -> ChangeBus:
    """A change bus that writes down every gateway whose access snapshot changed."""
    bus = ChangeBus()
    bus.subscribe(AccessChanged, lambda change: into.append((change.site, change.gateway)))
    return bus


@pytest.fixture(params=DB_KINDS)
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    with fresh_database(request.param, tmp_path) as url:
        migrate(url)
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        clock = ManualClock(NOW)
        notified: list[tuple[str, str]] = []
        svc = build_services(sessions, clock, CloudSettings(dev=True), recorder(notified))
        with sessions.begin() as session:
            seed = seed_demo(session, clock=clock)
        yield World(svc, sessions, clock, seed, notified)
        engine.dispose()


def book(
    w: World, start: int, end: int, name: str = "Taro Yamada", email: str = "taro@example.jp"
) -> str:
    """Book and confirm from the mail, as the citizen does."""
    req = BookingRequest(name, email, start, end, lock_id=w.seed.lock_id)
    rid = w.svc.reservations.create(req).reservation.id
    confirm_in_service(w.svc, w.sessions, email, rid)
    return rid


def approve(w: World, rid: str) -> GrantView:
    """The manager approves; the grant as the citizen's status view shows it (with PIN)."""
    w.svc.approvals.approve(rid, by="manager")
    grant = citizen_view(w.svc, w.sessions, rid).grant
    assert grant is not None
    assert grant.pin is not None
    return grant


def test_booking_that_ends_before_it_starts_is_refused(world: World) -> None:
    with pytest.raises(InvalidRequestError, match=r"must end after it starts.*pick a later end"):
        book(world, TEN, TEN - HOUR)


def test_booking_in_the_past_is_refused(world: World) -> None:
    world.clock.advance(2 * HOUR)  # 11:00 now
    with pytest.raises(InvalidRequestError, match="10:00\u201311:00 on 2027-01-15 is in the past"):
        book(world, TEN, TEN + HOUR)


def test_overlapping_booking_is_refused_with_the_slot_in_local_time(world: World) -> None:
    first = book(world, TEN, TEN + HOUR)
    with pytest.raises(ConflictError, match=r"overlaps a pending booking.*pick another time"):
        book(world, TEN + 1800, TEN + 2 * HOUR)
    unconfirmed = BookingRequest(
        "Jiro", "jiro@example.jp", TEN + 2 * HOUR, TEN + 3 * HOUR, lock_id="gym-a-1"
    )
    world.svc.reservations.create(unconfirmed)
    with pytest.raises(ConflictError, match=r"overlaps an unconfirmed booking"):
        book(world, TEN + 2 * HOUR, TEN + 3 * HOUR)
    world.clock.advance(30 * 60)  # its link expired: the slot is free, before the job ran
    book(world, TEN + 2 * HOUR, TEN + 3 * HOUR)
    world.svc.approvals.approve(first, by="manager")
    with pytest.raises(
        ConflictError,
        match="the slot 10:00\u201311:00 on 2027-01-15 overlaps an approved booking",
    ):
        book(world, TEN, TEN + HOUR, name="Hanako", email="hanako@example.jp")
    book(world, TEN + HOUR, TEN + 2 * HOUR)  # back to back is fine


def test_unknown_lock(world: World) -> None:
    with pytest.raises(NotFoundError, match="no lock 'nope'"):
        world.svc.reservations.create(
            BookingRequest("A", "a@example.jp", TEN, TEN + HOUR, lock_id="nope")
        )


def test_approve_issues_a_pin_with_margins_mails_it_and_notifies(world: World) -> None:
    rid = book(world, TEN, TEN + HOUR)
    world.notified.clear()
    approved = world.svc.approvals.approve(rid, by="manager")
    grant = citizen_view(world.svc, world.sessions, rid).grant
    assert approved.status is ReservationStatus.APPROVED
    assert grant is not None
    assert grant.pin is not None
    assert len(grant.pin) == 6
    assert grant.pin.isdigit()
    assert not is_trivial(grant.pin)
    assert (grant.window_start, grant.window_end) == (TEN - 900, TEN + HOUR + 900)
    assert grant.pin not in repr(approved)
    assert world.notified == [(world.seed.site, world.seed.gateway)]
    mail = world.svc.mail.messages()[0]
    assert mail.to == "taro@example.jp"
    assert "PIN: [" in mail.body  # staff read it without the PIN
    assert grant.pin not in mail.body
    assert "Valid from 2027-01-15 09:45 to 2027-01-15 11:15 (Asia/Tokyo)" in mail.body
    with pytest.raises(ConflictError, match="is approved; only a pending one can be approved"):
        world.svc.approvals.approve(rid, by="manager")


def test_overlapping_windows_on_one_lock_get_different_pins(world: World) -> None:
    # back-to-back bookings: their PIN windows overlap by the margins
    pins = set()
    for i in range(8):
        rid = book(world, TEN + i * HOUR, TEN + (i + 1) * HOUR, name=f"citizen {i}")
        pins.add(approve(world, rid).pin)
    assert len(pins) == 8


def test_snapshot_carries_tags_not_pins_and_grows_its_version(world: World) -> None:
    before = world.svc.access.snapshot(world.seed.site, world.seed.gateway)
    assert [lock.lock_id for lock in before.locks] == [world.seed.lock_id]
    assert before.locks[0].grants == []
    grant = approve(world, book(world, TEN, TEN + HOUR))
    after = world.svc.access.snapshot(world.seed.site, world.seed.gateway)
    assert after.version > before.version
    (entry,) = after.locks[0].grants
    assert entry.grant_id == grant.id
    assert entry.tag == pin_tag(bytes.fromhex(world.seed.pin_key), grant.pin).hex()
    assert grant.pin not in after.model_dump_json()
    assert (entry.start, entry.end) == (grant.window_start, grant.window_end)
    world.clock.set(grant.window_end)  # the window has ended: the grant drops out
    assert world.svc.access.snapshot(world.seed.site, world.seed.gateway).locks[0].grants == []


def _event(
    seq: int, grant_id: str | None = None, *, boot: int = 0, site: str = "gym-a"
) -> tuple[str, str, LockEventData]:
    kind = LockEventKind.UNLOCKED if grant_id else LockEventKind.RELOCKED
    event = LockEventData(
        lock_id="gym-a-1", boot=boot, seq=seq, lock_ts=NOW + seq, kind=kind, grant_id=grant_id
    )
    return (site, "gw-1", event)


def _rows(w: World) -> int:
    with w.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(LockEvent)) or 0)


def test_ingest_is_idempotent(world: World) -> None:
    assert world.svc.events.ingest(*_event(1)) is True
    assert world.svc.events.ingest(*_event(1)) is False
    assert _rows(world) == 1


def test_batch_ingest_skips_what_is_known_and_duplicates_within_the_batch(world: World) -> None:
    assert world.svc.events.ingest_batch([_event(i) for i in range(1, 301)]) == 300
    batch = [_event(i) for i in range(290, 311)] + [_event(305), _event(305)]
    assert world.svc.events.ingest_batch(batch) == 10
    assert _rows(world) == 310


def test_a_restarted_lock_numbers_anew_and_both_boots_are_kept(world: World) -> None:
    grant = approve(world, book(world, TEN, TEN + HOUR))
    assert world.svc.events.ingest_batch([_event(1, grant.id, boot=11), _event(2, boot=11)]) == 2
    # the battery was changed: the lock counts from 1 again, in a new boot
    assert world.svc.events.ingest_batch([_event(1, grant.id, boot=42), _event(2, boot=42)]) == 2
    assert world.svc.events.ingest(*_event(1, grant.id, boot=42)) is False  # redelivered
    entries = world.svc.audit.events("gym-a-1")
    assert [(e.seq, e.kind, e.reservation_name) for e in entries] == [
        (2, "relocked", None),
        (1, "unlocked", "Taro Yamada"),
        (2, "relocked", None),
        (1, "unlocked", "Taro Yamada"),
    ]


def test_another_sites_gateway_cannot_claim_a_locks_event_keys(world: World) -> None:
    # gym-b's gateway sends an event naming gym-a's lock first: refused, and an alert
    # against gym-b's gateway; gym-a's own event with the same numbers is stored
    assert world.svc.events.ingest(*_event(1, site="gym-b")) is False
    assert world.svc.events.ingest(*_event(1, site="gym-a")) is True
    assert world.svc.events.ingest(*_event(1, site="gym-a")) is False
    with world.sessions() as session:
        sites = session.scalars(select(LockEvent.site).order_by(LockEvent.id)).all()
        alerts = session.execute(
            text("select kind, site, subject, severity from alerts where resolved_at is null")
        ).all()
    assert sites == ["gym-a"]
    assert [tuple(a) for a in alerts] == [("foreign_device", "gym-b", "gw-1", "critical")]
    assert world.svc.events.refused.counts == {"lock events": 1}
    assert [e.seq for e in world.svc.audit.events("gym-a-1")] == [1]


def test_a_forged_lock_report_in_the_same_chunk_does_not_cost_the_real_one(
    world: World,
) -> None:
    def report(reachable: bool) -> TelemetryData:
        lock = LockTelemetry(lock_id="gym-a-1", reachable=reachable)
        return TelemetryData(
            uptime_s=1, outbox_depth=0, frames_dropped=0, time_trusted=True, locks=[lock]
        )

    # gym-a's gateway says its lock is reachable; gym-b's, later in the chunk, says not
    world.svc.lock_reports.record_telemetry_many(
        [("gym-a", "gw-1", report(True)), ("gym-b", "gw-1", report(False))]
    )
    with world.sessions() as session:
        reachable = session.execute(
            text("select reachable from lock_sync where lock_id = 'gym-a-1'")
        ).scalar_one()
    assert reachable
    assert world.svc.lock_reports.refused.counts == {"lock reports": 1}


def test_audit_names_the_reservation_behind_an_unlock(world: World) -> None:
    grant = approve(world, book(world, TEN, TEN + HOUR))
    world.svc.events.ingest_batch([_event(7, grant.id), _event(8), _event(7, grant.id)])
    entries = world.svc.audit.events("gym-a-1")
    assert [(e.seq, e.kind, e.reservation_name) for e in entries] == [
        (8, "relocked", None),
        (7, "unlocked", "Taro Yamada"),
    ]
