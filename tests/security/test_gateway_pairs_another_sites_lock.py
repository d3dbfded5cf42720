"""Attack: a gateway of gym B, with its own valid certificate, sends "pairing" keys for
gym A's lock on its own ``pairing`` topic (the broker lets it), sealed properly to the
cloud's pairing key. Were they stored, gym A's door would take PINs made with keys gym B
chose, and gym B could mint offline codes for it. The cloud refuses: gym A's keys stay,
the sender is told no, the message is counted, and a critical ``foreign_device`` alert
opens against gym B's gateway."""

from __future__ import annotations

import asyncio
import base64
import secrets

import aiomqtt
from sqlalchemy import select

from cloud.gym.models import Lock
from protocol import topics
from protocol.messages import (
    LockKeysData,
    LockKeysResult,
    MessageType,
    PairingKeyData,
    make,
    parse,
)
from protocol.sealed import CloudLockKeys, associated_data, seal
from tests.security.conftest import NOW
from tests.support.secure_cloud import World


def _keys_of(world: World, lock_id: str) -> tuple[str, str | None]:
    with world.app.state.sessions() as session:
        lock = session.scalars(select(Lock).where(Lock.lock_id == lock_id)).one()
        return lock.pin_key, lock.offline_secret


async def _next(client: aiomqtt.Client) -> object:
    async for message in client.messages:
        assert isinstance(message.payload, bytes)
        return parse(message.payload)[1]
    raise AssertionError("the connection ended")


async def test_a_gateway_cannot_give_another_sites_lock_its_keys(world: World) -> None:
    before = _keys_of(world, "gym-a-1")
    b = world.broker.gateway("gym-b", "gw-1")
    chosen = CloudLockKeys(secrets.token_bytes(32), secrets.token_bytes(32))
    async with world.broker.client(b, "gym-b-gw-1-pairing") as gw_b, asyncio.timeout(15):
        await gw_b.subscribe(topics.PAIRING_KEY, qos=1)
        key = await _next(gw_b)
        assert isinstance(key, PairingKeyData)
        await gw_b.subscribe(topics.pairing_result("gym-b", "gw-1"), qos=1)
        sealed = seal(
            bytes.fromhex(key.public_key), chosen, associated_data("gym-b", "gw-1", "gym-a-1")
        )
        data = LockKeysData(lock_id="gym-a-1", sealed=base64.b64encode(sealed).decode())
        await gw_b.publish(
            topics.pairing("gym-b", "gw-1"), make(MessageType.LOCK_KEYS, data, ts=NOW), qos=1
        )
        answer = await _next(gw_b)

    assert isinstance(answer, LockKeysResult)
    assert (answer.lock_id, answer.stored) == ("gym-a-1", False)
    assert answer.error is not None
    assert "belongs to another site or gateway" in answer.error
    assert _keys_of(world, "gym-a-1") == before
    assert chosen.pin_key.hex() != before[0]

    alerts = (
        await world.http.get("/api/fleet/alerts?kind=foreign_device", headers=world.ops())
    ).json()
    assert [(x["site"], x["subject"], x["severity"]) for x in alerts] == [
        ("gym-b", "gw-1", "critical")
    ]
    assert world.app.state.services.events.refused.counts == {"lock keys": 1}
