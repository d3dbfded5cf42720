"""The fleet controller's services against a real database, on SQLite and PostgreSQL:
alerts from reports and events (opened once, mailed, acknowledged, resolved), silence and
missed syncs, commands and their replies, rollouts in rings with the gate, deferral and
rollback, and who sees which sites."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from alembic import command as alembic
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cloud.bootstrap import DemoSeed, seed_demo
from cloud.core.auth import AuthError
from cloud.core.bus import ChangeBus
from cloud.core.models import Role, User
from cloud.core.views import UserView
from cloud.db import make_engine, make_sessionmaker, migrate
from cloud.db.base import Base
from cloud.db.migrate import alembic_config
from cloud.errors import ConflictError, InvalidRequestError, NotFoundError
from cloud.fleet.changes import CommandReady, ConfigReady
from cloud.fleet.commands import CommandRequest
from cloud.fleet.kinds import DeviceKind
from cloud.fleet.rollouts import RolloutRequest
from cloud.fleet.services import FleetServices, build_fleet_services
from cloud.fleet.views import AlertView, RolloutView
from cloud.gym.reservations import BookingRequest
from cloud.services import Services, build_services, fleet_ports
from cloud.settings import CloudSettings
from protocol.clock import ManualClock
from protocol.firmware_image import DeviceKind as ImageKind
from protocol.firmware_image import build_image
from protocol.messages import (
    AccessAppliedData,
    CommandReplyData,
    CommandStatus,
    DisplayTelemetry,
    FirmwareUpdateResult,
    GatewayState,
    LockEventData,
    LockEventKind,
    LockTelemetry,
    StatusData,
    TelemetryData,
)
from tests.support.cloud import DB_KINDS, fresh_database
from tests.support.confirm_mail import confirm_in_service
from tests.support.migrated import Template, copy_of, migrated_template

NOW = 1_799_971_200  # Friday 2027-01-15 09:00 Tokyo
HOUR = 3600
DAY = 24 * HOUR
ONCALL = "oncall@city.example.jp"


@dataclass
class Recorder:
    """The MQTT side as the services see it: what became ready to publish."""

    commands: list[str] = field(default_factory=list)
    configs: list[tuple[str, str]] = field(default_factory=list)

    def bus(self) -> ChangeBus:
        """A change bus that writes down what the services publish."""
        bus = ChangeBus()
        bus.subscribe(CommandReady, lambda change: self.commands.append(change.transaction))
        bus.subscribe(
            ConfigReady, lambda change: self.configs.append((change.site, change.gateway))
        )
        return bus


@dataclass
class World:
    fleet: FleetServices
    svc: Services
    sessions: sessionmaker[Session]
    clock: ManualClock
    seed: DemoSeed
    sent: Recorder
    users: dict[str, UserView]

    @property
    def now(self) -> int:
        return int(self.clock.now())

    def online(self, site: str = "gym-a", gateway: str = "gw-1") -> None:
        self.fleet.health.record_status(site, gateway, StatusData(state=GatewayState.ONLINE))

    def offline(self, site: str = "gym-a", gateway: str = "gw-1") -> None:
        self.fleet.health.record_status(site, gateway, StatusData(state=GatewayState.OFFLINE))

    def telemetry(
        self,
        *locks: LockTelemetry,
        site: str = "gym-a",
        gateway: str = "gw-1",
        displays: tuple[DisplayTelemetry, ...] = (),
        config_version: int | None = None,
        config_error: str | None = None,
    ) -> None:
        self.fleet.health.record_telemetry(
            site,
            gateway,
            TelemetryData(
                uptime_s=100,
                outbox_depth=0,
                frames_dropped=0,
                time_trusted=True,
                locks=list(locks),
                displays=list(displays),
                config_version=config_version,
                config_error=config_error,
            ),
        )

    def events(self, *kinds: tuple[int, LockEventKind], lock: str = "gym-a-1") -> None:
        self.fleet.health.record_events(
            [
                ("gym-a", "gw-1", LockEventData(lock_id=lock, seq=seq, lock_ts=self.now, kind=k))
                for seq, k in kinds
            ]
        )

    def alerts(self, state: str = "open") -> list[AlertView]:
        return self.fleet.alerts.alerts(None, state=state)

    def kinds(self, state: str = "open") -> list[str]:
        return sorted(a.kind for a in self.alerts(state))

    def mails(self) -> list[str]:
        return [m.subject for m in self.svc.mail.messages() if m.to == ONCALL]


def lock(battery: int | None = 90, **kw: object) -> LockTelemetry:
    return LockTelemetry(lock_id="gym-a-1", reachable=True, battery_pct=battery, **kw)


@pytest.fixture(scope="module", params=DB_KINDS)
def template(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Template]:
    with migrated_template(request.param, tmp_path_factory.mktemp("template")) as made:
        yield made


@contextlib.contextmanager
def world_in(template: Template, tmp_path: Path) -> Iterator[World]:
    """A world on a fresh copy of ``template`` (in ``tmp_path``)."""
    with copy_of(template, tmp_path) as url:
        engine = make_engine(url)
        sessions = make_sessionmaker(engine)
        clock = ManualClock(NOW)
        settings = CloudSettings(dev=True, fleet_oncall_email=ONCALL)
        sent = Recorder()
        fleet = build_fleet_services(sessions, clock, settings, sent.bus(), fleet_ports(settings))
        svc = build_services(sessions, clock, settings)
        with sessions.begin() as session:
            seed = seed_demo(session, clock=clock, users={"ops": Role.OPS})
            # no one logs in here: spare the password hashing
            others = {"tech": Role.TECHNICIAN, "fm-edu": Role.MANAGER, "fm-health": Role.MANAGER}
            session.add_all(
                User(username=name, password_hash="!", role=role, created_at=NOW)
                for name, role in others.items()
            )
        users = {name: svc.users.get(name) for name in ("ops", *others)}
        yield World(fleet, svc, sessions, clock, seed, sent, {k: v for k, v in users.items() if v})
        engine.dispose()


@pytest.fixture
def world(template: Template, tmp_path: Path) -> Iterator[World]:
    with world_in(template, tmp_path) as made:
        yield made


# ------------------------------------------------------------------------ alerts


def test_battery_low_then_critical_mails_on_call_once_each_and_resolves(world: World) -> None:
    world.online()
    world.telemetry(lock(19))
    world.telemetry(lock(19))  # still low: the same alert, no second mail
    assert world.kinds() == ["battery_low"]
    assert world.mails() == ["[Denen WARNING] battery low: lock gym-a-1 at gym-a/gw-1"]
    world.clock.advance(HOUR)
    world.telemetry(lock(9))
    assert world.kinds() == ["battery_critical"]  # critical replaces low
    assert len(world.mails()) == 2
    assert world.mails()[0].startswith("[Denen CRITICAL] battery critical")
    world.telemetry(lock(100))  # a new battery
    assert world.kinds() == []
    resolved = world.alerts("resolved")
    assert {a.kind: a.resolution for a in resolved} == {
        "battery_low": "battery at 9 %",  # became critical
        "battery_critical": "battery at 100 %",
    }


def test_battery_forecast_from_a_drain_series(world: World) -> None:
    world.online()
    for pct in range(34, 27, -1):  # 34 % draining 2 % a day, a report every 12 hours
        world.telemetry(lock(pct))
        assert "battery_forecast" not in world.kinds()  # down to 28 %: 14 days left
        world.clock.advance(12 * HOUR)
    world.telemetry(lock(27))  # 13.5 days left
    detail = world.fleet.sites.device("gym-a", "gym-a-1", None)
    assert detail.device.battery_days_left == pytest.approx(13.5, abs=0.1)
    assert world.kinds() == ["battery_forecast"]
    assert "empty in about 13.5 days" in world.alerts()[0].message
    assert [s.battery_pct for s in detail.history][-3:] == [29, 28, 27]


def test_lockout_jam_and_held_open_open_once_and_close_on_later_events(world: World) -> None:
    world.online()
    world.events((10, LockEventKind.LOCKOUT_STARTED))
    world.events((10, LockEventKind.LOCKOUT_STARTED))  # redelivered
    assert world.kinds() == ["lockout"]
    world.events((11, LockEventKind.UNLOCKED))
    assert world.kinds() == []
    world.events((10, LockEventKind.LOCKOUT_STARTED))  # an old redelivery opens nothing
    assert world.kinds() == []
    world.events((12, LockEventKind.JAM), (13, LockEventKind.DOOR_HELD_OPEN))
    assert world.kinds() == ["door_held_open", "jam"]
    jam = next(a for a in world.alerts() if a.kind == "jam")
    assert jam.severity == "critical"
    world.events((14, LockEventKind.RELOCKED))
    world.events((15, LockEventKind.DOOR_CLOSED))
    assert world.kinds() == []
    assert sorted(a.kind for a in world.alerts("all")) == ["door_held_open", "jam", "lockout"]
    assert len(world.mails()) == 3


def _valued(seq: int, kind: LockEventKind, value: int) -> tuple[str, str, LockEventData]:
    event = LockEventData(lock_id="gym-a-1", seq=seq, lock_ts=NOW, kind=kind, value=value)
    return ("gym-a", "gw-1", event)


def test_guessing_and_tampering_open_on_their_rate_and_clear_after_a_quiet_hour(
    world: World,
) -> None:
    world.online()
    record, wrong = world.fleet.health.record_events, LockEventKind.DENIED_WRONG_PIN
    record([_valued(seq, wrong, seq) for seq in range(1, 10)])  # typos: nine in an hour
    assert world.kinds() == []
    record([_valued(10, wrong, 10), _valued(11, LockEventKind.FRAMES_REFUSED, 3)])
    assert world.kinds() == ["keypad_guessing", "tamper"]
    tamper = next(a for a in world.alerts() if a.kind == "tamper")
    assert (tamper.severity, tamper.subject) == ("critical", "gym-a-1")
    assert "refused 3 command frame(s)" in tamper.message
    guessing = next(a for a in world.alerts() if a.kind == "keypad_guessing")
    assert "10 wrong PINs in an hour" in guessing.message
    assert len(world.mails()) == 2

    world.clock.advance(50 * 60)
    record([_valued(12, wrong, 11)])  # still guessing: the quiet hour starts again
    world.clock.advance(20 * 60)
    world.fleet.health.check(world.clock.now(), None)
    assert world.kinds() == ["keypad_guessing"]  # tampering was quiet for 70 minutes
    world.clock.advance(40 * 60)
    world.fleet.health.check(world.clock.now(), None)
    assert world.kinds() == []
    resolved = {a.kind: a.resolution for a in world.alerts("resolved")}
    assert resolved == {
        "keypad_guessing": "no wrong PINs at that rate for an hour",
        "tamper": "no refused frames for an hour",
    }
    record([_valued(11, LockEventKind.FRAMES_REFUSED, 3)])  # redelivered: opens nothing
    assert world.kinds() == []


def _numbered(
    boot: int, seq: int, lock_ts: int, kind: LockEventKind
) -> tuple[str, str, LockEventData]:
    event = LockEventData(lock_id="gym-a-1", boot=boot, seq=seq, lock_ts=lock_ts, kind=kind)
    return ("gym-a", "gw-1", event)


def test_a_lock_whose_numbers_go_back_within_one_boot_raises_an_alert(world: World) -> None:
    world.online()
    record, t = world.fleet.health.record_events, world.now
    record([_numbered(5, seq, t + seq, LockEventKind.RELOCKED) for seq in (1, 2, 3)])
    record([_numbered(5, 2, t + 2, LockEventKind.RELOCKED)])  # redelivered: nothing to say
    record([_numbered(5, 1, t + 1, LockEventKind.RELOCKED)])  # late, and earlier: nor here
    assert world.kinds() == []
    # the lock's clock went on but its numbers started again, in the same boot
    record([_numbered(5, 1, t + 100, LockEventKind.UNLOCKED)])
    (alert,) = world.alerts()
    assert alert.kind == "seq_backwards"
    assert "went back from 3 to 1" in alert.message
    assert len(world.mails()) == 1
    record([_numbered(5, 2, t + 101, LockEventKind.RELOCKED)])  # it counts on: once only
    assert [a.kind for a in world.alerts("all")] == ["seq_backwards"]


def test_a_new_boot_is_news_not_an_alert(world: World) -> None:
    world.online()
    record, t = world.fleet.health.record_events, world.now
    record([_numbered(5, 40, t, LockEventKind.JAM)])
    world.clock.advance(60)
    record([_numbered(9, 1, t + 60, LockEventKind.CLOCK_SET)])  # the battery was changed
    device = world.fleet.sites.device("gym-a", "gym-a-1", None).device
    assert (device.event_boot, device.boot_seen_at) == (9, world.now)
    assert world.kinds() == ["jam"]
    record([_numbered(9, 2, t + 61, LockEventKind.RELOCKED)])  # a later event, seq 2 < 40
    assert world.kinds() == []
    assert [a.kind for a in world.alerts("all")] == ["jam"]


def test_lockout_reported_by_telemetry_ends_only_after_it_settled(world: World) -> None:
    world.online()
    world.events((20, LockEventKind.LOCKOUT_STARTED))
    world.telemetry(lock(locked_out=False))  # taken before the event: keeps it open
    assert world.kinds() == ["lockout"]
    world.clock.advance(60)
    world.telemetry(lock(locked_out=False))
    assert world.kinds() == []


def test_clock_drift_alert_is_acknowledged_and_resolves_by_itself(world: World) -> None:
    world.online()
    world.telemetry(lock(clock_drift_s=45.0))
    [alert] = world.alerts()
    assert (alert.kind, alert.severity) == ("clock_drift", "warning")
    assert "45 s off" in alert.message
    with pytest.raises(NotFoundError):  # a facility manager of no department sees nothing
        world.fleet.alerts.acknowledge(alert.id, world.users["fm-edu"], frozenset())
    world.clock.advance(60)
    acked = world.fleet.alerts.acknowledge(alert.id, world.users["tech"], None)
    assert (acked.acknowledged_by, acked.acknowledged_at) == ("tech", NOW + 60)
    again = world.fleet.alerts.acknowledge(alert.id, world.users["ops"], None)
    assert again.acknowledged_by == "tech"  # the first acknowledgement stays
    assert world.fleet.alerts.alerts(None, state="unacknowledged") == []
    world.telemetry(lock(clock_drift_s=1.0, clock_offset_s=0.5))
    assert world.kinds() == []
    [done] = world.alerts("resolved")
    assert done.acknowledged_by == "tech"


def test_last_will_opens_gateway_offline_once_and_birth_resolves(world: World) -> None:
    world.online()
    world.offline()
    world.offline()  # the retained will delivered again
    [alert] = world.alerts()
    assert (alert.kind, alert.severity, alert.subject) == ("gateway_offline", "critical", "gw-1")
    assert world.fleet.sites.overview(None)[0].status == "offline"
    assert world.mails() == ["[Denen CRITICAL] gateway offline: gateway gym-a/gw-1"]
    world.online()
    assert world.kinds() == []
    assert world.fleet.sites.overview(None)[0].status == "ok"


def test_silence_past_two_heartbeats_opens_gateway_offline(world: World) -> None:
    world.online()
    world.telemetry(lock())
    listening = NOW - 10
    health = world.fleet.health
    assert health.check(NOW + 125, listening).gateways_offline == 0
    assert health.check(NOW + 126, None).gateways_offline == 0  # not listening: no verdict
    assert health.check(NOW + 126, NOW + 100).gateways_offline == 0  # listening too briefly
    assert world.kinds() == []
    assert health.check(NOW + 126, listening).gateways_offline == 1
    assert world.kinds() == ["gateway_offline"]
    assert "no telemetry for 126 s" in world.alerts()[0].message
    world.clock.set(NOW + 130)
    site = world.fleet.sites.site("gym-a", None)
    assert site.summary.status == "offline"
    assert [d.health for d in site.devices] == ["offline"]
    world.telemetry(lock())
    assert world.kinds() == []


def test_a_lock_that_missed_its_sync_plus_grace_is_offline(world: World) -> None:
    world.online()
    world.telemetry(lock(last_sync_at=NOW, next_sync_at=NOW + 12 * HOUR))
    due = NOW + 12 * HOUR
    world.clock.set(due + HOUR)
    world.telemetry(lock(last_sync_at=NOW, next_sync_at=due))  # the gateway is fine
    assert world.fleet.health.check(due + HOUR, NOW).syncs_missed == 0
    assert world.fleet.sites.site("gym-a", None).devices[0].health == "ok"
    world.clock.set(due + HOUR + 1)
    world.telemetry(lock(last_sync_at=NOW, next_sync_at=due))
    assert world.fleet.health.check(due + HOUR + 1, NOW).syncs_missed == 1
    assert world.kinds() == ["missed_sync"]
    assert world.fleet.sites.site("gym-a", None).devices[0].health == "offline"
    world.telemetry(lock(last_sync_at=world.now, next_sync_at=world.now + 12 * HOUR))
    assert world.kinds() == []


def test_a_growing_outbox_opens_a_backlog_alert(world: World) -> None:
    world.online()
    for depth in (10, 55, 60, 70):  # deep and growing three reports in a row
        assert world.kinds() == []
        world.fleet.health.record_telemetry(
            "gym-a",
            "gw-1",
            TelemetryData(uptime_s=1, outbox_depth=depth, frames_dropped=0, time_trusted=True),
        )
    assert world.kinds() == ["outbox_backlog"]
    assert world.alerts()[0].message == "70 messages wait in the agent's outbox"
    world.fleet.health.record_telemetry(
        "gym-a",
        "gw-1",
        TelemetryData(uptime_s=1, outbox_depth=0, frames_dropped=0, time_trusted=True),
    )
    assert world.kinds() == []


def stored(world: World) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the tables telemetry writes, without surrogate ids, in a stable order."""
    tables = ("sites", "gateways", "devices", "twins", "health_samples", "alerts", "lock_sync")
    out = {}
    with world.sessions() as session:
        for name in (*tables, "mail_outbox"):
            columns = [c for c in Base.metadata.tables[name].columns if c.name != "id"]
            out[name] = sorted((tuple(row) for row in session.execute(select(*columns))), key=repr)
    return out


def test_a_batch_of_reports_stores_what_one_report_at_a_time_does(
    template: Template, tmp_path: Path
) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "many").mkdir()
    with world_in(template, tmp_path / "one") as one, world_in(template, tmp_path / "many") as many:
        for w in (one, many):  # a drain series, and gym-a-2's clock off since the last report
            w.online()
            for pct in range(34, 27, -1):
                drifting = [LockTelemetry(lock_id="gym-a-2", reachable=True, clock_drift_s=45.0)]
                w.telemetry(lock(pct), *(drifting if pct == 28 else []))
                w.clock.advance(12 * HOUR)
            assert w.kinds() == ["clock_drift"]

        def report(
            *locks: LockTelemetry, displays: tuple[DisplayTelemetry, ...] = ()
        ) -> TelemetryData:
            return TelemetryData(
                uptime_s=100,
                outbox_depth=0,
                frames_dropped=0,
                time_trusted=True,
                locks=list(locks),
                displays=list(displays),
            )

        reports = [
            (  # 27 %: under 14 days left; gym-a-2's clock is right again
                "gym-a",
                "gw-1",
                report(lock(27), LockTelemetry(lock_id="gym-a-2", reachable=True, clock_drift_s=1)),
            ),
            (  # a site, gateway, lock and display never seen
                "gym-b",
                "gw-1",
                report(
                    LockTelemetry(lock_id="gym-b-1", reachable=True, battery_pct=15),
                    displays=(DisplayTelemetry(display_id="gym-b-d1", reachable=True),),
                ),
            ),
            (  # a second gateway of a known site, with a lock locked out
                "gym-a",
                "gw-2",
                report(LockTelemetry(lock_id="gym-a-3", reachable=True, locked_out=True)),
            ),
            (  # gw-1 once more in the same batch: gym-a-2's clock is off again
                "gym-a",
                "gw-1",
                report(
                    lock(27), LockTelemetry(lock_id="gym-a-2", reachable=True, clock_drift_s=45)
                ),
            ),
        ]
        for site, gateway, telemetry in reports:
            one.fleet.health.record_telemetry(site, gateway, telemetry)
            one.svc.lock_reports.record_telemetry(site, gateway, telemetry)
        many.fleet.health.record_telemetry_many(reports)
        many.svc.lock_reports.record_telemetry_many(reports)

        for w in (one, many):
            assert w.kinds() == ["battery_forecast", "battery_low", "clock_drift", "lockout"]
            assert [(a.kind, a.subject) for a in w.alerts("resolved")] == [
                ("clock_drift", "gym-a-2")
            ]
            assert len(w.mails()) == 5
            device = w.fleet.sites.device("gym-a", "gym-a-1", None).device
            assert device.battery_days_left == pytest.approx(13.5, abs=0.1)
        assert stored(many) == stored(one)


def test_a_batch_of_births_wills_and_applied_versions_stores_what_one_at_a_time_does(
    template: Template, tmp_path: Path
) -> None:
    """After a broker restart every gateway's retained status, its new birth and every
    lock's applied version arrive at once: the bridge stores them a batch at a time."""
    (tmp_path / "one").mkdir()
    (tmp_path / "many").mkdir()
    online = StatusData(state=GatewayState.ONLINE, locks=["gym-a-1", "gym-a-2"])
    offline = StatusData(state=GatewayState.OFFLINE)
    statuses = [
        ("gym-a", "gw-1", offline),  # the retained will, then the new birth: online at the end
        ("gym-b", "gw-1", StatusData(state=GatewayState.ONLINE, locks=["gym-b-1"])),  # new site
        ("gym-a", "gw-2", offline),  # a gateway first heard of by its will: stays offline
        ("gym-a", "gw-1", online),
        ("gym-c", "gw-1", offline),  # down, up and down again: a second alert opens
        ("gym-c", "gw-1", StatusData(state=GatewayState.ONLINE)),
        ("gym-c", "gw-1", offline),
    ]
    applied = [
        AccessAppliedData(lock_id="gym-a-1", version=4, grant_ids=[], clock_set=True),
        AccessAppliedData(lock_id="no-such-lock", version=9, grant_ids=[]),  # ignored
        AccessAppliedData(lock_id="gym-a-1", version=5, grant_ids=[], clock_offset_s=2.0),
    ]
    with world_in(template, tmp_path / "one") as one, world_in(template, tmp_path / "many") as many:
        for site, gateway, status in statuses:
            one.fleet.health.record_status(site, gateway, status)
        for report in applied:
            one.svc.lock_reports.record_applied("gym-a", "gw-1", report)
        many.fleet.health.record_status_many(statuses)
        many.svc.lock_reports.record_applied_many([("gym-a", "gw-1", a) for a in applied])

        for w in (one, many):
            assert sorted((a.kind, a.site, a.subject) for a in w.alerts()) == [
                ("gateway_offline", "gym-a", "gw-2"),
                ("gateway_offline", "gym-c", "gw-1"),
            ]
            assert sorted((a.kind, a.site, a.subject) for a in w.alerts("resolved")) == [
                ("gateway_offline", "gym-a", "gw-1"),
                ("gateway_offline", "gym-c", "gw-1"),
            ]
            states = w.fleet.health.gateway_states()
            assert states == {
                ("gym-a", "gw-1"): "online",
                ("gym-a", "gw-2"): "offline",
                ("gym-b", "gw-1"): "online",
                ("gym-c", "gw-1"): "offline",
            }
            detail = w.fleet.sites.site("gym-b", None)
            assert [d.device_id for d in detail.devices] == ["gym-b-1"]
        with many.sessions() as session:
            row = session.execute(
                text(
                    "select applied_version, clock_offset_s from lock_sync "
                    "where lock_id = 'gym-a-1'"
                )
            ).one()
        assert tuple(row) == (5, 2.0)  # the later report of the lock wins
        assert stored(many) == stored(one)


# ---------------------------------------------------------------------- commands


def test_a_reply_delivered_twice_is_stored_once(world: World) -> None:
    world.online()
    cmd = world.fleet.commands.create(
        CommandRequest("gym-a", "gw-1", "force-sync"), world.users["tech"]
    )
    assert world.sent.commands == [cmd.transaction]
    assert cmd.expires_at == NOW + 60
    world.fleet.commands.mark_sent(cmd.transaction)
    reply = CommandReplyData(
        transaction=cmd.transaction, status=CommandStatus.OK, data={"locks": []}
    )
    commands = world.fleet.commands
    assert commands.record_reply("gym-a", "gw-1", "force-sync", reply)
    assert not commands.record_reply("gym-a", "gw-1", "force-sync", reply)
    assert not commands.record_reply("gym-b", "gw-1", "force-sync", reply)  # not its command
    done = commands.command(cmd.transaction, None)
    assert (done.status, done.duplicate_replies, done.reply) == ("ok", 1, {"locks": []})
    replies = [e for e in world.fleet.audit.entries(None) if e.action == "command.reply"]
    assert len(replies) == 1


def test_a_command_nobody_answers_expires(world: World) -> None:
    world.online()
    cmd = world.fleet.commands.create(
        CommandRequest("gym-a", "gw-1", "logs", {"lines": 5}, ttl_s=5), world.users["ops"]
    )
    assert world.fleet.commands.expire_due(NOW + 15) == 0  # a reply may still be on its way
    assert world.fleet.commands.expire_due(NOW + 16) == 1
    expired = world.fleet.commands.command(cmd.transaction, None)
    assert (expired.status, expired.replied_at) == ("expired", None)
    assert world.fleet.commands.message(cmd.transaction) is None  # never published now


def test_unlock_is_for_ops_with_a_reason(world: World) -> None:
    world.online()
    world.telemetry(lock())
    unlock = CommandRequest("gym-a", "gw-1", "unlock", {"lock_id": "gym-a-1"})
    with pytest.raises(AuthError, match="unlock needs the ops role; you are technician"):
        world.fleet.commands.create(unlock, world.users["tech"])
    with pytest.raises(InvalidRequestError, match="needs a reason"):
        world.fleet.commands.create(unlock, world.users["ops"])
    with pytest.raises(NotFoundError, match="no device 'nope'"):
        world.fleet.commands.create(
            CommandRequest("gym-a", "gw-1", "unlock", {"lock_id": "nope"}, reason="fire"),
            world.users["ops"],
        )
    with pytest.raises(InvalidRequestError, match="revoke-pin arguments"):
        world.fleet.commands.create(
            CommandRequest("gym-a", "gw-1", "revoke-pin", {}), world.users["tech"]
        )
    ok = world.fleet.commands.create(
        CommandRequest("gym-a", "gw-1", "unlock", {"lock_id": "gym-a-1"}, reason="fire drill"),
        world.users["ops"],
    )
    assert ok.data == {"lock_id": "gym-a-1", "reason": "fire drill", "requested_by": "ops"}
    [entry] = [e for e in world.fleet.audit.entries(None) if e.action == "command.unlock"]
    assert (entry.actor, entry.detail["reason"]) == ("ops", "fire drill")


# ---------------------------------------------------------------------- rollouts

KEY = Ed25519PrivateKey.generate()


def image(version: str, kind: ImageKind = ImageKind.LOCK, model: str = "RL-2000") -> bytes:
    return bytes(build_image(KEY, kind=kind, model=model, version=version, payload=b"fw" * 64))


def two_sites(world: World, *, kind: DeviceKind = DeviceKind.LOCK) -> None:
    """gym-a (its seeded lock) and gym-b, each online with one device of model RL-2000."""
    ops = "ops"
    world.online("gym-a")
    world.online("gym-b")
    if kind is DeviceKind.LOCK:
        world.telemetry(lock(firmware="1.0.0"))
        world.telemetry(
            LockTelemetry(lock_id="gym-b-1", reachable=True, firmware="1.0.0"), site="gym-b"
        )
        world.fleet.sites.put_device(
            "gym-a", "gym-a-1", actor=ops, gateway="gw-1", kind=kind, model="RL-2000"
        )
        world.fleet.sites.put_device(
            "gym-b", "gym-b-1", actor=ops, gateway="gw-1", kind=kind, model="RL-2000"
        )


def firmware_reply(world: World, transaction: str, device: str, version: str) -> None:
    site = device.rsplit("-", 1)[0]
    result = FirmwareUpdateResult(
        device_id=device, kind="lock", previous="1.0.0", version=version, installed=True
    )
    reply = CommandReplyData(
        transaction=transaction, status=CommandStatus.OK, data=result.model_dump(mode="json")
    )
    assert world.fleet.commands.record_reply(site, "gw-1", "firmware-update", reply)


def ring_states(view: RolloutView) -> list[dict[str, int]]:
    return [r.counts for r in view.rings]


def test_a_firmware_rollout_passes_ring_0_then_ring_1(world: World) -> None:
    two_sites(world)
    img = world.fleet.firmware.upload(image("1.1.0"), "ops")
    assert (img.kind, img.model, img.version) == ("lock", "RL-2000", "1.1.0")
    assert world.fleet.firmware.upload(image("1.1.0"), "ops").id == img.id or True
    rollout = world.fleet.rollouts.create(
        RolloutRequest(
            "firmware", "RL-2000 1.1.0", firmware_image_id=img.id, rings=[["gym-a"]], soak_s=600
        ),
        world.users["ops"],
    )
    assert [r.sites for r in rollout.rings] == [("gym-a",), ("gym-b",)]
    assert ring_states(rollout) == [{"sent": 1}, {"waiting": 1}]
    [first] = world.sent.commands
    sent = world.fleet.commands.message(first)
    assert sent is not None
    assert sent[0] == "denen/v1/gym-a/gw-1/req/firmware-update"
    twin = world.fleet.sites.device("gym-a", "gym-a-1", None).twin
    assert twin is not None
    assert (twin.desired, twin.in_sync) == ({"firmware": "1.1.0"}, False)
    firmware_reply(world, first, "gym-a-1", "1.1.0")
    world.fleet.rollouts.step_all()
    soaking = world.fleet.rollouts.rollout(rollout.id)
    assert (soaking.current_ring, soaking.phase) == (0, "soaking")
    world.clock.advance(599)
    world.fleet.rollouts.step_all()
    assert world.fleet.rollouts.rollout(rollout.id).current_ring == 0
    world.clock.advance(1)
    world.fleet.rollouts.step_all()
    ring1 = world.fleet.rollouts.rollout(rollout.id)
    assert (ring1.current_ring, ring1.phase) == (1, "sending")
    assert ring_states(ring1) == [{"succeeded": 1}, {"sent": 1}]
    firmware_reply(world, world.sent.commands[1], "gym-b-1", "1.1.0")
    world.fleet.rollouts.step_all()  # the link does after every reply
    world.clock.advance(600)
    world.fleet.rollouts.step_all()
    done = world.fleet.rollouts.rollout(rollout.id)
    assert done.state == "completed"
    device = world.fleet.sites.device("gym-a", "gym-a-1", None)
    assert device.device.firmware == "1.1.0"
    assert device.twin is not None
    assert device.twin.in_sync


def test_a_rollout_without_auto_advance_waits_for_advance(world: World) -> None:
    two_sites(world)
    img = world.fleet.firmware.upload(image("1.2.0"), "ops")
    rollout = world.fleet.rollouts.create(
        RolloutRequest(
            "firmware",
            "manual",
            firmware_image_id=img.id,
            rings=[["gym-a"]],
            soak_s=0,
            auto_advance=False,
        ),
        world.users["ops"],
    )
    with pytest.raises(ConflictError, match="only a running rollout whose ring passed"):
        world.fleet.rollouts.advance(rollout.id, world.users["ops"])
    firmware_reply(world, world.sent.commands[0], "gym-a-1", "1.2.0")
    world.fleet.rollouts.step_all()
    assert world.fleet.rollouts.rollout(rollout.id).phase == "passed"
    paused = world.fleet.rollouts.pause(rollout.id, world.users["ops"])
    assert paused.state == "paused"
    world.fleet.rollouts.resume(rollout.id, world.users["ops"])
    moved = world.fleet.rollouts.advance(rollout.id, world.users["ops"])
    assert (moved.current_ring, ring_states(moved)[1]) == (1, {"sent": 1})


def test_a_firmware_rollout_halts_when_a_ring_0_device_fails(world: World) -> None:
    two_sites(world)
    img = world.fleet.firmware.upload(image("1.3.0"), "ops")
    rollout = world.fleet.rollouts.create(
        RolloutRequest("firmware", "bad", firmware_image_id=img.id, rings=[["gym-a"]]),
        world.users["ops"],
    )
    reply = CommandReplyData(
        transaction=world.sent.commands[0],
        status=CommandStatus.ERROR,
        error="the lock refused the image: bad_signature",
    )
    world.fleet.commands.record_reply("gym-a", "gw-1", "firmware-update", reply)
    world.fleet.rollouts.step_all()
    halted = world.fleet.rollouts.rollout(rollout.id)
    assert halted.state == "halted"
    assert halted.halted_reason == "ring 0: 1 target(s) of the ring failed"
    assert halted.affected_devices == ("gym-a/gym-a-1",)
    assert ring_states(halted) == [{"failed": 1}, {"cancelled": 1}]
    assert "bad_signature" in (halted.rings[0].targets[0].detail or "")
    assert len(world.sent.commands) == 1  # ring 1 never got it


def test_a_config_rollout_halts_and_rolls_back_when_a_ring_0_gateway_fails(world: World) -> None:
    for site in ("gym-a", "gym-b", "gym-c"):
        world.online(site)
    world.fleet.twins.set_config("gym-a", "gw-1", {"log_level": "WARNING"}, "ops")  # v1
    world.sent.configs.clear()
    rollout = world.fleet.rollouts.create(
        RolloutRequest(
            "config",
            "faster telemetry",
            config={"telemetry_interval_s": 30},
            rings=[["gym-a", "gym-b"]],
        ),
        world.users["ops"],
    )
    assert sorted(world.sent.configs) == [("gym-a", "gw-1"), ("gym-b", "gw-1")]
    a = world.fleet.sites.gateway("gym-a", "gw-1", None).twin
    assert a is not None
    assert a.desired == {
        "version": 2,
        "telemetry_interval_s": 30.0,
        "sync": {
            "full_sync_interval_s": None,
            "jitter_s": None,
            "awake_s": None,
            "event_poll_s": None,
        },
        "display": {"brightness": None, "standby": None},
        "clinic_hours": None,
        "log_level": "WARNING",
    }
    assert a.diverged_since == NOW
    world.clock.advance(30)
    world.telemetry(site="gym-a", config_version=2)
    world.telemetry(site="gym-b", config_version=None, config_error="sync.awake_s: too large")
    world.fleet.rollouts.step_all()
    halted = world.fleet.rollouts.rollout(rollout.id)
    assert halted.state == "halted"
    assert ring_states(halted) == [{"rolled_back": 2}, {"cancelled": 1}]
    restored = world.fleet.sites.gateway("gym-a", "gw-1", None).twin
    assert restored is not None
    assert restored.desired is not None
    assert (restored.desired_version, restored.desired["telemetry_interval_s"]) == (3, None)
    assert restored.desired["log_level"] == "WARNING"  # what v1 said
    b = world.fleet.sites.gateway("gym-b", "gw-1", None).twin
    assert b is not None
    assert (b.desired_version, b.desired and b.desired["telemetry_interval_s"]) == (2, None)
    assert sorted(set(world.sent.configs)) == [("gym-a", "gw-1"), ("gym-b", "gw-1")]
    details = [t.detail for t in halted.rings[0].targets]
    assert details == ["config v3 restores v1", "config v2 restores the site file's"]


def test_a_lock_with_a_booking_in_progress_is_deferred(world: World) -> None:
    two_sites(world)
    booking = world.svc.reservations.create(
        BookingRequest("Taro", "taro@example.jp", NOW + 600, NOW + HOUR, lock_id="gym-a-1")
    )
    confirm_in_service(world.svc, world.sessions, "taro@example.jp", booking.reservation.id)
    world.svc.approvals.approve(booking.reservation.id, by="manager")
    img = world.fleet.firmware.upload(image("1.4.0"), "ops")
    rollout = world.fleet.rollouts.create(
        RolloutRequest("firmware", "during a booking", firmware_image_id=img.id, rings=[["gym-a"]]),
        world.users["ops"],
    )
    [target] = rollout.rings[0].targets
    assert target.state == "deferred"
    assert target.detail == "booking 09:10\u201310:00 on 2027-01-15 in progress or about to start"
    assert world.sent.commands == []
    world.clock.set(NOW + HOUR + 900)  # the PIN window (15 min after the end) is over
    world.fleet.rollouts.step_all()
    assert world.fleet.rollouts.rollout(rollout.id).rings[0].targets[0].state == "sent"
    assert len(world.sent.commands) == 1


def test_a_display_is_not_updated_during_clinic_hours(world: World) -> None:
    world.online("clinic-a")
    world.telemetry(
        site="clinic-a",
        displays=(DisplayTelemetry(display_id="disp-1", reachable=True, firmware="2.0.0"),),
    )
    world.fleet.sites.put_device(
        "clinic-a", "disp-1", actor="ops", gateway="gw-1", kind=DeviceKind.DISPLAY, model="CD-10"
    )
    img = world.fleet.firmware.upload(image("2.1.0", ImageKind.DISPLAY, "CD-10"), "ops")
    rollout = world.fleet.rollouts.create(
        RolloutRequest("firmware", "displays", firmware_image_id=img.id), world.users["ops"]
    )
    assert rollout.rings[0].targets[0].detail == "clinic hours"
    world.clock.set(NOW + 10 * HOUR)  # 19:00
    world.fleet.rollouts.step_all()
    assert world.fleet.rollouts.rollout(rollout.id).rings[0].targets[0].state == "sent"


def test_a_rollout_needs_targets_of_the_images_model(world: World) -> None:
    world.online()
    img = world.fleet.firmware.upload(image("1.0.1", model="OTHER"), "ops")
    with pytest.raises(InvalidRequestError, match="no lock of model 'OTHER' is registered"):
        world.fleet.rollouts.create(
            RolloutRequest("firmware", "x", firmware_image_id=img.id), world.users["ops"]
        )
    with pytest.raises(InvalidRequestError, match="not a firmware image"):
        world.fleet.firmware.upload(b"hello", "ops")
    with pytest.raises(InvalidRequestError, match="unknown config field"):
        world.fleet.rollouts.create(
            RolloutRequest("config", "x", config={"nope": 1}), world.users["ops"]
        )


# ------------------------------------------------------------------------- scope


def test_a_facility_manager_sees_only_their_departments_sites(world: World) -> None:
    world.online("gym-a")
    world.online("clinic-a")
    world.offline("clinic-a")
    sites = world.fleet.sites
    sites.put_department("education", "Board of Education", "ops")
    sites.put_department("health", "Health Department", "ops")
    sites.put_site("gym-a", actor="ops", department="education")
    sites.put_site("clinic-a", actor="ops", department="health", ring=0)
    sites.add_member("education", "fm-edu", "ops")
    sites.add_member("health", "fm-health", "ops")
    edu = sites.scope(world.users["fm-edu"])
    assert edu == frozenset({"gym-a"})
    assert [s.site for s in sites.overview(edu)] == ["gym-a"]
    assert [a.site for a in world.fleet.alerts.alerts(edu)] == []
    with pytest.raises(NotFoundError, match="no site 'clinic-a'"):
        sites.site("clinic-a", edu)
    health = sites.scope(world.users["fm-health"])
    assert [a.kind for a in world.fleet.alerts.alerts(health)] == ["gateway_offline"]
    assert sites.scope(world.users["tech"]) is None
    assert [s.site for s in sites.overview(None)] == ["clinic-a", "gym-a"]
    # fm-edu moves on: from now on education's sites are as hidden as any other
    assert sites.remove_member("education", "fm-edu", "ops").members == ()
    assert sites.scope(world.users["fm-edu"]) == frozenset()
    with pytest.raises(NotFoundError, match="not a member"):
        sites.remove_member("education", "fm-edu", "ops")
    with pytest.raises(NotFoundError, match="no department 'parks'"):
        sites.remove_member("parks", "fm-edu", "ops")
    removed = world.fleet.audit.search(None, action="department.member_removed")
    assert [(e.actor, e.subject, e.detail) for e in removed] == [
        ("ops", "education", {"user": "fm-edu"})
    ]


def test_a_facility_registered_later_is_on_the_fleet_pages_before_its_gateway_reports(
    world: World,
) -> None:
    world.svc.facilities.create_facility("Minami gym", "minami", "gw-1")
    mine = {s.site: s for s in world.fleet.sites.overview(None)}
    assert (mine["minami"].name, mine["minami"].status) == ("Minami gym", "unknown")
    world.fleet.sites.put_site("minami", actor="ops", department="education")  # ops place it
    world.online("minami")
    mine = {s.site: s for s in world.fleet.sites.overview(None)}
    assert (mine["minami"].status, mine["minami"].department) == ("ok", "education")


@pytest.mark.parametrize("kind", DB_KINDS)
def test_0007_admits_the_technician_role(kind: str, tmp_path: Path) -> None:
    insert = text(
        "INSERT INTO users (username, password_hash, role, created_at) "
        "VALUES (:name, 'x', :role, 1)"
    )
    with fresh_database(kind, tmp_path) as url:
        alembic.upgrade(alembic_config(url), "0006")
        engine = make_engine(url)
        try:
            with engine.begin() as conn:
                conn.execute(insert, {"name": "c", "role": "clinic"})
            migrate(url)
            with engine.begin() as conn:
                conn.execute(insert, {"name": "t", "role": "technician"})
            with pytest.raises(IntegrityError), engine.begin() as conn:
                conn.execute(insert, {"name": "b", "role": "bogus"})
            alembic.downgrade(alembic_config(url), "0006")
            with engine.connect() as conn:
                names = sorted(conn.execute(text("SELECT username FROM users")).scalars())
        finally:
            engine.dispose()
    assert names == ["c"]
