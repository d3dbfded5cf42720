"""The login throttle: per (account, address) with backoff, a per-account ceiling that
tells ops, and a bounded memory (cloud/core/throttle.py), on the injected clock."""

from __future__ import annotations

import logging

import pytest

from cloud.core import throttle as throttle_module
from cloud.core.throttle import (
    ACCOUNT_CEILING,
    BACKOFF_CAP_S,
    BACKOFF_FIRST_S,
    FREE_FAILURES,
    LoginThrottle,
)
from cloud.errors import TooManyAttemptsError
from protocol.clock import ManualClock


def _fail(throttle: LoginThrottle, account: str, address: str, times: int = 1) -> None:
    for _ in range(times):
        throttle.check(account, address)
        throttle.failed(account, address)


def test_five_free_then_a_minute_doubling_to_the_cap() -> None:
    clock = ManualClock(1_000_000)
    throttle = LoginThrottle(clock)
    _fail(throttle, "ops", "203.0.113.9", FREE_FAILURES)
    with pytest.raises(TooManyAttemptsError, match="try again in 1 minute"):
        throttle.check("ops", "203.0.113.9")
    waits = []
    for _ in range(8):
        start = clock.now()
        while True:
            try:
                throttle.check("ops", "203.0.113.9")
                break
            except TooManyAttemptsError:
                clock.advance(1)
        waits.append(clock.now() - start)
        throttle.failed("ops", "203.0.113.9")
    assert waits[:3] == [BACKOFF_FIRST_S, 2 * BACKOFF_FIRST_S, 4 * BACKOFF_FIRST_S]
    assert max(waits) == BACKOFF_CAP_S


def test_another_address_and_a_success_are_not_slowed() -> None:
    throttle = LoginThrottle(ManualClock(1_000_000))
    _fail(throttle, "ops", "203.0.113.9", FREE_FAILURES)
    throttle.check("ops", "198.51.100.7")  # the owner, elsewhere
    throttle.check("manager", "203.0.113.9")  # another account from the same address
    throttle.succeeded("ops", "203.0.113.9")
    throttle.check("ops", "203.0.113.9")


def test_the_ceiling_closes_the_account_everywhere_and_tells_ops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock(1_000_000)
    throttle = LoginThrottle(clock)
    with caplog.at_level(logging.WARNING, logger="cloud.core.throttle"):
        for n in range(ACCOUNT_CEILING):
            _fail(throttle, "ops", f"10.0.{n // 250}.{n % 250}", 1)
    assert "login ceiling reached" in caplog.text
    assert "'ops'" in caplog.text
    with pytest.raises(TooManyAttemptsError, match="try again in 60 minute"):
        throttle.check("ops", "198.51.100.7")
    throttle.check("manager", "198.51.100.7")
    clock.advance(3600)
    throttle.check("ops", "198.51.100.7")


def test_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throttle_module, "MAX_TRACKED", 10)
    throttle = LoginThrottle(ManualClock(1_000_000))
    _fail(throttle, "ops", "203.0.113.9", FREE_FAILURES)
    for n in range(10):
        _fail(throttle, f"user{n}", "192.0.2.1")
    assert len(throttle._pairs) == 10
    assert len(throttle._accounts) == 10
    throttle.check("ops", "203.0.113.9")  # the oldest went first
