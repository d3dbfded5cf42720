"""Attack: someone on the lock's serial line sends frames the lock must refuse: one
sealed with the lock's own key but an old counter (what a frame captured earlier and
replayed looks like to the lock) and one with a forged MAC. The lock refused them
silently: nobody learnt that someone was at its wires. Now it counts them and reports a
``frames_refused`` event, which reaches the cloud through the agent and a broker with the
production TLS config, where a critical ``tamper`` alert names the lock and its site and
clears by itself after a quiet hour.

The whole site on one ManualClock (:mod:`tests.support.gym_site`): the cloud, the real
agent, the lock simulator on a pty, Mosquitto with the production config and certificates.
"""

from __future__ import annotations

import asyncio
import os

from protocol.lock_auth import KEY_ID_LINK, Direction, LinkAuth
from protocol.lock_wire import FrameType, LockFrame
from tests.security.conftest import alerts, alerts_until
from tests.support.gym_site import HOUR, LOCK_ID, SITE, GymSite


def on_the_line(site: GymSite, *frames: LockFrame) -> None:
    """Write ``frames`` onto the lock's serial line, beside the agent."""
    path = site.lock_spec.removeprefix("pty:")
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        for frame in frames:
            os.write(fd, bytes(frame))
    finally:
        os.close(fd)


async def test_refused_frames_reach_the_fleet_as_a_tamper_alert(gym: GymSite) -> None:
    site = gym
    record = site.coordinator.keys.load(LOCK_ID)
    assert record is not None
    # counter 1 under the real key: the agent used it long ago, as a captured frame did
    replayed = LinkAuth(record.link_key, Direction.TO_LOCK).seal(
        LockFrame(FrameType.UNLOCK, 0x7001)
    )
    forged = LockFrame(FrameType.UNLOCK, 0x7002, b"", KEY_ID_LINK, 10**6, bytes(8))
    on_the_line(site, replayed, forged)

    async with asyncio.timeout(10):
        while site.door.view().auth_failures < 2:  # noqa: ASYNC110 - the lock reads the pty
            await asyncio.sleep(0.01)
    assert site.door.view().locked, "neither frame opened the door"
    await site.settle()
    alert = await alerts_until(site, "tamper")
    assert (alert["site"], alert["subject"], alert["severity"]) == (SITE, LOCK_ID, "critical")
    assert "refused" in alert["message"]
    audit = await site.audit_until(
        "the refusal", lambda rows: any(e["kind"] == "frames_refused" for e in rows)
    )
    assert [e["kind"] for e in audit].count("unlocked") == 0

    # a minute on, the second refusal is reported too; then an hour with none clears it
    await site.advance(60)
    await site.audit_until(  # the fleet stores its part of a batch first (cloud/app.py)
        "the second refusal", lambda rows: [e["kind"] for e in rows].count("frames_refused") == 2
    )
    await site.advance(HOUR)
    await asyncio.to_thread(site.app.state.fleet.jobs.run_due)
    assert [a for a in await alerts(site) if a["kind"] == "tamper"] == []
    (resolved,) = [a for a in await alerts(site, "resolved") if a["kind"] == "tamper"]
    assert resolved["resolution"] == "no refused frames for an hour"
