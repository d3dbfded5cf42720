"""The fleet's dashboard pages through the ASGI app with its lifespan (MQTT off: the fleet
services are fed the reports an agent would send), logged in with the session cookie as
a browser is: every page renders for ops, a facility manager sees only its department's
sites, a technician sends commands but no emergency unlock, replies show on the site
page, acknowledging moves an alert in the inbox, and the audit log searches and exports."""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from cloud.app import create_app
from cloud.bootstrap import DemoSeed, seed_demo
from cloud.core.models import Role
from cloud.core.views import UserView
from cloud.fleet.commands import CommandRequest
from cloud.fleet.rollouts import RolloutRequest
from cloud.fleet.services import FleetServices
from cloud.settings import CloudSettings
from protocol.clock import ManualClock
from protocol.messages import (
    CommandReplyData,
    CommandStatus,
    ForceSyncResult,
    GatewayState,
    LockHolding,
    LockTelemetry,
    LogsResult,
    StatusData,
    TelemetryData,
)
from tests.support.cloud import Authenticator, log_in
from tests.support.migrated import Template, copy_of, migrated_template

NOW = 1_799_971_200  # Friday 2027-01-15 09:00 Tokyo
HOUR = 3600
USERS = {
    "ops": Role.OPS,
    "tech": Role.TECHNICIAN,
    "fm-edu": Role.MANAGER,  # the education board's facility manager: gym-a
    "fm-health": Role.MANAGER,  # the health department's: clinic-b
    "desk": Role.CLINIC,
}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Template]:
    # SQLite only: the queries behind these pages run on both dialects in test_cloud_fleet
    with migrated_template("sqlite", tmp_path_factory.mktemp("template")) as made:
        yield made


@dataclass
class Pages:
    app: FastAPI
    clock: ManualClock
    seed: DemoSeed
    clients: list[httpx.AsyncClient] = field(default_factory=list)
    phones: dict[str, Authenticator] = field(default_factory=dict)  # each person's app

    @property
    def fleet(self) -> FleetServices:
        fleet: FleetServices = self.app.state.fleet.services
        return fleet

    def user(self, username: str) -> UserView:
        found: UserView | None = self.app.state.services.users.get(username)
        assert found is not None
        return found

    async def logged_in(self, username: str) -> httpx.AsyncClient:
        """A browser of its own (cookie jar), in English, logged in as ``username``."""
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://cloud",
            headers={"Accept-Language": "en"},
            follow_redirects=True,  # a form post answers 303 to the page, as in a browser
        )
        self.clients.append(client)
        password = self.seed.users[username].password
        phone = self.phones.get(username)
        self.phones[username] = await log_in(client, self.clock, username, password, phone)
        return client

    def report(self, site: str, *locks: LockTelemetry, gateway: str = "gw-1") -> None:
        """What the site's agent says: born, then one telemetry report."""
        self.fleet.health.record_status(site, gateway, StatusData(state=GatewayState.ONLINE))
        self.fleet.health.record_telemetry(
            site,
            gateway,
            TelemetryData(
                uptime_s=100,
                outbox_depth=3,
                frames_dropped=0,
                time_trusted=True,
                locks=list(locks),
            ),
        )


def lock(battery: int = 90, **fields: object) -> LockTelemetry:
    return LockTelemetry(lock_id="gym-a-1", reachable=True, battery_pct=battery, **fields)


@pytest.fixture
async def pages(tmp_path: Path, template: Template) -> AsyncIterator[Pages]:
    with copy_of(template, tmp_path) as url:
        settings = CloudSettings(
            database_url=url,
            secret_key="s" * 40,
            metrics_token="m" * 32,
            mqtt_enabled=False,
            fleet_poll_s=3600,
        )
        clock = ManualClock(NOW)
        app = create_app(settings, clock=clock)
        async with app.router.lifespan_context(app):
            with app.state.sessions.begin() as session:
                seed = seed_demo(session, clock=clock, users=USERS, members=["fm-edu"])
            world = Pages(app, clock, seed)
            sites = world.fleet.sites
            sites.put_department("education", "Board of Education", "ops")
            sites.put_department("health", "Health Department", "ops")
            sites.add_member("education", "fm-edu", "ops")
            sites.add_member("health", "fm-health", "ops")
            sites.put_site("gym-a", actor="ops", department="education")
            sites.put_site("clinic-b", actor="ops", name="Clinic B", department="health")
            world.report("gym-a", lock(battery=15, last_sync_at=NOW - 60))  # battery low
            world.report("clinic-b")
            world.fleet.health.record_status(
                "clinic-b", "gw-1", StatusData(state=GatewayState.OFFLINE)
            )
            try:
                yield world
            finally:
                for client in world.clients:
                    await client.aclose()


def attrs(page: str, testid: str, attribute: str) -> list[str]:
    """The ``attribute`` of every element with ``data-testid=testid``, in page order."""
    found = []
    for tag in re.finditer(rf'<[^>]*data-testid="{re.escape(testid)}"[^>]*>', page):
        value = re.search(rf'{attribute}="([^"]*)"', tag.group(0))
        if value:
            found.append(html.unescape(value.group(1)))
    return found


def text_of(page: str, testid: str) -> str:
    """The text inside the first element with ``data-testid=testid`` (tags stripped)."""
    found = re.search(
        rf'data-testid="{re.escape(testid)}"[^>]*>(.*?)</(?:td|span|p|dd|strong)>', page, re.S
    )
    assert found, f"no {testid} on the page"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", found.group(1))).split())


async def get_ok(client: httpx.AsyncClient, path: str) -> str:
    r = await client.get(path)
    assert r.status_code == 200, f"{path}: {r.status_code} {r.text[:500]}"
    return r.text


# --------------------------------------------------------------------------- pages


async def test_every_fleet_page_renders_for_ops(pages: Pages) -> None:
    ops = await pages.logged_in("ops")
    home = await get_ok(ops, "/")
    assert 'data-testid="nav-fleet"' in home
    assert 'data-testid="nav-alerts"' in home

    sites = await get_ok(ops, "/fleet")
    assert attrs(sites, "site-row", "data-site") == ["clinic-b", "gym-a"]
    assert attrs(sites, "site-row", "data-status") == ["offline", "warning"]
    assert "Board of Education" in sites
    # the gym's figures are one click away (ops cannot reach them from /manage)
    assert f"/manage/facilities/{pages.seed.facility_id}/figures" in sites
    # the live part the page polls is what the page shows: the first poll swaps nothing
    live = await ops.get("/fleet/live")
    assert live.status_code == 200
    assert f'data-version="{live.headers["X-Live-Version"]}"' in sites

    site = await get_ok(ops, "/fleet/sites/gym-a")
    assert attrs(site, "gateway", "data-available") == ["true"]
    assert text_of(site, "gateway-outbox") == "3 waiting"
    assert attrs(site, "device-row", "data-device") == ["gym-a-1"]
    assert attrs(site, "alert-row", "data-kind") == ["battery_low"]
    assert 'href="/locks/gym-a-1"' in site  # the lock's events, not repeated here
    assert attrs(site, "send-unlock", "data-testid") == ["send-unlock"]
    live = await ops.get("/fleet/sites/gym-a/live")
    assert f'data-version="{live.headers["X-Live-Version"]}"' in site

    device = await get_ok(ops, "/fleet/sites/gym-a/devices/gym-a-1")
    assert text_of(device, "device-battery").startswith("15 %")
    assert attrs(device, "chart-battery", "data-points") == ["1"]
    assert "<svg" in device
    assert attrs(device, "alert-row", "data-kind") == ["battery_low"]

    inbox = await get_ok(ops, "/fleet/alerts")
    assert sorted(attrs(inbox, "alert-row", "data-kind")) == ["battery_low", "gateway_offline"]
    assert (await ops.get("/fleet/alerts/live")).status_code == 200

    audit = await get_ok(ops, "/fleet/audit")
    assert "site.put" in attrs(audit, "audit-row", "data-action")
    rollouts = await get_ok(ops, "/fleet/rollouts")
    assert "POST /api/fleet/rollouts" in rollouts
    assert attrs(rollouts, "no-rollouts", "data-testid") == ["no-rollouts"]


async def test_the_sites_page_filters_by_department_and_status(pages: Pages) -> None:
    ops = await pages.logged_in("ops")
    page = await get_ok(ops, "/fleet?department=health")
    assert attrs(page, "site-row", "data-site") == ["clinic-b"]
    page = await get_ok(ops, "/fleet?status=warning")
    assert attrs(page, "site-row", "data-site") == ["gym-a"]
    live = await get_ok(ops, "/fleet/live?status=offline")
    assert attrs(live, "site-row", "data-site") == ["clinic-b"]


async def test_a_city_of_sites_pages_those_in_trouble_first_and_searches(pages: Pages) -> None:
    """230 more sites: the page shows 100 at a time, the offline and warning ones first,
    counts every site, and finds one by its code or name."""
    online = StatusData(state=GatewayState.ONLINE)
    pages.fleet.health.record_status_many([(f"town-{i:03d}", "gw-1", online) for i in range(230)])
    pages.fleet.health.record_status("town-150", "gw-1", StatusData(state=GatewayState.OFFLINE))
    ops = await pages.logged_in("ops")
    first = await get_ok(ops, "/fleet")
    rows = attrs(first, "site-row", "data-site")
    assert len(rows) == 100
    # clinic-b's and town-150's gateways are offline; gym-a has a battery warning
    assert rows[:3] == ["clinic-b", "town-150", "gym-a"]
    assert "232 sites in all" in first
    assert "Sites 1\u2013100 of 232" in text_of(first, "pager-top")
    assert attrs(first, "page-next", "href") == ["/fleet?page=2"] * 2  # top and bottom
    third = await get_ok(ops, "/fleet?page=3")
    assert len(attrs(third, "site-row", "data-site")) == 32
    assert attrs(third, "page-next", "href") == []
    assert attrs(third, "live", "data-live-url") == ["/fleet/live?page=3"]
    found = await get_ok(ops, "/fleet?q=TOWN-04")  # a code or a name, any case
    assert attrs(found, "site-row", "data-site") == [f"town-{i:03d}" for i in range(40, 50)]
    assert attrs(found, "pager-top", "class") == []  # one page: no pager
    offline = await get_ok(ops, "/fleet?status=offline&page=9")  # past the end: the last
    assert attrs(offline, "site-row", "data-site") == ["clinic-b", "town-150"]


async def test_a_device_page_charts_its_history(pages: Pages) -> None:
    for day in range(1, 6):  # a battery draining 5 % a day, a sync every 12 hours
        pages.clock.advance(12 * HOUR)
        pages.report("gym-a", lock(battery=80 - 5 * day, last_sync_at=int(pages.clock.now())))
        pages.clock.advance(12 * HOUR)
        pages.report("gym-a", lock(battery=80 - 5 * day, last_sync_at=int(pages.clock.now())))
    ops = await pages.logged_in("ops")
    page = await get_ok(ops, "/fleet/sites/gym-a/devices/gym-a-1")
    assert attrs(page, "chart-battery", "data-points") == ["11"]  # one per battery change
    assert attrs(page, "chart-sync", "data-points") == ["10"]  # each sync after the first
    page = await get_ok(ops, "/fleet/sites/gym-a/devices/gym-a-1?days=1")
    assert attrs(page, "chart-battery", "data-points") == ["3"]  # 24 h ago, 12 h ago, now


# --------------------------------------------------------------------------- roles


async def test_a_facility_manager_sees_only_its_departments_sites(pages: Pages) -> None:
    fm = await pages.logged_in("fm-edu")
    sites = await get_ok(fm, "/fleet")
    assert attrs(sites, "site-row", "data-site") == ["gym-a"]
    assert "clinic-b" not in sites
    assert "Health Department" not in sites
    for path in (
        "/fleet/sites/clinic-b",
        "/fleet/sites/clinic-b/live",
        "/fleet/sites/clinic-b/devices/gym-a-1",
    ):
        assert (await fm.get(path)).status_code == 404, path
    inbox = await get_ok(fm, "/fleet/alerts")
    assert attrs(inbox, "alert-row", "data-site") == ["gym-a"]
    assert "clinic-b" not in inbox
    inbox = await get_ok(fm, "/fleet/alerts?site=clinic-b")
    assert attrs(inbox, "alert-row", "data-site") == []

    # read-only: no command forms, no acknowledging, no audit log or rollouts
    site = await get_ok(fm, "/fleet/sites/gym-a")
    assert attrs(site, "command-forms", "data-gateway") == []
    assert 'data-testid="ack"' not in site
    assert 'data-testid="fleet-nav-audit"' not in site
    r = await fm.post(
        "/fleet/sites/gym-a/commands",
        data={"gateway": "gw-1", "verb": "force-sync"},
        follow_redirects=False,
    )
    assert r.status_code == 403
    alert_id = pages.fleet.alerts.alerts(None, site="gym-a")[0].id
    assert (await fm.post(f"/fleet/alerts/{alert_id}/ack")).status_code == 403
    assert (await fm.get("/fleet/audit")).status_code == 403
    assert (await fm.get("/fleet/rollouts")).status_code == 403

    other = await pages.logged_in("fm-health")
    assert attrs(await get_ok(other, "/fleet"), "site-row", "data-site") == ["clinic-b"]
    assert (await other.get("/fleet/sites/gym-a")).status_code == 404


async def test_clinic_staff_have_no_fleet_pages(pages: Pages) -> None:
    desk = await pages.logged_in("desk")
    assert 'data-testid="nav-fleet"' not in await get_ok(desk, "/")
    for path in ("/fleet", "/fleet/alerts", "/fleet/sites/gym-a"):
        assert (await desk.get(path)).status_code == 403, path


async def test_a_technician_sends_a_force_sync_but_no_emergency_unlock(pages: Pages) -> None:
    tech = await pages.logged_in("tech")
    site = await get_ok(tech, "/fleet/sites/gym-a")
    assert attrs(site, "send-force-sync", "data-testid") == ["send-force-sync"]
    assert 'data-testid="send-unlock"' not in site
    assert 'data-testid="send-restart"' in site

    r = await tech.post(
        "/fleet/sites/gym-a/commands",
        data={"gateway": "gw-1", "verb": "unlock", "lock_id": "gym-a-1", "reason": "a test"},
    )
    assert r.status_code == 403
    assert "needs the ops role" in r.text
    assert pages.fleet.commands.commands(None) == []

    r = await tech.post(
        "/fleet/sites/gym-a/commands",
        data={"gateway": "gw-1", "verb": "force-sync", "lock_id": ""},
        follow_redirects=False,
    )
    assert r.status_code == 303
    [sent] = pages.fleet.commands.commands(None)
    assert (sent.verb, sent.requested_by, sent.data) == ("force-sync", "tech", {})
    assert r.headers["location"].endswith(f"#command-{sent.transaction}")
    page = await get_ok(tech, r.headers["location"])
    assert "Force sync sent to gw-1" in text_of(page, "flash")
    assert attrs(page, "command", "data-status") == ["pending"]


async def test_an_unlock_needs_a_reason_and_is_shown_with_it(pages: Pages) -> None:
    ops = await pages.logged_in("ops")
    form = {"gateway": "gw-1", "verb": "unlock", "lock_id": "gym-a-1", "reason": " "}
    r = await ops.post("/fleet/sites/gym-a/commands", data=form)
    assert r.status_code == 200  # back on the site page, with the refusal
    assert "needs a reason" in text_of(r.text, "error")
    assert pages.fleet.commands.commands(None) == []
    form["reason"] = "fire alarm, brigade at the door"
    page = (await ops.post("/fleet/sites/gym-a/commands", data=form)).text
    assert attrs(page, "command", "data-verb") == ["unlock"]
    assert text_of(page, "command-reason") == "reason: fire alarm, brigade at the door"


async def test_replies_and_expiry_show_on_the_site_page(pages: Pages) -> None:
    ops_user = pages.user("ops")
    commands = pages.fleet.commands
    sync = commands.create(CommandRequest("gym-a", "gw-1", "force-sync"), ops_user)
    logs = commands.create(CommandRequest("gym-a", "gw-1", "logs", {"lines": 2}), ops_user)
    restart = commands.create(CommandRequest("gym-a", "gw-1", "restart"), ops_user)
    for c in (sync, logs, restart):
        commands.mark_sent(c.transaction)
    ops = await pages.logged_in("ops")
    page = await get_ok(ops, "/fleet/sites/gym-a/live")
    assert attrs(page, "command", "data-status") == ["sent", "sent", "sent"]
    version = (await ops.get("/fleet/sites/gym-a/live")).headers["X-Live-Version"]

    held = ForceSyncResult(
        locks=[LockHolding(lock_id="gym-a-1", synced=True, version=7, grant_ids=["g1", "g2"])]
    )
    commands.record_reply(
        "gym-a",
        "gw-1",
        "force-sync",
        CommandReplyData(
            transaction=sync.transaction, status=CommandStatus.OK, data=held.model_dump()
        ),
    )
    lines = LogsResult(lines=['{"msg": "agent started"}', '{"msg": "lock gym-a-1 synced"}'])
    commands.record_reply(
        "gym-a",
        "gw-1",
        "logs",
        CommandReplyData(
            transaction=logs.transaction, status=CommandStatus.OK, data=lines.model_dump()
        ),
    )
    pages.clock.advance(5 * 60)  # nobody answers the restart
    commands.expire_due(pages.clock.now())

    live = await ops.get("/fleet/sites/gym-a/live")
    assert live.headers["X-Live-Version"] != version  # the page swaps the new state in
    page = live.text
    statuses = dict(
        zip(
            attrs(page, "command", "data-verb"),
            attrs(page, "command", "data-status"),
            strict=True,
        )
    )
    assert statuses == {"restart": "expired", "logs": "ok", "force-sync": "ok"}
    assert attrs(page, "sync-lock", "data-lock") == ["gym-a-1"]
    assert text_of(page, "sync-version") == "v7"
    assert text_of(page, "sync-pins") == "2 (g1, g2)"
    assert "lock gym-a-1 synced" in html.unescape(page)
    assert "nobody answered by" in page


# -------------------------------------------------------------------------- inbox


async def test_acknowledging_moves_an_alert_from_unacknowledged_to_acknowledged(
    pages: Pages,
) -> None:
    tech = await pages.logged_in("tech")
    inbox = await get_ok(tech, "/fleet/alerts?state=unacknowledged")
    assert sorted(attrs(inbox, "alert-row", "data-kind")) == ["battery_low", "gateway_offline"]
    offline = pages.fleet.alerts.alerts(None, kind="gateway_offline")[0]

    back = "/fleet/alerts?state=unacknowledged"
    r = await tech.post(f"/fleet/alerts/{offline.id}/ack", data={"back": back})
    assert r.status_code == 200
    assert text_of(r.text, "flash") == f"Alert #{offline.id} acknowledged"
    assert attrs(r.text, "alert-row", "data-kind") == ["battery_low"]

    done = await get_ok(tech, "/fleet/alerts?state=acknowledged")
    assert attrs(done, "alert-row", "data-alert") == [str(offline.id)]
    assert text_of(done, "alert-acknowledged").startswith("acknowledged by tech, 2027-01-15 09:00")
    opened = await get_ok(tech, "/fleet/alerts?site=clinic-b&severity=critical")
    assert attrs(opened, "alert-row", "data-acknowledged") == ["true"]

    # the condition clears: the alert resolves by itself and moves to resolved
    pages.report("clinic-b")
    assert attrs(await get_ok(tech, "/fleet/alerts"), "alert-row", "data-kind") == ["battery_low"]
    resolved = await get_ok(tech, "/fleet/alerts?state=resolved&kind=gateway_offline")
    assert attrs(resolved, "alert-row", "data-resolved") == ["true"]


# -------------------------------------------------------------------------- audit


async def test_the_audit_log_searches_and_exports_csv(pages: Pages) -> None:
    ops_user = pages.user("ops")
    pages.fleet.commands.create(
        CommandRequest(
            "gym-a", "gw-1", "unlock", {"lock_id": "gym-a-1"}, reason="水漏れ、消防の立入り"
        ),
        ops_user,
    )
    pages.clock.advance(24 * HOUR)
    pages.fleet.commands.create(CommandRequest("gym-a", "gw-1", "force-sync"), pages.user("tech"))
    alert = pages.fleet.alerts.alerts(None, kind="battery_low")[0]
    pages.fleet.alerts.acknowledge(alert.id, ops_user, None)

    ops = await pages.logged_in("ops")
    found = await get_ok(ops, "/fleet/audit?q=消防")
    assert attrs(found, "audit-row", "data-action") == ["command.unlock"]
    found = await get_ok(ops, "/fleet/audit?action=command")
    assert attrs(found, "audit-row", "data-action") == ["command.force-sync", "command.unlock"]
    found = await get_ok(ops, "/fleet/audit?q=TECH")  # the actor, any case
    assert attrs(found, "audit-row", "data-action") == ["command.force-sync"]
    found = await get_ok(ops, "/fleet/audit?site=clinic-b")
    assert set(attrs(found, "audit-row", "data-site")) == {"clinic-b"}
    found = await get_ok(ops, "/fleet/audit?from=2027-01-16&to=2027-01-16")  # the second day
    assert attrs(found, "audit-row", "data-action") == ["alert.ack", "command.force-sync"]
    found = await get_ok(ops, "/fleet/audit?from=2027-01-15&to=2027-01-15&action=command")
    assert attrs(found, "audit-row", "data-action") == ["command.unlock"]
    bad = await get_ok(ops, "/fleet/audit?from=yesterday")
    assert "is not a date" in text_of(bad, "error")

    r = await ops.get("/fleet/audit.csv?action=command")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["action"] for row in rows] == ["command.force-sync", "command.unlock"]
    assert rows[1]["actor"] == "ops"
    assert rows[1]["time"] == "2027-01-15 09:00:00"
    assert "水漏れ、消防の立入り" in rows[1]["detail"]

    tech = await pages.logged_in("tech")
    assert (await tech.get("/fleet/audit")).status_code == 403
    assert (await tech.get("/fleet/audit.csv")).status_code == 403


# ----------------------------------------------------------------------- rollouts


async def test_ops_pause_and_resume_a_rollout_a_technician_only_follows_it(pages: Pages) -> None:
    rollout = pages.fleet.rollouts.create(
        RolloutRequest(
            kind="config",
            name="telemetry every 30 s",
            config={"telemetry_interval_s": 30},
            rings=[["gym-a"]],
            auto_advance=False,
        ),
        pages.user("ops"),
    )
    tech = await pages.logged_in("tech")
    page = await get_ok(tech, "/fleet/rollouts")
    assert attrs(page, "rollout", "data-state") == ["running"]
    assert attrs(page, "ring", "data-ring") == ["0", "1"]
    assert 'data-testid="rollout-pause"' not in page
    assert (await tech.post(f"/fleet/rollouts/{rollout.id}/pause")).status_code == 403

    ops = await pages.logged_in("ops")
    r = await ops.post(f"/fleet/rollouts/{rollout.id}/pause")
    assert text_of(r.text, "flash") == f"Rollout #{rollout.id} paused"
    assert attrs(r.text, "rollout", "data-state") == ["paused"]
    r = await ops.post(f"/fleet/rollouts/{rollout.id}/advance")  # its ring has not passed
    assert "only a running rollout" in text_of(r.text, "error")
    r = await ops.post(f"/fleet/rollouts/{rollout.id}/resume")
    assert attrs(r.text, "rollout", "data-state") == ["running"]
