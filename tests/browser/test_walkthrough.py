"""The walking skeleton's walk-through, as people do it in a real (headless) Chromium:
a citizen books on /book, a manager approves on /manage, the citizen reads the PIN on the
status page, ops sees the mail, someone types the PIN on the simulated lock's keypad, and
the manager reads the audit log. Behind the pages run the real processes: Mosquitto, the
cloud, the edge agent and the simulated lock on a pty."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Locator, Page, expect

from provisioning.local_stack import LOCK_ID, LocalStack
from tests.browser.people import TIMEZONE, log_in, seeded_login

pytestmark = pytest.mark.browser

TOKYO = ZoneInfo(TIMEZONE)
# the cloud's default PIN margins around a booking (CloudSettings.pin_margin_*_s)
MARGIN = timedelta(minutes=15)
KEY_NAMES = {"*": "star", "#": "hash"}
MINUTE = "%Y-%m-%d %H:%M"
DASH = "\N{EN DASH}"  # the pages print ranges with an en dash


def _tokyo_minutes(start: datetime, end: datetime) -> set[str]:
    """Each wall-clock minute from ``start`` to ``end`` as the pages print it in Tokyo."""
    first = start.astimezone(TOKYO).replace(second=0, microsecond=0)
    last = end.astimezone(TOKYO)
    out: set[str] = set()
    while first <= last:
        out.add(first.strftime(MINUTE))
        first += timedelta(minutes=1)
    return out


def _reload_until(page: Page, check: Callable[[], None], timeout_s: float = 30.0) -> None:
    """Reload ``page`` until ``check`` (short expect() assertions) passes, like a person
    pressing F5 on a page that does not update itself."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            page.reload()
        else:
            return


def _press(door: Page, key: str) -> None:
    door.get_by_test_id(f"key-{KEY_NAMES.get(key, key)}").click()


def _type_pin(door: Page, pin: str) -> None:
    """Type ``pin`` then ``#``, watching a star appear for each digit (each click is its
    own request: waiting for the star keeps the keys in order, as a person's eye does)."""
    display = door.get_by_test_id("display")
    for typed, digit in enumerate(pin, start=1):
        _press(door, digit)
        expect(display).to_have_text("*" * typed)
    _press(door, "#")


def _audit_rows(page: Page, kind: str) -> Locator:
    return page.locator(f'[data-testid="audit-row"][data-kind="{kind}"]')


def _wrong_pin(pin: str) -> str:
    return "".join(str((int(d) + 1) % 10) for d in pin)


def test_a_citizen_books_a_manager_approves_and_the_pin_opens_the_door(
    stack: LocalStack,
    new_page: Callable[[str], Page],
    page_errors: list[str],
    tmp_path: Path,
) -> None:
    cloud = stack.cloud_url
    name, email = "Sato Hanako", "sato@example.jp"

    # 1. the citizen books a slot starting in about 10 minutes, in Tokyo wall-clock time
    citizen = new_page("citizen")
    citizen.goto(f"{cloud}/book")
    expect(citizen.get_by_label("Start time")).to_be_visible()
    expect(citizen.get_by_text(f"Start time ({TIMEZONE})")).to_be_visible()
    start = (datetime.now(TOKYO) + timedelta(minutes=10)).replace(second=0, microsecond=0)
    end = start + timedelta(hours=1)
    citizen.get_by_test_id("book-room").select_option(str(stack.seed["room_id"]))
    citizen.get_by_test_id("book-name").fill(name)
    citizen.get_by_test_id("book-email").fill(email)
    citizen.get_by_test_id("book-date").fill(start.strftime("%Y-%m-%d"))
    citizen.get_by_test_id("book-start").fill(start.strftime("%H:%M"))
    citizen.get_by_test_id("book-hours").fill("1")
    citizen.get_by_test_id("book-submit").click()

    expect(citizen).to_have_url(re.compile(r"/r/[^/?]+\?token=.+"))
    status_url = citizen.url
    expect(citizen.get_by_test_id("status")).to_have_text("unconfirmed")
    expect(citizen.get_by_test_id("check-mail")).to_contain_text(f"we sent a link to {email}")

    # 1b. the mail (the demo's mailbox is the ops outbox) carries the link that confirms it
    ops = new_page("ops")
    log_in(ops, cloud, seeded_login(stack, "ops"))
    ops.get_by_test_id("nav-mail").click()
    ask = ops.get_by_test_id("mail-item").filter(
        has=ops.get_by_test_id("mail-subject").get_by_text(
            "Please confirm your booking", exact=False
        )
    )
    expect(ask).to_have_count(1)
    link = re.search(r"https?://\S+/confirm\?t=\S+", ask.get_by_test_id("mail-body").inner_text())
    assert link is not None, "the confirmation mail has no link"
    citizen.goto(link.group(0))
    citizen.get_by_test_id("confirm-submit").click()
    expect(citizen.get_by_test_id("confirmed")).to_contain_text("Your booking is confirmed")
    citizen.goto(status_url)
    expect(citizen.get_by_test_id("status")).to_have_text("pending")
    expect(citizen.get_by_test_id("waiting")).to_contain_text("Waiting for approval")
    # the slot reads back as typed: the form's time was taken as Tokyo time
    expect(citizen.get_by_test_id("booking")).to_contain_text(
        f"{start:{MINUTE}} {DASH} {end:{MINUTE}} ({TIMEZONE}), for {name}"
    )
    expect(citizen.get_by_test_id("pin")).to_have_count(0)

    # 2. the manager logs in and approves it
    manager_login = seeded_login(stack, "manager")
    manager = new_page("manager")
    log_in(manager, cloud, manager_login)
    manager.get_by_test_id("nav-manage").click()
    row = manager.get_by_test_id("pending-row").filter(has_text=name)
    expect(row).to_have_count(1)
    expect(row).to_contain_text(f"{start:{MINUTE}} {DASH} {end:{MINUTE}}")
    expect(row).to_contain_text(email)
    row.get_by_role("button", name="Approve").click()
    expect(manager.get_by_test_id("flash")).to_have_text(f"Approved: {name}, the PIN was sent")
    expect(manager.get_by_test_id("no-pending")).to_be_visible()

    # 3. the citizen reloads the status page: the PIN and its window, in Tokyo time
    citizen.reload()
    expect(citizen.get_by_test_id("status")).to_have_text("approved")
    expect(citizen.get_by_test_id("pin")).to_have_text(re.compile(r"^\d{6}$"))
    pin = citizen.get_by_test_id("pin").inner_text()
    expect(citizen.get_by_test_id("window-start")).to_have_text(f"{start - MARGIN:{MINUTE}}")
    expect(citizen.get_by_test_id("window-end")).to_have_text(f"{end + MARGIN:{MINUTE}}")
    expect(citizen.get_by_test_id("window")).to_contain_text(f"({TIMEZONE})")
    expect(citizen.get_by_test_id("waiting")).to_have_count(0)
    citizen.screenshot(path=str(tmp_path / "citizen-pin.png"), full_page=True)

    # 4. ops sees the PIN mail in the outbox, but not the PIN: that is the citizen's alone
    ops.get_by_test_id("nav-mail").click()
    expect(ops.get_by_role("heading", name="Mail outbox")).to_be_visible()
    pin_mail = ops.get_by_test_id("mail-item").filter(
        has=ops.get_by_test_id("mail-subject").get_by_text("Your PIN for", exact=False)
    )
    expect(pin_mail).to_have_count(1)
    expect(pin_mail.get_by_test_id("mail-to")).to_have_text(email)
    expect(pin_mail.get_by_test_id("mail-body")).not_to_contain_text(pin)
    expect(pin_mail.get_by_test_id("mail-body")).to_contain_text("PIN: [")
    expect(pin_mail.get_by_test_id("mail-body")).to_contain_text(
        f"Valid from {start - MARGIN:{MINUTE}} to {end + MARGIN:{MINUTE}} ({TIMEZONE})"
    )
    ops.screenshot(path=str(tmp_path / "mail.png"), full_page=True)

    # 5. at the door: the simulated lock's keypad
    door = new_page("door")
    door.goto(f"{stack.sim_url}/locks/{LOCK_ID}")
    keypad = door.get_by_test_id("keypad").get_by_role("button")
    expect(keypad).to_have_count(12)
    for button in keypad.all():
        expect(button).to_be_visible()
    expect(door.get_by_test_id("slots-used")).to_have_text("1", timeout=30_000)
    display, bolt = door.get_by_test_id("display"), door.get_by_test_id("lock-state")
    expect(display).to_have_text("ENTER PIN")
    expect(bolt).to_have_text("LOCKED")

    _type_pin(door, _wrong_pin(pin))
    expect(display).to_have_text("DENIED")
    expect(bolt).to_have_text("LOCKED")

    before_unlock = datetime.now(TOKYO)
    _type_pin(door, pin)
    expect(display).to_have_text("OPEN")
    expect(bolt).to_have_text("UNLOCKED")
    after_unlock = datetime.now(TOKYO)
    door.screenshot(path=str(tmp_path / "lock-open.png"), full_page=True)
    expect(bolt).to_have_text("LOCKED", timeout=15_000)  # auto-lock, nobody touched it
    expect(display).to_have_text("ENTER PIN")

    # 6. the manager reads the lock's audit log: one unlock, by the citizen; no PIN
    manager.goto(f"{cloud}/locks/{LOCK_ID}")

    def relock_arrived() -> None:
        expect(_audit_rows(manager, "relocked")).to_have_count(1, timeout=1_000)

    _reload_until(manager, relock_arrived)
    unlocked = _audit_rows(manager, "unlocked")
    expect(unlocked).to_have_count(1)
    expect(unlocked.get_by_test_id("audit-who")).to_have_text(name)
    unlock_time = unlocked.get_by_test_id("audit-time").inner_text()
    assert unlock_time in _tokyo_minutes(before_unlock, after_unlock), (
        f"the unlock shows at {unlock_time}, not Tokyo time {before_unlock:%H:%M}"
    )
    expect(_audit_rows(manager, "denied_wrong_pin")).to_have_count(1)
    expect(manager.locator("body")).not_to_contain_text(pin)
    manager.screenshot(path=str(tmp_path / "lock-audit.png"), full_page=True)

    for shot in ("citizen-pin.png", "lock-open.png", "lock-audit.png"):
        assert (tmp_path / shot).stat().st_size > 5_000, f"{shot} looks empty"
    assert page_errors == []


def test_staff_pages_send_strangers_to_the_login_and_keep_the_mail_for_ops(
    stack: LocalStack, new_page: Callable[[str], Page]
) -> None:
    cloud = stack.cloud_url
    visitor = new_page("visitor")

    # an anonymous visitor who opens /manage lands on the login page …
    visitor.goto(f"{cloud}/manage")
    expect(visitor).to_have_url(f"{cloud}/login?next=/manage")
    expect(visitor.get_by_role("heading", name="Log in")).to_be_visible()
    expect(visitor.get_by_test_id("pending")).to_have_count(0)
    # … and, logged in as the manager, comes back to /manage
    log_in(visitor, cloud, seeded_login(stack, "manager"))
    expect(visitor).to_have_url(f"{cloud}/manage")
    expect(visitor.get_by_role("heading", name="Pending bookings")).to_be_visible()

    # the manager has no mail link, and cannot read the mail outbox (ops only)
    expect(visitor.get_by_test_id("nav-mail")).to_have_count(0)
    visitor.goto(f"{cloud}/mail")
    expect(visitor).to_have_url(f"{cloud}/mail")
    expect(visitor.get_by_test_id("error")).to_have_text("this needs the ops role; you are manager")
    expect(visitor.get_by_role("heading", name="Mail outbox")).to_have_count(0)
    expect(visitor.get_by_test_id("mail-item")).to_have_count(0)
    expect(visitor.get_by_test_id("no-mail")).to_have_count(0)

    # logged out, the mail outbox asks for a login too
    visitor.get_by_test_id("logout").click()
    expect(visitor.get_by_test_id("nav-login")).to_be_visible()
    visitor.goto(f"{cloud}/mail")
    expect(visitor).to_have_url(f"{cloud}/login?next=/mail")
