"""The clinic agent's own staff page in a real (headless) Chromium, over https, behind a
staff name and PIN: reception opens the page, is sent to the login form, types a wrong PIN
and is told so, types the PIN the demo set and printed for `reception`, calls the next
patient (checked in at the kiosk's card reader) and logs out. Behind it the demo's
processes run: the TLS broker, the cloud, the clinic's agent and its display and
card-reader simulators. What only a browser shows: the Secure, SameSite=Strict cookie,
and the form posts passing the Origin check."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from playwright.sync_api import Browser, Page, expect

from protocol.certs import load_cert
from provisioning.local_stack import CLINIC_STAFF, KIOSK_ID, LocalStack
from tests.browser.conftest import chromium
from tests.e2e.test_demo_clinic import eventually
from tests.support.stack import running_stack

pytestmark = pytest.mark.browser


@pytest.fixture
def clinic_stack(tmp_path: Path) -> Iterator[LocalStack]:
    with running_stack(tmp_path / "stack", clinic=True) as running:
        yield running


@pytest.fixture
def browser(clinic_stack: LocalStack, tmp_path: Path) -> Iterator[Browser]:
    """Chromium that accepts the agent's pages certificate, as the reception's browser
    does once it trusts the city's CA. Debian's Chromium has no certutil here to add the
    demo's CA to its NSS store, so the pages' key is pinned instead
    (``--ignore-certificate-errors-spki-list``); any other certificate still fails. That
    the certificate chains to the CA and names the address is checked with httpx above."""
    cert = load_cert((clinic_stack.clinic_etc / "pages.crt").read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    pin = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    with chromium(tmp_path / "chromium", f"--ignore-certificate-errors-spki-list={pin}") as b:
        yield b


def test_reception_logs_in_with_the_staff_pin_calls_the_next_patient_and_logs_out(
    clinic_stack: LocalStack, new_page: Callable[[str], Page], page_errors: list[str]
) -> None:
    stack = clinic_stack
    with (
        httpx.Client(base_url=stack.clinic_url, verify=stack.clinic_trust(), timeout=10) as agent,
        httpx.Client(base_url=stack.reader_sim_url, timeout=10) as reader,
    ):
        eventually("the agent has the day", lambda: agent.get("/api/status").json()["has_day"])
        patients: Any = stack.clinic_seed["patients"]
        tapped = reader.post(f"/api/readers/{KIOSK_ID}/tap", json={"card": patients[2]["card"]})
        assert tapped.status_code == 200, tapped.text
        eventually(
            "the kiosk shows a number",
            lambda: agent.get(f"/api/kiosks/{KIOSK_ID}").json()["kind"] == "ticket",
        )

    desk = new_page("reception")
    desk.goto(f"{stack.clinic_url}/staff?department=internal&room=1")
    expect(desk.get_by_test_id("staff-login")).to_contain_text("スタッフ ログイン")
    desk.get_by_test_id("name").fill(CLINIC_STAFF)
    desk.get_by_test_id("pin").fill("000000" if stack.clinic_staff_pin != "000000" else "111111")
    desk.get_by_test_id("log-in").click()
    expect(desk.get_by_test_id("wrong-pin")).to_contain_text("Wrong name or PIN. 4 more wrong")
    expect(desk.get_by_test_id("name")).to_have_value(CLINIC_STAFF)  # kept: only the PIN again

    desk.get_by_test_id("pin").fill(stack.clinic_staff_pin)
    desk.get_by_test_id("log-in").click()
    expect(desk.get_by_test_id("call-next")).to_contain_text("Call next to room 1")
    expect(desk.get_by_test_id("staff-name")).to_have_text(CLINIC_STAFF)
    cookie = next(c for c in desk.context.cookies() if c["name"] == "denen_clinic_staff")
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["secure"]) == (True, "Strict", True)

    desk.get_by_test_id("call-next").click()  # a form post: its Origin is the agent's own
    expect(desk.get_by_test_id("flash")).to_contain_text("A-001")

    desk.get_by_test_id("log-out").click()
    expect(desk.get_by_test_id("logged-out")).to_contain_text("You are logged out.")
    desk.goto(f"{stack.clinic_url}/staff")
    expect(desk.get_by_test_id("staff-login")).to_be_visible()
    # the one error Chromium logged: the wrong PIN's page comes with its 401
    assert [e for e in page_errors if "status of 401" not in e] == []
