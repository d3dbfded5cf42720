"""Offline PINs and per-grant sync status in the cloud's services, on SQLite and on
PostgreSQL: when an offline PIN is issued instead of a slot PIN, that it opens the right
lock in the right hours, that cancelling puts it on the lock's revocation list, what the
manager sees of each booking's PIN, and the audit log naming the booking behind an
offline code's unlock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from alembic import command
from sqlalchemy import inspect, select, text
from sqlalchemy.orm import Session, sessionmaker

from cloud.app import create_app
from cloud.bootstrap import DemoSeed, seed_demo
from cloud.core.models import MailMessage
from cloud.db import make_engine, make_sessionmaker, migrate
from cloud.db.migrate import alembic_config
from cloud.errors import InvalidRequestError
from cloud.fleet.services import FleetServices, build_fleet_services
from cloud.gym.models import AccessGrant, OfflinePin, Reservation
from cloud.gym.reservations import BookingRequest
from cloud.gym.sync_status import GrantSyncState
from cloud.gym.views import GrantView
from cloud.services import Services, build_services
from cloud.settings import CloudSettings
from protocol.clock import ManualClock
from protocol.messages import (
    AccessAppliedData,
    AccessSnapshotData,
    GatewayState,
    LockEventData,
    LockEventKind,
    LockTelemetry,
    RevokedOffline,
    StatusData,
    SyncReason,
    TelemetryData,
)
from protocol.offline_pin import (
    OFFLINE_PIN_LEN,
    OfflinePinId,
    OfflinePinStatus,
    verify_offline_pin,
)
from tests.support.cloud import DB_KINDS, basic, fresh_database, log_in
from tests.support.confirm_mail import citizen_view, confirm_in_service
from tests.unit.test_booking_rules import at

NOW = at("2027-01-15 09:00")  # Asia/Tokyo
HOUR = 3600
SECRET = bytes.fromhex("a1" * 32)
OTHER_SECRET = bytes.fromhex("b2" * 32)


@dataclass
class Site:
    svc: Services
    fleet: FleetServices
    sessions: sessionmaker[Session]
    clock: ManualClock
    seed: DemoSeed
    settings: CloudSettings
    url: str

    def book(self, start: str, end: str, name: str = "sato") -> str:
        req = BookingRequest(name, f"{name}@example.jp", at(start), at(end), lock_id="gym-a-1")
        return self.confirmed(req)

    def confirmed(self, req: BookingRequest) -> str:
        """Book and confirm from the mail, as the citizen does."""
        rid = self.svc.reservations.create(req).reservation.id
        confirm_in_service(self.svc, self.sessions, req.email, rid)
        return rid

    def gateway(self, state: GatewayState) -> None:
        self.fleet.health.record_status("gym-a", "gw-1", StatusData(state=state))


@pytest.fixture(params=DB_KINDS)
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    with fresh_database(request.param, tmp_path) as url:
        migrate(url)
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        clock = ManualClock(NOW)
        settings = CloudSettings(dev=True)
        svc = build_services(sessions, clock, settings)
        with sessions.begin() as session:
            seed = seed_demo(session, clock=clock, offline_secret=SECRET.hex())
        try:
            fleet = build_fleet_services(sessions, clock, settings)
            yield Site(svc, fleet, sessions, clock, seed, settings, url)
        finally:
            engine.dispose()


def test_approved_while_the_gateway_is_offline_gets_an_offline_pin(site: Site) -> None:
    site.gateway(GatewayState.OFFLINE)
    rid = site.book("2027-01-15 18:45", "2027-01-15 20:10")
    grant = _approved_grant(site, site.svc, rid)
    assert grant is not None
    assert grant.offline
    assert grant.lock_id == "gym-a-1"
    assert grant.offline_reason == "the site's gateway was offline"
    assert len(grant.pin) == OFFLINE_PIN_LEN
    # the booked hours, rounded out to whole hours: 18:00-21:00
    assert (grant.window_start, grant.window_end) == (
        at("2027-01-15 18:00"),
        at("2027-01-15 21:00"),
    )
    inside = verify_offline_pin(SECRET, grant.pin, at("2027-01-15 19:00"))
    assert inside.status is OfflinePinStatus.VALID
    assert inside.id is not None
    assert inside.id.start == grant.window_start
    assert verify_offline_pin(SECRET, grant.pin, at("2027-01-15 17:00")).status is (
        OfflinePinStatus.OUTSIDE_WINDOW
    )
    assert verify_offline_pin(SECRET, grant.pin, at("2027-01-15 21:10")).status is (
        OfflinePinStatus.OUTSIDE_WINDOW
    )
    assert not verify_offline_pin(OTHER_SECRET, grant.pin, at("2027-01-15 19:00")).valid

    # the citizen is told this one code, on the status page and in the mail
    citizen = site.svc.reservations.for_citizen(rid, _token(site, rid))
    assert citizen.grant is not None
    assert citizen.grant.pin == grant.pin
    with site.sessions() as session:
        mail = session.scalars(
            select(MailMessage).where(MailMessage.subject.like("Your PIN%"))
        ).one()
        row = session.scalars(select(AccessGrant).where(AccessGrant.id == grant.id)).one()
        stored = session.scalars(select(OfflinePin)).one()
    assert f"PIN: {grant.pin}\n" in mail.body  # the outbox row, as the citizen gets it
    assert "2027-01-15 18:00 to 2027-01-15 21:00" in mail.body
    # only the code's id is stored, never the code; no slot PIN either
    assert row.pin_sealed is None
    assert (stored.start_hour, stored.hours, stored.nonce) == (inside.id.start_hour, 3, 0)
    # nothing to load into a slot
    snapshot = site.svc.access.snapshot("gym-a", "gw-1")
    assert snapshot.locks[0].grants == []
    assert snapshot.locks[0].revoked_offline == []


def test_online_gateway_or_no_secret_gets_a_slot_pin(site: Site, tmp_path: Path) -> None:
    site.gateway(GatewayState.ONLINE)
    rid = site.book("2027-01-15 18:00", "2027-01-15 19:00")
    grant = _approved_grant(site, site.svc, rid)
    assert grant is not None
    assert not grant.offline
    assert 4 <= len(grant.pin) <= 10
    assert [g.grant_id for g in site.svc.access.snapshot("gym-a", "gw-1").locks[0].grants] == [
        grant.id
    ]

    # offline, but a lock with no offline secret: the slot PIN, waiting for the gateway
    site.gateway(GatewayState.OFFLINE)
    f = site.svc.facilities.create_facility("Gym C", "gym-a", "gw-1")
    room = site.svc.facilities.add_room(f.id, "Hall")
    site.svc.facilities.add_lock(f.id, "gym-c-1", "Door C")
    req = BookingRequest("ito", "ito@example.jp", at("2027-01-15 18:00"), at("2027-01-15 19:00"))
    rid2 = site.confirmed(
        BookingRequest(req.citizen_name, req.email, req.starts_at, req.ends_at, room_id=room.id)
    )
    grant2 = _approved_grant(site, site.svc, rid2)
    assert grant2 is not None
    assert not grant2.offline


def test_a_lock_out_of_reach_before_its_next_sync_gets_an_offline_pin(site: Site) -> None:
    site.gateway(GatewayState.ONLINE)
    site.svc.lock_reports.record_telemetry(
        "gym-a", "gw-1", _telemetry(False, at("2027-01-15 20:00"))
    )
    rid = site.book("2027-01-15 18:00", "2027-01-15 19:00")
    grant = _approved_grant(site, site.svc, rid)
    assert grant is not None
    assert grant.offline
    assert grant.offline_reason == "the lock was out of the gateway's reach"


def test_a_silent_gateway_counts_as_offline_only_when_asked(site: Site) -> None:
    site.gateway(GatewayState.ONLINE)
    site.clock.advance(20 * 60)
    strict = build_services(
        site.sessions, site.clock, CloudSettings(dev=True, gateway_silent_after_s=600)
    )
    rid = site.book("2027-01-15 18:00", "2027-01-15 19:00")
    grant = _approved_grant(site, strict, rid)
    assert grant is not None
    assert grant.offline_reason == "the site's gateway had been silent for 20 minutes"
    # by default silence alone is not "offline" (status is event-driven)
    rid2 = site.book("2027-01-15 19:00", "2027-01-15 20:00", name="ito")
    grant2 = _approved_grant(site, site.svc, rid2)
    assert grant2 is not None
    assert not grant2.offline


def test_cancelling_an_offline_pin_revokes_it_in_the_next_snapshot(site: Site) -> None:
    site.gateway(GatewayState.OFFLINE)
    rid = site.book("2027-01-15 18:00", "2027-01-15 19:00")
    keep = site.book("2027-01-15 19:00", "2027-01-15 20:00", name="ito")
    grant = _approved_grant(site, site.svc, rid)
    site.svc.approvals.approve(keep, by="manager")
    assert grant is not None
    check = verify_offline_pin(SECRET, grant.pin, at("2027-01-15 18:30"))
    assert check.id is not None
    before = site.svc.access.snapshot("gym-a", "gw-1")

    site.svc.cancellations.by_manager(rid, "manager", "closed for a drill")
    after = site.svc.access.snapshot("gym-a", "gw-1")
    assert after.version > before.version
    assert after.locks[0].revoked_offline == [RevokedOffline.of(check.id)]
    assert after.locks[0].revoked_offline[0].pin_id() == check.id
    with site.sessions() as session:
        mail = session.scalars(
            select(MailMessage).where(MailMessage.subject.like("Booking cancelled%"))
        ).one()
    assert "refuses it once the lock has taken the cancellation" in mail.body

    # a second code for the same hours on the same lock never reuses the nonce
    again = site.book("2027-01-15 18:00", "2027-01-15 19:00", name="kato")
    grant2 = _approved_grant(site, site.svc, again)
    assert grant2 is not None
    check2 = verify_offline_pin(SECRET, grant2.pin, at("2027-01-15 18:30"))
    assert check2.id == OfflinePinId(check.id.start_hour, 1, 1)

    # once the code has expired on every lock clock it leaves the list
    site.clock.set(check.id.expires_at)
    assert site.svc.access.snapshot("gym-a", "gw-1").locks[0].revoked_offline == []


def test_many_snapshots_at_once_are_each_gateways_own(site: Site) -> None:
    # gym-a/gw-1: a cancelled offline PIN (revocation list), a slot PIN that will have
    # ended, a live one and a cancelled one
    site.gateway(GatewayState.OFFLINE)
    offline = site.book("2027-01-15 18:00", "2027-01-15 19:00")
    site.svc.approvals.approve(offline, by="manager")
    site.svc.cancellations.by_manager(offline, "manager", "closed for a drill")
    site.gateway(GatewayState.ONLINE)
    ended, live, cancelled = (
        site.book(f"2027-01-15 {h}:00", f"2027-01-15 {h}:30", name=f"n{h}") for h in (9, 20, 21)
    )
    for rid in (ended, live, cancelled):
        site.svc.approvals.approve(rid, by="manager")
    site.svc.cancellations.by_manager(cancelled, "manager", "double booking")
    # gym-a/gw-2: an entrance every room's PIN opens, and each room behind its own door
    f = site.svc.facilities.create_facility("Gym B", "gym-a", "gw-2")
    rooms = [site.svc.facilities.add_room(f.id, name).id for name in ("Hall", "Court")]
    site.svc.facilities.add_lock(f.id, "gym-b-door", "Entrance")
    site.svc.facilities.add_lock(f.id, "gym-b-hall", "Hall", room_id=rooms[0])
    site.svc.facilities.add_lock(f.id, "gym-b-court", "Court", room_id=rooms[1])
    for hour, room in ((19, rooms[1]), (18, rooms[0])):
        rid = site.confirmed(
            BookingRequest(
                f"r{hour}",
                "r@example.jp",
                at(f"2027-01-15 {hour}:00"),
                at(f"2027-01-15 {hour}:30"),
                room_id=room,
            )
        )
        site.svc.approvals.approve(rid, by="manager")
    site.clock.set(at("2027-01-15 10:00"))  # the 09:00 booking's window has ended

    # and a gateway with no facility and no version yet: it gets version 1, no locks
    keys = [("gym-a", "gw-2"), ("gym-z", "gw-1"), ("gym-a", "gw-1"), ("gym-a", "gw-2")]
    many = site.svc.access.snapshots(keys)
    assert list(many) == [("gym-a", "gw-2"), ("gym-z", "gw-1"), ("gym-a", "gw-1")]
    assert many == {key: site.svc.access.snapshot(*key) for key in many}

    (front,) = many[("gym-a", "gw-1")].locks
    assert [g.grant_id for g in front.grants] == [_grant_id(site, live)]
    assert len(front.revoked_offline) == 1
    b = {lock.lock_id: lock for lock in many[("gym-a", "gw-2")].locks}
    assert list(b) == ["gym-b-court", "gym-b-door", "gym-b-hall"]
    hall, court = b["gym-b-hall"].grants, b["gym-b-court"].grants
    door = b["gym-b-door"].grants  # both rooms' PINs, in window order
    assert [(g.grant_id, g.start) for g in door] == [(g.grant_id, g.start) for g in hall + court]
    assert door[0].tag != hall[0].tag  # each lock's own key
    assert many[("gym-z", "gw-1")] == AccessSnapshotData(version=1, locks=[])
    assert site.svc.access.snapshots([]) == {}


async def test_the_manager_sees_where_each_pin_stands(site: Site) -> None:
    site.gateway(GatewayState.ONLINE)
    loaded = site.book("2027-01-15 10:00", "2027-01-15 11:00")
    waiting = site.book("2027-01-16 10:00", "2027-01-16 11:00", name="ito")
    g1 = _approved_grant(site, site.svc, loaded)
    site.svc.approvals.approve(waiting, by="manager")
    assert g1 is not None
    site.svc.lock_reports.record_telemetry(
        "gym-a", "gw-1", _telemetry(True, at("2027-01-15 20:00"))
    )
    site.svc.lock_reports.record_applied(
        "gym-a",
        "gw-1",
        AccessAppliedData(
            lock_id="gym-a-1",
            version=3,
            grant_ids=[g1.id],
            loaded_at={g1.id: at("2027-01-15 09:02")},
            clock_offset_s=-3.0,
            clock_set=True,
            reason=SyncReason.CHANGE,
        ),
    )
    site.gateway(GatewayState.OFFLINE)
    offline = site.book("2027-01-15 12:00", "2027-01-15 13:00", name="kato")
    site.svc.approvals.approve(offline, by="manager")

    views = [site.svc.reservations.get(r) for r in (loaded, waiting, offline)]
    status = site.svc.sync_status.grants(views)
    (on,) = status[loaded]
    assert on.state is GrantSyncState.ON_LOCK
    assert on.text == "PIN on lock since 09:02"
    assert on.since == at("2027-01-15 09:02")
    (later,) = status[waiting]
    assert later.state is GrantSyncState.GATEWAY_OFFLINE
    (off,) = status[offline]
    assert off.state is GrantSyncState.OFFLINE_PIN
    assert off.text.startswith("offline PIN issued")

    site.gateway(GatewayState.ONLINE)
    (later,) = site.svc.sync_status.grants([views[1]])[waiting]
    assert later.state is GrantSyncState.WAITING_SYNC
    assert later.text == "waiting for the lock's next sync at 20:00"

    lock = site.svc.sync_status.lock("gym-a-1")
    assert (lock.applied_version, lock.clock_offset_s, lock.clock_set) == (3, -3.0, True)
    assert lock.reason == "change"
    assert lock.next_sync_at == at("2027-01-15 20:00")
    assert lock.reachable is True

    # the same on the API and on the manager's and the lock's pages
    settings = CloudSettings(
        database_url=site.url, secret_key="s" * 40, metrics_token="m" * 32, mqtt_enabled=False
    )
    app = create_app(settings, clock=site.clock)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://c",
            headers={"Accept-Language": "en"},  # the English manage and lock pages
        ) as http,
    ):
        staff = basic("manager", site.seed.manager.password)
        listed = await http.get("/api/reservations", params={"status": "approved"}, headers=staff)
        by_id = {r["id"]: r for r in listed.json()}
        assert by_id[loaded]["access"][0]["text"] == "PIN on lock since 09:02"
        assert by_id[offline]["offline_pin"] is True
        sync = (await http.get("/api/locks/gym-a-1/sync", headers=staff)).json()
        assert sync["next_sync_local"] == "2027-01-15 20:00"
        assert sync["clock_offset_s"] == -3.0
        assert (await http.get("/api/locks/nope/sync", headers=staff)).status_code == 404
        await log_in(http, app.state.clock, "manager", site.seed.manager.password)
        page = (await http.get("/manage")).text
        assert "PIN on lock since 09:02" in page
        assert "waiting for the lock&#39;s next sync at 20:00" in page
        assert "offline PIN issued" in page
        lock_page = (await http.get("/locks/gym-a-1")).text
        assert "20:00" in lock_page
        assert "-3 s, corrected" in lock_page


def test_an_offline_unlock_is_attributed_to_its_booking(site: Site) -> None:
    site.gateway(GatewayState.OFFLINE)
    rid = site.book("2027-01-15 18:00", "2027-01-15 19:00")
    grant = _approved_grant(site, site.svc, rid)
    assert grant is not None
    check = verify_offline_pin(SECRET, grant.pin, at("2027-01-15 18:30"))
    assert check.id is not None
    short = check.id.short_id
    site.svc.events.ingest_batch(
        [
            ("gym-a", "gw-1", e)
            for e in (
                LockEventData(
                    lock_id="gym-a-1",
                    seq=7,
                    lock_ts=at("2027-01-15 18:30"),
                    kind=LockEventKind.UNLOCKED,
                    value=short,
                ),
                LockEventData(  # a wrong code names nothing
                    lock_id="gym-a-1",
                    seq=8,
                    lock_ts=at("2027-01-15 18:31"),
                    kind=LockEventKind.DENIED_WRONG_PIN,
                ),
                LockEventData(  # a short id no code has
                    lock_id="gym-a-1",
                    seq=9,
                    lock_ts=at("2027-01-15 18:32"),
                    kind=LockEventKind.DENIED_OUTSIDE_WINDOW,
                    value=(short + 1) % 65536,
                ),
            )
        ]
    )
    seq9, seq8, seq7 = site.svc.audit.events("gym-a-1")
    assert (seq7.grant_id, seq7.reservation_name, seq7.offline) == (grant.id, "sato", True)
    assert (seq8.grant_id, seq8.offline) == (None, False)
    assert (seq9.grant_id, seq9.reservation_name, seq9.offline) == (None, None, True)


def test_offline_secret_is_checked_when_a_lock_is_added(site: Site) -> None:
    with pytest.raises(InvalidRequestError, match="offline_secret"):
        site.svc.facilities.add_lock(site.seed.facility_id, "gym-a-2", "Back", offline_secret="zz")
    site.svc.facilities.add_lock(
        site.seed.facility_id, "gym-a-2", "Back", offline_secret=OTHER_SECRET.hex().upper()
    )


def _approved_grant(site: Site, svc: Services, rid: str) -> GrantView:
    """Approve ``rid``; its grant as the citizen's status view shows it (with the PIN)."""
    svc.approvals.approve(rid, by="manager")
    grant = citizen_view(svc, site.sessions, rid).grant
    assert grant is not None
    assert grant.pin is not None
    return grant


def _grant_id(site: Site, rid: str) -> str:
    grant = site.svc.reservations.get(rid).grant
    assert grant is not None
    return grant.id


def _token(site: Site, rid: str) -> str:
    with site.sessions() as session:
        r = session.get(Reservation, rid)
        assert r is not None
        return r.access_token


def _telemetry(reachable: bool, next_sync_at: int) -> TelemetryData:
    return TelemetryData(
        uptime_s=10,
        outbox_depth=0,
        frames_dropped=0,
        time_trusted=True,
        locks=[
            LockTelemetry(
                lock_id="gym-a-1",
                reachable=reachable,
                last_sync_at=at("2027-01-15 08:00"),
                next_sync_at=next_sync_at,
                clock_drift_s=-3.0,
            )
        ],
    )


@pytest.mark.parametrize("kind", DB_KINDS)
def test_0004_downgrade_revokes_offline_grants(kind: str, tmp_path: Path) -> None:
    with fresh_database(kind, tmp_path) as url:
        command.upgrade(alembic_config(url), "0004")
        engine = make_engine(url)
        try:
            with engine.begin() as conn:
                for sql in (
                    "INSERT INTO facilities (id, name, site, gateway) VALUES (1, 'G', 'g', 'gw')",
                    "INSERT INTO rooms (id, facility_id, name) VALUES (1, 1, 'Hall')",
                    "INSERT INTO locks (id, lock_id, facility_id, name, pin_key, offline_secret) "
                    f"VALUES (1, 'door', 1, 'Door', '{'ab' * 32}', '{'cd' * 32}')",
                    "INSERT INTO reservations (id, facility_id, room_id, citizen_name, email, "
                    "starts_at, ends_at, status, access_token, created_at) "
                    "VALUES ('r1', 1, 1, 'T', 't@x.jp', 3600, 7200, 'approved', 'tok', 1)",
                    "INSERT INTO access_grants (id, reservation_id, pin, window_start, "
                    "window_end, created_at) VALUES ('g1', 'r1', NULL, 3600, 7200, 1)",
                    "INSERT INTO offline_pins (grant_id, lock_id, start_hour, hours, nonce, "
                    "reason, created_at) VALUES ('g1', 1, 1, 1, 0, 'offline', 1)",
                    "INSERT INTO lock_sync (lock_id, grant_ids) VALUES ('door', '[]')",
                ):
                    conn.execute(text(sql))
            command.downgrade(alembic_config(url), "0003")
            with engine.connect() as conn:
                rows = conn.execute(text("SELECT pin, revoked_at FROM access_grants")).all()
                tables = set(inspect(conn).get_table_names())
            assert [tuple(r) for r in rows] == [("000000", 1)]  # revoked: nobody knows it
            assert not {"offline_pins", "lock_sync"} & tables
            command.upgrade(alembic_config(url), "0004")
        finally:
            engine.dispose()
