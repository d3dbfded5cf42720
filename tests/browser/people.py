"""What the people in the walk-through do on the pages, shared by the browser tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from playwright.sync_api import Page, expect

from provisioning.local_stack import LocalStack

# the facilities' time zone (CloudSettings.timezone); the people's browsers are there too
TIMEZONE = "Asia/Tokyo"


@dataclass(frozen=True)
class Login:
    username: str
    password: str


def seeded_login(stack: LocalStack, role: str) -> Login:
    """The generated login of the seeded user with ``role``."""
    users: Any = stack.seed["users"]
    for username, info in users.items():
        if info["role"] == role:
            return Login(username, str(info["password"]))
    raise AssertionError(f"the seed has no {role} user: {sorted(users)}")


def created_login(stack: LocalStack, username: str, role: str) -> Login:
    """A new user of the running stack, made as ops would: ``denen-cloud create-user``
    against the stack's cloud database."""
    out = stack.cloud_admin("create-user", username, "--role", role)
    return Login(username, out.rsplit(": ", 1)[1].strip())


def log_in(page: Page, base_url: str, login: Login) -> None:
    """Log in on the login page (following whatever ``next`` it carries)."""
    if "/login" not in page.url:
        page.goto(f"{base_url}/login")
    page.get_by_test_id("login-username").fill(login.username)
    page.get_by_test_id("login-password").fill(login.password)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("user")).to_contain_text(login.username)
