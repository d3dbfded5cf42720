"""Attack: someone guesses PINs at a gym's keypad, pausing through each lockout. 20,000
guesses raised no alert when the count went "in a row", and an alert on lockouts alone
tells nothing of the rate. Now each wrong PIN reports the wrong entries of its hour, and
from 10 in an hour the fleet opens a ``keypad_guessing`` alert naming the lock and its
site, which clears by itself after a quiet hour.

The whole site on one ManualClock (:mod:`tests.support.gym_site`): the cloud, the real
agent, the lock simulator on a pty, Mosquitto with the production config and certificates.
"""

from __future__ import annotations

import asyncio

from cloud.fleet.rules import KEYPAD_GUESSING_PER_HOUR
from tests.security.conftest import alerts, alerts_until
from tests.support.gym_site import HOUR, LOCK_ID, SITE, GymSite


async def guess(site: GymSite, n: int, first: int) -> None:
    for i in range(n):
        site.type(f"{first + i:06d}#")
    await site.settle()


async def test_ten_wrong_pins_in_an_hour_open_a_guessing_alert_that_clears_when_quiet(
    gym: GymSite,
) -> None:
    site = gym
    await guess(site, 5, 100_000)  # five, and the keypad locks for ten minutes
    assert site.door.view().locked_out
    await site.advance(10 * 60)
    await guess(site, 4, 200_000)
    await site.audit_until(  # the fleet stores its part of a batch first (cloud/app.py)
        "nine wrong PINs",
        lambda rows: [e["kind"] for e in rows].count("denied_wrong_pin") == 9,
    )
    assert [a["kind"] for a in await alerts(site)] == ["lockout"]  # nine: typos, maybe

    await guess(site, 1, 300_000)
    alert = await alerts_until(site, "keypad_guessing")
    assert (alert["site"], alert["subject"], alert["severity"]) == (SITE, LOCK_ID, "warning")
    assert f"{KEYPAD_GUESSING_PER_HOUR} wrong PINs in an hour" in alert["message"]

    await site.advance(HOUR)
    await asyncio.to_thread(site.app.state.fleet.jobs.run_due)
    assert "keypad_guessing" not in [a["kind"] for a in await alerts(site)]
    (resolved,) = [a for a in await alerts(site, "resolved") if a["kind"] == "keypad_guessing"]
    assert resolved["resolution"] == "no wrong PINs at that rate for an hour"
