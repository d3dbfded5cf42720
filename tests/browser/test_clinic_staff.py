"""The clinic's staff page in a real (headless) Chromium: a member of staff logs in, checks
a walk-in in at the desk, presses Call next, sees the number as the room's ticket, starts
and finishes the visit; a patient checking in from the app meanwhile appears in the queue
without a reload. A new member of staff enrols an authenticator at the first login (QR
code, recovery codes) and logs in with its code the next time. The cloud runs on uvicorn on
a free port, in this process, with the MQTT bridge off: the staff page needs nothing else
(no broker, agent or simulator)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from playwright.sync_api import Page, expect

from cloud.app import create_app
from cloud.bootstrap import ClinicSeed, seed_clinic
from cloud.core.models import Role
from cloud.services import Services
from cloud.settings import CloudSettings
from protocol.clock import SystemClock
from tests.browser.people import Login, enrol, log_in
from tests.support.clinic import card_qr

pytestmark = pytest.mark.browser

START_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class ClinicCloud:
    url: str
    seed: ClinicSeed
    settings: CloudSettings
    services: Services  # to add staff as ops would (create-user, department membership)


@pytest.fixture(scope="module")
def clinic_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClinicCloud]:
    """The cloud alone (SQLite, MQTT off) on uvicorn in a thread, with the seeded clinic.
    A thread, not the event loop: Playwright's sync API holds the main thread."""
    home = tmp_path_factory.mktemp("clinic-cloud")
    settings = CloudSettings(
        database_url=f"sqlite:///{home}/cloud.db",
        secret_key="s" * 40,
        metrics_token="m" * 32,
        mqtt_enabled=False,
    )
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="clinic-cloud", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:  # set once the lifespan (migrations) ran and it listens
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with app.state.sessions.begin() as session:
            seed = seed_clinic(session)
        yield ClinicCloud(f"http://127.0.0.1:{port}", seed, settings, app.state.services)
    finally:
        server.should_exit = True
        thread.join(timeout=START_TIMEOUT_S)


def test_staff_check_in_a_walk_in_call_next_and_finish(
    clinic_cloud: ClinicCloud,
    new_page: Callable[[str], Page],
    page_errors: list[str],
    tmp_path: Path,
) -> None:
    cloud, seed = clinic_cloud.url, clinic_cloud.seed
    staff = new_page("staff")
    staff.goto(f"{cloud}/clinic/{seed.site}/staff?department=internal&room=1")
    log_in(staff, cloud, Login(seed.staff.username, seed.staff.password, seed.staff.api_token))
    expect(staff.get_by_test_id("my-room")).to_contain_text("Internal medicine, room 1")
    expect(staff.get_by_test_id("current-none")).to_be_visible()

    # a walk-in without a card, at the desk
    staff.get_by_test_id("checkin-submit").click()
    expect(staff.get_by_test_id("flash")).to_contain_text("Checked in: A-001")
    queue = staff.get_by_test_id("queue-row")
    expect(queue).to_have_count(1)
    expect(queue.first.get_by_test_id("queue-number")).to_have_text("A-001")

    # a patient checks in from the app: the queue shows it without a reload
    answer = httpx.post(
        f"{cloud}/api/clinic/checkin",
        json={
            "qr": card_qr(clinic_cloud.settings, seed.site, seed.patients[2].card),
            "site": seed.site,
        },
    )
    assert answer.status_code == 200, answer.text
    expect(queue).to_have_count(2)
    expect(queue.nth(1).get_by_test_id("queue-number")).to_have_text("A-002")

    staff.get_by_test_id("call-next").click()
    expect(staff.get_by_test_id("flash")).to_have_text("Called A-001 to room 1")
    expect(staff.get_by_test_id("current-number")).to_have_text("A-001")
    expect(queue).to_have_count(1)
    # the patient is not in the room yet: Done waits for Start
    expect(staff.get_by_test_id("done")).to_be_disabled()
    staff.get_by_test_id("start").click()
    expect(staff.get_by_test_id("current-state")).to_have_text("in the room")
    staff.screenshot(path=str(tmp_path / "staff-page.png"), full_page=True)
    staff.get_by_test_id("done").click()
    expect(staff.get_by_test_id("flash")).to_have_text("A-001 is done")
    expect(staff.get_by_test_id("current-none")).to_be_visible()
    expect(staff.get_by_test_id("closed")).to_contain_text("1 done")
    assert page_errors == []


def test_new_staff_enrol_an_authenticator_then_log_in_with_its_code(
    clinic_cloud: ClinicCloud,
    new_page: Callable[[str], Page],
    page_errors: list[str],
    tmp_path: Path,
) -> None:
    cloud, seed = clinic_cloud.url, clinic_cloud.seed
    _, password = clinic_cloud.services.users.create("nurse-sato", Role.CLINIC)
    clinic_cloud.services.fleet.sites.add_member("health", "nurse-sato", "ops")
    nurse = Login("nurse-sato", password)
    page = new_page("nurse")
    staff_page = f"{cloud}/clinic/{seed.site}/staff?department=internal&room=1"
    page.goto(staff_page)
    page.get_by_test_id("login-username").fill(nurse.username)
    page.get_by_test_id("login-password").fill(nurse.password)
    page.get_by_test_id("login-submit").click()

    # the first login asks for an authenticator: a QR code drawn by the server, the key
    expect(page.get_by_test_id("totp-qr").locator("svg")).to_be_visible()
    page.screenshot(path=str(tmp_path / "enrol.png"), full_page=True)
    codes = enrol(page, nurse)
    assert len(codes) == 10
    assert len(set(codes)) == 10
    expect(page.get_by_test_id("my-room")).to_contain_text("Internal medicine, room 1")

    page.get_by_test_id("logout").click()
    expect(page.get_by_test_id("nav-login")).to_be_visible()
    # a code works once: the next login waits for the app's next code (at most 30 s)
    time.sleep(30.05 - time.time() % 30)
    page.goto(staff_page)
    page.get_by_test_id("login-username").fill(nurse.username)
    page.get_by_test_id("login-password").fill(nurse.password)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("login-code")).to_be_visible()
    expect(page.get_by_test_id("user")).to_have_count(0)  # not logged in yet
    page.get_by_test_id("login-code").fill(nurse.phone.code(SystemClock()))
    page.get_by_test_id("login-code-submit").click()
    expect(page.get_by_test_id("my-room")).to_contain_text("Internal medicine, room 1")
    expect(page.get_by_test_id("user")).to_contain_text("nurse-sato")
    assert page_errors == []
