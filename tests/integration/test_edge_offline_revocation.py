"""Cancelled offline PINs against real parts: Mosquitto, the agent, and the simulated
keypad lock on a pty (the harness of :mod:`tests.integration.test_edge_sync`). The agent
sends the snapshot's revocation list with REVOKE_OFFLINE, at once when it grows, and the
lock refuses the cancelled code; a list the lock cannot hold is reported, not hidden."""

from __future__ import annotations

from pathlib import Path

from protocol import messages, topics
from protocol.messages import (
    AccessSnapshotData,
    LockAccess,
    MessageType,
    RevokedOffline,
    SyncReason,
)
from protocol.offline_pin import OfflinePin, OfflinePinId, issue_offline_pin
from tests.integration.test_edge_agent import eventually
from tests.integration.test_edge_sync import GW, HOUR, LOCK, SECRETS, SITE, Gym, at, gym
from tests.support.mosquitto import Mosquitto


def offline_pin(start_h: float, end_h: float, nonce: int = 0) -> OfflinePin:
    return issue_offline_pin(SECRETS.offline_secret, at(start_h), at(end_h), nonce=nonce)


async def publish_revoked(site: Gym, *revoked: OfflinePinId) -> int:
    """The cloud publishes a snapshot whose only change is the revocation list."""
    site.version += 1
    lock = LockAccess(lock_id=LOCK, revoked_offline=[RevokedOffline.of(r) for r in revoked])
    data = AccessSnapshotData(version=site.version, locks=[lock])
    payload = messages.make(MessageType.ACCESS_SNAPSHOT, data, ts=site.clock.now())
    await site.cloud.publish(topics.access(SITE, GW), payload, qos=1, retain=True)
    version = site.version
    await eventually(
        f"the agent deciding on snapshot v{version}",
        lambda: (d := site.coordinator.last_decision) is not None and d.version == version,
    )
    await site.settle()
    return version


async def test_a_cancelled_offline_pin_is_refused_after_the_agent_revokes_it(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with gym(tmp_path, mosquitto, start=at(8)) as site:
        cancelled = offline_pin(19, 20)
        kept = offline_pin(19, 20, nonce=1)
        await site.advance_to(at(18))
        version = await publish_revoked(site, cancelled.id)

        # not worth waiting for the 20:00 sync: the code would open the door at 19:00
        decision = site.coordinator.last_decision
        assert decision is not None
        assert decision.reason is not None
        applied = await site.report(version, SyncReason.CHANGE)
        assert applied.revocations == 1
        assert applied.revocation_error is None

        await site.advance_to(at(19))
        assert site.type_pin(cancelled.code) == "DENIED"
        assert site.lock.view().locked
        assert site.type_pin(kept.code) == "OPEN"  # another code of the same hours still works

        # the same list again changes nothing: no reason to wake the lock
        syncs = site.coordinator.sync_count
        await publish_revoked(site, cancelled.id)
        assert site.coordinator.sync_count == syncs


async def test_a_revocation_list_too_long_for_the_lock_is_reported(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with gym(tmp_path, mosquitto, start=at(8)) as site:
        good = offline_pin(9, 10)
        # 65 live cancelled codes: one more than the lock holds
        many = [OfflinePinId(at(9) // HOUR + i // 8, 1 + i % 8, 7) for i in range(65)]
        version = await publish_revoked(site, *many)
        applied = await site.report(version, SyncReason.CHANGE)
        assert applied.revocations == 65
        assert applied.revocation_error == "revocations_full"
        await site.advance_to(at(9))
        assert site.type_pin(good.code) == "DENIED"  # fails secure: every offline PIN

        # once a list that fits arrives, offline PINs work again
        await site.advance_to(at(9.1))
        version = await publish_revoked(site, *many[:64])
        applied = await site.report(version, SyncReason.CHANGE)
        assert applied.revocations == 64
        assert applied.revocation_error is None
        assert site.type_pin(good.code) == "OPEN"
