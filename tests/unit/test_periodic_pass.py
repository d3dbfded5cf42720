"""The web process's periodic pass: a failing pass is logged and the next one runs."""

from __future__ import annotations

import asyncio
import logging

import pytest

from cloud.periodic import PeriodicPass


async def test_a_failing_pass_is_logged_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []
    done = asyncio.Event()

    def job() -> int:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("the database is away")
        if len(calls) == 3:
            done.set()
        return len(calls)

    periodic = PeriodicPass("test-pass", job, 0.01)
    await periodic.start()
    await asyncio.wait_for(done.wait(), 5)
    await periodic.stop()
    after_stop = len(calls)
    await asyncio.sleep(0.05)
    assert len(calls) == after_stop  # stopped: no pass runs any more
    failed = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failed] == ["test-pass pass failed; retrying in 0 s"]
    assert failed[0].exc_info is not None  # with its traceback
