"""The city operations dashboard in a real (headless) Chromium, against the whole stack as
processes (Mosquitto with TLS, the cloud, the simulated lock, the gym's agent): ops sends
a force sync and reads what the lock holds; a facility manager of another department
does not see the gym; ops watches the gym go offline on the sites page when its agent is
killed (the page updates itself), acknowledges the alert, and sees it resolve when the
agent is back. One stack for the module: the killing comes last and restarts the agent.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from provisioning.local_stack import GATEWAY, LOCK_ID, SITE, LocalStack
from tests.browser.people import Login, created_login, log_in, seeded_login
from tests.support.stack import running_stack

pytestmark = pytest.mark.browser

OFFLINE_WITHIN_MS = 60_000  # the promise: ops know within a minute
REPLY_WITHIN_MS = 30_000
ONLINE_WITHIN_S = 30.0
OTHER_SITE = "clinic-b"  # the health department's, where the manager works


@dataclass(frozen=True)
class FleetStack:
    stack: LocalStack
    ops: Login
    manager: Login  # a facility manager of the health department, not the gym's

    @property
    def url(self) -> str:
        return self.stack.cloud_url


def _wait_online(api: httpx.Client, deadline_s: float = ONLINE_WITHIN_S) -> None:
    """Until the gym's gateway is online with its lock (the agent's birth reached the
    cloud)."""
    deadline = time.monotonic() + deadline_s
    while True:
        r = api.get(f"/api/fleet/sites/{SITE}")
        if r.status_code == 200:
            body = r.json()
            if body["summary"]["gateways_online"] == 1 and body["devices"]:
                return
        assert time.monotonic() < deadline, f"{SITE} did not come online: {r.text[:300]}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetStack]:
    """The stack, with the city's departments as ops sets them up through the JSON API:
    the gym belongs to the board of education (the seed's, with the seeded manager), a
    second manager to the health department."""
    with running_stack(tmp_path_factory.mktemp("fleet-stack")) as stack:
        ops = seeded_login(stack, "ops")
        manager = created_login(stack, "fm-health", "manager")
        auth = (ops.username, ops.api_token)  # ops reach the API with a token
        with httpx.Client(base_url=stack.cloud_url, auth=auth, timeout=10) as api:
            for path, body in (
                ("/api/fleet/departments/education", {"name": "Board of Education"}),
                ("/api/fleet/departments/health", {"name": "Health Department"}),
                (f"/api/fleet/sites/{SITE}", {"department": "education"}),
                (f"/api/fleet/sites/{OTHER_SITE}", {"name": "Clinic B", "department": "health"}),
            ):
                r = api.put(path, json=body)
                assert r.status_code == 200, r.text
            r = api.put(f"/api/fleet/departments/health/members/{manager.username}")
            assert r.status_code == 200, r.text
            _wait_online(api)
        yield FleetStack(stack, ops, manager)


def _site_row(page: Page, site: str = SITE) -> str:
    return f'[data-testid="site-row"][data-site="{site}"]'


def test_ops_sends_a_force_sync_and_reads_what_the_lock_holds(
    fleet: FleetStack, new_page: Callable[[str], Page], page_errors: list[str], tmp_path: Path
) -> None:
    ops = new_page("ops")
    ops.goto(f"{fleet.url}/fleet")
    log_in(ops, fleet.url, fleet.ops)
    ops.locator(_site_row(ops)).get_by_test_id("site-link").click()
    expect(ops.get_by_test_id("site-name")).to_contain_text(SITE)
    expect(ops.locator(f'[data-testid="gateway"][data-gateway="{GATEWAY}"]')).to_have_attribute(
        "data-available", "true"
    )

    forms = ops.locator(f'[data-testid="command-forms"][data-gateway="{GATEWAY}"]')
    forms.get_by_test_id("force-sync-lock").select_option(LOCK_ID)
    forms.get_by_test_id("send-force-sync").click()
    expect(ops.get_by_test_id("flash")).to_contain_text(f"Force sync sent to {GATEWAY}")

    # pending → sent → replied, on the page as it stands (it polls its live part)
    command = ops.locator('[data-testid="command"][data-verb="force-sync"]').first
    expect(command).to_have_attribute("data-status", "ok", timeout=REPLY_WITHIN_MS)
    expect(command.get_by_test_id("command-status")).to_have_text("replied")
    held = command.locator(f'[data-testid="sync-lock"][data-lock="{LOCK_ID}"]')
    expect(held).to_have_attribute("data-synced", "true")
    expect(held.get_by_test_id("sync-version")).to_have_text(re.compile(r"^v\d+$"))
    expect(held.get_by_test_id("sync-pins")).to_have_text(re.compile(r"^\d+"))
    ops.screenshot(path=str(tmp_path / "force-sync.png"), full_page=True)
    assert page_errors == []


def test_a_facility_manager_of_another_department_does_not_see_the_gym(
    fleet: FleetStack, new_page: Callable[[str], Page], page_errors: list[str]
) -> None:
    manager = new_page("manager")
    log_in(manager, fleet.url, fleet.manager)
    manager.get_by_test_id("nav-fleet").click()
    rows = manager.get_by_test_id("site-row")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-site", OTHER_SITE)
    expect(manager.locator(_site_row(manager))).to_have_count(0)
    expect(manager.get_by_test_id("filter-department")).not_to_contain_text("Board of Education")

    answer = manager.goto(f"{fleet.url}/fleet/sites/{SITE}")
    assert answer is not None
    assert answer.status == 404
    manager.goto(f"{fleet.url}/fleet/alerts?state=all")
    expect(manager.get_by_test_id("alerts")).to_be_visible()
    expect(manager.locator(f'[data-testid="alert-row"][data-site="{SITE}"]')).to_have_count(0)
    # Chromium logs the 404 it was answered; nothing else went wrong
    assert page_errors == [
        f"manager ({fleet.url}/fleet/sites/{SITE}): Failed to load resource: "
        "the server responded with a status of 404 (Not Found)"
    ]


def test_a_killed_agent_shows_offline_within_a_minute_and_ops_acknowledge_it(
    fleet: FleetStack, new_page: Callable[[str], Page], page_errors: list[str], tmp_path: Path
) -> None:
    ops = new_page("ops")
    ops.goto(f"{fleet.url}/fleet")
    log_in(ops, fleet.url, fleet.ops)
    row = ops.locator(_site_row(ops))
    expect(row.get_by_test_id("site-gateways")).to_have_text("1 / 1")
    expect(row).not_to_have_attribute("data-status", "offline")
    # a mark that a reload would wipe: the page must change by itself
    ops.evaluate("window.notReloaded = true")

    fleet.stack.services["agent"].kill()
    try:
        expect(row).to_have_attribute("data-status", "offline", timeout=OFFLINE_WITHIN_MS)
        expect(row.get_by_test_id("site-gateways")).to_have_text("0 / 1")
        expect(row.get_by_test_id("site-status")).to_have_text("offline")
        assert ops.evaluate("window.notReloaded") is True
        ops.screenshot(path=str(tmp_path / "sites-offline.png"), full_page=True)

        ops.get_by_test_id("fleet-nav-alerts").click()
        alert = ops.locator(
            f'[data-testid="alert-row"][data-kind="gateway_offline"][data-site="{SITE}"]'
        )
        expect(alert).to_have_count(1)
        expect(alert.get_by_test_id("alert-kind")).to_have_text("Gateway offline")
        alert.get_by_test_id("ack").click()
        expect(ops.get_by_test_id("flash")).to_contain_text("acknowledged")
        expect(alert.get_by_test_id("alert-acknowledged")).to_contain_text(
            f"acknowledged by {fleet.ops.username}"
        )
        ops.screenshot(path=str(tmp_path / "inbox-acknowledged.png"), full_page=True)
    finally:
        fleet.stack.services["agent"].start()

    # the agent is back: the alert resolves by itself and leaves the open inbox
    expect(alert).to_have_count(0, timeout=OFFLINE_WITHIN_MS)
    ops.get_by_test_id("fleet-nav-sites").click()
    expect(ops.locator(_site_row(ops)).get_by_test_id("site-gateways")).to_have_text("1 / 1")
    assert page_errors == []
