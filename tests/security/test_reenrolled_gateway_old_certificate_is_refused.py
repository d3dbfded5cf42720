"""Attack: a gym's Pi is replaced (stolen, broken, swapped) and the same gateway is
enrolled again on a new Pi. The old Pi's certificate must be worthless from then on: it is
revoked by the new enrollment, its open connection is closed, and it cannot connect again.

And the subtler one: a thief keeps the stolen Pi's connection open under a client id of
their own (the cloud cannot close what it cannot name). When the broker knew gateways by
name, enrolling the gateway again put that name back into the ACL, and the revoked
connection got its full rights back. Each certificate now has a name of its own, so the
old connection stays shut out while the new Pi works."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from protocol import topics
from protocol.clock import ManualClock
from tests.support.enrolling_cloud import (
    EnrollingCloud,
    enrolling_cloud,
    read_until_closed,
    reloads,
    until_reloaded,
)
from tests.support.secure_broker import running_secure_broker


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[EnrollingCloud]:
    with running_secure_broker(tmp_path / "secure", gateways=()) as broker:
        async with enrolling_cloud(tmp_path, broker, ManualClock(time.time())) as cloud:
            yield cloud


async def messages_until(client: aiomqtt.Client, marker: bytes) -> list[bytes]:
    """Payloads ``client`` receives up to ``marker`` (published after whatever we test)."""
    got: list[bytes] = []
    async with asyncio.timeout(10):
        async for message in client.messages:
            payload = bytes(message.payload)  # type: ignore[arg-type]
            if payload == marker:
                return got
            got.append(payload)
    return got


async def test_enrolling_again_shuts_the_old_pi_out(cloud: EnrollingCloud, tmp_path: Path) -> None:
    before = reloads(cloud.broker)
    old = await cloud.enroll(tmp_path / "old-pi")
    await until_reloaded(cloud.broker, before)
    async with cloud.broker.client(old, "gym-a-gw-1") as old_link:
        await old_link.subscribe(topics.access("gym-a", "gw-1"), qos=1)
        before = reloads(cloud.broker)
        new = await cloud.enroll(tmp_path / "new-pi")
        await until_reloaded(cloud.broker, before)
        with pytest.raises(aiomqtt.MqttError):  # closed by the cloud
            await read_until_closed(old_link)

    with pytest.raises(aiomqtt.MqttError):  # revoked: the handshake fails
        async with cloud.broker.client(old, "gym-a-gw-1", timeout=3):
            pass
    async with (
        cloud.broker.client(cloud.broker.cloud, "observer") as observer,
        cloud.broker.client(new, "gym-a-gw-1") as new_link,
    ):
        await observer.subscribe(topics.events("gym-a", "gw-1"), qos=1)
        await new_link.publish(topics.events("gym-a", "gw-1"), b"new pi", qos=1)
        await new_link.publish(topics.events("gym-a", "gw-1"), b"end", qos=1)
        assert await messages_until(observer, b"end") == [b"new pi"]


async def test_a_revoked_connection_gets_nothing_back_when_the_gateway_is_enrolled_again(
    cloud: EnrollingCloud, tmp_path: Path
) -> None:
    before = reloads(cloud.broker)
    stolen = await cloud.enroll(tmp_path / "stolen-pi")
    await until_reloaded(cloud.broker, before)
    access = topics.access("gym-a", "gw-1")
    events = topics.events("gym-a", "gw-1")
    async with cloud.broker.client(stolen, "thief") as thief:  # not the agent's client id
        await thief.subscribe(f"{topics.ROOT}/gym-a/gw-1/#", qos=1)
        await thief.publish(events, b"while valid", qos=1)  # it hears itself while valid
        await messages_until(thief, b"while valid")  # and has read all it got until then
        before = reloads(cloud.broker)
        await cloud.revoke()
        await until_reloaded(cloud.broker, before)
        before = reloads(cloud.broker)
        new = await cloud.enroll(tmp_path / "new-pi")  # same gym, same gateway id
        await until_reloaded(cloud.broker, before)

        async with (
            cloud.broker.client(cloud.broker.cloud, "observer") as observer,
            cloud.broker.client(new, "gym-a-gw-1") as new_link,
        ):
            await observer.subscribe(events, qos=1)
            await new_link.subscribe(access, qos=1)
            # what the thief sends does not arrive; the new Pi's marker after it does
            await thief.publish(events, b"forged unlock", qos=1)
            await new_link.publish(events, b"end", qos=1)
            assert await messages_until(observer, b"end") == []
            # what is sent to the gateway reaches the new Pi, not the thief
            await observer.publish(access, b"fresh PINs", qos=1)
            await observer.publish(access, b"end", qos=1)
            assert b"fresh PINs" in await messages_until(new_link, b"end")
            # the broker writes deliveries to a connection in order: anything for the
            # thief would have come before the answer to a publish it sends after them
            await thief.publish(events, b"ping", qos=1)
            assert len(thief.messages) == 0  # messages received, not yet read: none
