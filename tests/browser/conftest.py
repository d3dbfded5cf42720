"""Headless Debian Chromium under Playwright, and the whole stack on free ports.

Never ``playwright install``: the browser is /usr/bin/chromium. Playwright's and
Chromium's own files (registry links, profile, dconf) go to a temp dir.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    expect,
    sync_playwright,
)

from provisioning.local_stack import LocalStack
from tests.browser.people import TIMEZONE
from tests.support.stack import running_stack

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",  # we run as root: no user-namespace sandbox
    "--disable-gpu",
    "--disable-dev-shm-usage",  # small /dev/shm in containers
    "--disable-background-networking",  # closed network: no refused-connection noise
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EXPECT_TIMEOUT_MS = 10_000


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Remember each phase's report on the item, so fixtures can tell a failed test."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """One headless Chromium per module. Not per session: Playwright's sync API keeps an
    event loop running on the main thread while it is open, which pytest-asyncio's tests
    collected after this module cannot share."""
    with chromium(tmp_path_factory.mktemp("chromium")) as launched:
        yield launched


@contextlib.contextmanager
def chromium(home: Path, *args: str) -> Iterator[Browser]:
    """Headless Chromium with its files under ``home`` and ``args`` besides ours."""
    with pytest.MonkeyPatch.context() as env:
        # set before the Playwright driver starts: it and Chromium inherit them
        for var, sub in (
            ("PLAYWRIGHT_BROWSERS_PATH", "pw-browsers"),
            ("XDG_CACHE_HOME", "xdg-cache"),
            ("XDG_CONFIG_HOME", "xdg-config"),
        ):
            env.setenv(var, str(home / sub))
        with sync_playwright() as playwright:
            expect.set_options(timeout=EXPECT_TIMEOUT_MS)
            launched = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, *args]
            )
            try:
                yield launched
            finally:
                launched.close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    """Broker, cloud, simulated lock and edge agent as processes, on free ports."""
    with running_stack(tmp_path / "stack") as running:
        yield running


@pytest.fixture
def page_errors() -> list[str]:
    """Script errors and console errors of every page a test opened (should stay empty)."""
    return []


@pytest.fixture
def new_page(
    browser: Browser, request: pytest.FixtureRequest, tmp_path: Path, page_errors: list[str]
) -> Generator[Callable[[str], Page], None, None]:
    """``new_page(who)``: a page in a fresh browser context (its own cookies), as a
    separate person would have. On failure every page is screenshotted to tmp_path."""
    contexts: list[BrowserContext] = []
    pages: dict[str, Page] = {}

    def make(who: str) -> Page:
        context = browser.new_context(timezone_id=TIMEZONE, locale="en-US")
        context.set_default_timeout(EXPECT_TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()

        def on_console(message: ConsoleMessage) -> None:
            # no page has a favicon; Chromium asks for one on each page and logs the 404
            if message.type == "error" and not message.location["url"].endswith("/favicon.ico"):
                page_errors.append(f"{who} ({page.url}): {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: page_errors.append(f"{who} ({page.url}): {exc}"))
        pages[who] = page
        return page

    yield make
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for who, page in pages.items():
            shot = tmp_path / f"failed-{who}.png"
            try:
                page.screenshot(path=str(shot), full_page=True)
            except Exception as exc:  # a broken page must not hide the failure
                print(f"no screenshot of {who}'s page: {exc}")
            else:
                print(f"{who}'s page at failure ({page.url}): {shot}")
    for context in contexts:
        context.close()
