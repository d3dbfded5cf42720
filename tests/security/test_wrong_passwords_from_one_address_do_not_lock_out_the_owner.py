"""A stranger guessing a staff password over the network: their own address slows down,
the owner logging in from elsewhere is never locked out, and a guessing attack spread
over many addresses closes the account and tells ops (cloud/core/throttle.py)."""

from __future__ import annotations

import logging

import pytest

from protocol.clock import ManualClock
from tests.security.conftest import Cloud
from tests.support.cloud import basic, log_in

ATTACKER = "203.0.113.66"
OWNER = "198.51.100.7"


async def test_a_stranger_slows_only_their_own_address(cloud: Cloud) -> None:
    manager = cloud.seed.manager
    async with cloud.browser(ATTACKER) as attacker, cloud.browser(OWNER) as owner:
        answers = []
        for n in range(20):
            guess = {"username": manager.username, "password": f"guess number {n}"}
            answers.append((await attacker.post("/login", data=guess)).status_code)
        assert answers[:5] == [401] * 5
        assert set(answers[5:]) == {429}
        refused = await attacker.post("/login", data={"username": "manager", "password": "x"})
        assert "try again in 1 minute(s)" in refused.text
        assert "1分後にもう一度お試しください" in refused.text
        # from the attacker's address even the right password waits...
        right = {"username": manager.username, "password": manager.password}
        assert (await attacker.post("/login", data=right)).status_code == 429
        # ...but the owner, at their own desk, logs in and works
        await log_in(owner, cloud.app.state.clock, manager.username, manager.password)
        assert (await owner.get("/manage")).status_code == 200

    # the API counts the same way: 429 for the guesser, the owner's password still opens
    guess = basic(manager.username, "still guessing")
    async with cloud.browser(ATTACKER) as attacker, cloud.browser(OWNER) as owner:
        r = await attacker.get("/api/reservations", headers=guess)
        assert r.status_code == 429
        assert "try again in" in r.json()["detail"]
        right = basic(manager.username, manager.password)
        assert (await owner.get("/api/reservations", headers=right)).status_code == 200


async def test_a_guessing_attack_from_many_addresses_closes_the_account_and_tells_ops(
    cloud: Cloud, caplog: pytest.LogCaptureFixture
) -> None:
    manager = cloud.seed.manager
    clock: ManualClock = cloud.app.state.clock
    with caplog.at_level(logging.WARNING, logger="cloud.core.throttle"):
        for bot in range(25):  # 25 addresses, each within its own five free guesses
            async with cloud.browser(f"192.0.2.{bot + 1}") as attacker:
                for n in range(4):
                    guess = basic(manager.username, f"bot {bot} guess {n}")
                    r = await attacker.get("/api/reservations", headers=guess)
                    assert r.status_code == 401
    assert "login ceiling reached" in caplog.text
    assert "'manager'" in caplog.text
    async with cloud.browser(OWNER) as owner:
        right = {"username": manager.username, "password": manager.password}
        refused = await owner.post("/login", data=right)
        assert refused.status_code == 429
        assert "try again in 60 minute(s)" in refused.text
        clock.advance(3600)
        await log_in(owner, clock, manager.username, manager.password)
