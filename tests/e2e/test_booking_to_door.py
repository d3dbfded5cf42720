"""One booking opens one door, end to end, on real parts: Mosquitto, the cloud, the edge
agent and the simulated keypad lock on a pty, each in its own process."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from provisioning.local_stack import LOCK_ID, LocalStack
from tests.support.confirm_mail import CONFIRM_LINK

T = TypeVar("T")
HOUR = 3600


def eventually(probe: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    """Poll ``probe`` until it returns something truthy; fail saying what never happened."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout}s (last: {last!r})")


class Walkthrough:
    """What the citizen, the manager and the person at the door do, over HTTP."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        users: Any = stack.seed["users"]
        self.manager = ("manager", str(users["manager"]["password"]))
        self.ops = ("ops", str(users["ops"]["api_token"]))  # ops script the API with a token
        # the English lock page ("Unlocked with PIN"); without the header it is Japanese
        self.cloud = httpx.Client(
            base_url=stack.cloud_url, timeout=10, headers={"Accept-Language": "en"}
        )
        self.sim = httpx.Client(base_url=stack.sim_url, timeout=10)

    def close(self) -> None:
        self.cloud.close()
        self.sim.close()

    def confirm_from_the_demo_mailbox(self, reservation_id: str) -> None:
        """Follow the booking's confirmation link, read where the demo keeps its mail (no
        SMTP: the outbox is the mailbox, and it shows the link)."""
        mails = self.cloud.get("/api/mail", auth=self.ops)
        assert mails.status_code == 200, mails.text
        links = [m for mail in mails.json() if (m := CONFIRM_LINK.search(mail["body"])) is not None]
        (link,) = [m for m in links if m["id"] == reservation_id]
        page = self.cloud.get(link["path"], params={"t": link["t"]})
        assert 'data-testid="confirm-submit"' in page.text, page.text
        confirmed = self.cloud.post(link["path"], data={"t": link["t"]})
        assert confirmed.status_code == 200, confirmed.text

    def book_and_approve(self, name: str, start: int, end: int) -> str:
        created = self.cloud.post(
            "/api/reservations",
            json={
                "lock_id": LOCK_ID,
                "name": name,
                "email": f"{name}@example.jp",
                "start": start,
                "end": end,
            },
        )
        assert created.status_code in (200, 201), created.text
        body = created.json()
        self.confirm_from_the_demo_mailbox(body["id"])
        approved = self.cloud.post(f"/api/reservations/{body['id']}/approve", auth=self.manager)
        assert approved.status_code == 200, approved.text
        status = self.cloud.get(
            f"/api/reservations/{body['id']}", params={"token": body["access_token"]}
        )
        assert status.status_code == 200, status.text
        pin = status.json()["pin"]
        assert pin
        assert pin.isdigit()
        return str(pin)

    def lock_view(self) -> dict[str, Any]:
        view: dict[str, Any] = self.sim.get(f"/api/locks/{LOCK_ID}").json()
        return view

    def type(self, keys: str) -> dict[str, Any]:
        res = self.sim.post(f"/api/locks/{LOCK_ID}/keys", json={"keys": keys})
        assert res.status_code == 200, res.text
        view: dict[str, Any] = res.json()
        return view

    def audit(self) -> list[dict[str, Any]]:
        res = self.cloud.get(f"/api/locks/{LOCK_ID}/audit", auth=self.manager)
        assert res.status_code == 200, res.text
        rows: list[dict[str, Any]] = res.json()
        return rows

    def audit_kinds(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.audit() if e["kind"] == kind]

    def wait_for_slots(self, n: int) -> None:
        eventually(lambda: self.lock_view()["slots_used"] == n, f"the lock holding {n} PIN(s)")


def _wrong_pin(*taken: str) -> str:
    for candidate in ("480915", "730264", "615028"):
        if candidate not in taken:
            return candidate
    raise AssertionError("unreachable")


def test_a_booking_opens_the_door_once_and_only_inside_its_window(stack: LocalStack) -> None:
    w = Walkthrough(stack)
    try:
        now = int(time.time())
        # starts in 10 minutes: with the 15-minute margin the PIN works already
        pin = w.book_and_approve("sato", now + 600, now + 600 + HOUR)
        tomorrow_pin = w.book_and_approve("tanaka", now + 24 * HOUR, now + 25 * HOUR)
        w.wait_for_slots(2)

        view = w.type(_wrong_pin(pin, tomorrow_pin) + "#")
        assert view["locked"] is True
        assert view["display"] == "DENIED"
        view = w.type(tomorrow_pin + "#")
        assert view["locked"] is True
        assert view["display"] == "DENIED"

        view = w.type(pin + "#")
        assert view["locked"] is False
        assert view["display"] == "OPEN"
        eventually(lambda: w.lock_view()["locked"], "the lock relocking by itself", timeout=15)

        unlocks = eventually(lambda: w.audit_kinds("unlocked"), "the unlock in the audit log")
        eventually(lambda: w.audit_kinds("relocked"), "the relock in the audit log")
        assert len(w.audit_kinds("denied_wrong_pin")) == 1
        outside = w.audit_kinds("denied_outside_window")
        assert len(outside) == 1
        assert outside[0]["who"] == "tanaka"
        assert len(unlocks) == 1
        assert unlocks[0]["who"] == "sato"

        # the dashboard page shows the same log, the unlock once
        login = w.cloud.post(
            "/login",
            data={"username": w.manager[0], "password": w.manager[1]},
            follow_redirects=True,
        )
        assert login.status_code == 200
        page = w.cloud.get(f"/locks/{LOCK_ID}")
        assert page.status_code == 200
        assert page.text.count('data-kind="unlocked"') == 1
        assert "Unlocked with PIN" in page.text
        assert "sato" in page.text
        assert pin not in page.text

        # no PIN in any log of any part (cloud, agent, lock, broker)
        logs = [*stack.workdir.glob("logs/*.log"), *stack.workdir.glob("broker/*.log")]
        assert logs
        for log in logs:
            text = log.read_text(errors="replace")
            assert pin not in text, f"the PIN appears in {log.name}"
            assert tomorrow_pin not in text, f"a PIN appears in {log.name}"
    finally:
        w.close()


def _outbox_holds_unlock(stack: LocalStack) -> bool:
    path = stack.agent_state / "outbox.sqlite3"
    if not path.exists():
        return False
    with sqlite3.connect(path) as db:
        rows = db.execute("select payload from outbox").fetchall()
    return any(b'"unlocked"' in bytes(row[0]) for row in rows)


def test_an_unlock_is_recorded_once_when_the_agent_is_killed_before_publishing(
    stack: LocalStack,
) -> None:
    w = Walkthrough(stack)
    try:
        now = int(time.time())
        pin = w.book_and_approve("suzuki", now + 300, now + HOUR)
        w.wait_for_slots(1)
        assert stack.broker is not None

        # the internet is down: the lock reports the unlock, the agent cannot publish it
        stack.broker.stop()
        assert w.type(pin + "#")["display"] == "OPEN"
        eventually(lambda: _outbox_holds_unlock(stack), "the unlock reaching the agent's outbox")
        eventually(lambda: w.lock_view()["events_pending"] == 0, "the lock handing its events over")

        stack.services["agent"].kill()  # power cut on the Pi
        stack.broker.start()
        stack.services["agent"].start()

        unlocks = eventually(
            lambda: w.audit_kinds("unlocked"), "the unlock in the audit log", timeout=60
        )
        assert unlocks[0]["who"] == "suzuki"
        # a second restart must not deliver it again
        stack.services["agent"].kill()
        stack.services["agent"].start()
        eventually(lambda: not _outbox_holds_unlock(stack), "the outbox emptying")
        time.sleep(2)
        assert len(w.audit_kinds("unlocked")) == 1
    finally:
        w.close()
