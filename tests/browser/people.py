"""What the people in the walk-through do on the pages, shared by the browser tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from playwright.sync_api import Page, expect

from protocol.clock import SystemClock
from provisioning.local_stack import LocalStack
from tests.support.cloud import Authenticator

# the facilities' time zone (CloudSettings.timezone); the people's browsers are there too
TIMEZONE = "Asia/Tokyo"


@dataclass(frozen=True)
class Login:
    """A person's login: the password, their API token (if they were given one) and the
    authenticator app on their phone (set up at the first login of a role that needs it)."""

    username: str
    password: str
    api_token: str = ""
    phone: Authenticator = field(default_factory=Authenticator)


def seeded_login(stack: LocalStack, role: str) -> Login:
    """The generated login of the seeded user with ``role``."""
    users: Any = stack.seed["users"]
    for username, info in users.items():
        if info["role"] == role:
            return Login(username, str(info["password"]), str(info["api_token"]))
    raise AssertionError(f"the seed has no {role} user: {sorted(users)}")


def created_login(stack: LocalStack, username: str, role: str) -> Login:
    """A new user of the running stack, made as ops would: ``denen-cloud create-user``
    against the stack's cloud database."""
    out = stack.cloud_admin("create-user", username, "--role", role)
    return Login(username, out.rsplit(": ", 1)[1].strip())


def enrol(page: Page, login: Login) -> list[str]:
    """On the enrolment page of a first login: type the key it shows into the phone's
    app, then the app's first code; the recovery codes it shows once are written down
    (returned) and the person continues."""
    login.phone.secret = page.get_by_test_id("totp-secret").inner_text()
    page.get_by_test_id("enrol-code").fill(login.phone.code(SystemClock()))
    page.get_by_test_id("enrol-submit").click()
    codes = page.get_by_test_id("recovery-code").all_inner_texts()
    login.phone.recovery_codes = list(codes)
    page.get_by_test_id("recovery-continue").click()
    return codes


def log_in(page: Page, base_url: str, login: Login) -> None:
    """Log in on the login page (following whatever ``next`` it carries): the password,
    then for a role that needs it the phone's code, enrolling it at the first login."""
    if "/login" not in page.url:
        page.goto(f"{base_url}/login")
    page.get_by_test_id("login-username").fill(login.username)
    page.get_by_test_id("login-password").fill(login.password)
    page.get_by_test_id("login-submit").click()
    second = page.get_by_test_id("user").or_(page.get_by_test_id("totp-secret"))
    second = second.or_(page.get_by_test_id("login-code"))
    expect(second).to_be_visible()
    if page.get_by_test_id("totp-secret").is_visible():
        enrol(page, login)
    elif page.get_by_test_id("login-code").is_visible():
        page.get_by_test_id("login-code").fill(login.phone.code(SystemClock()))
        page.get_by_test_id("login-code-submit").click()
    expect(page.get_by_test_id("user")).to_contain_text(login.username)
