"""Attack: a Pi is stolen from a gym while connected. City ops revoke its gateway; the
broker checks the CRL only at a TLS handshake, so the connection made before would stay
open, quietly, for as long as the thief keeps it up. The cloud must close it at once: the
old connection is dropped, cannot publish or subscribe any more, and cannot come back."""

from __future__ import annotations

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


async def test_revoking_a_gateway_drops_its_open_connection(
    cloud: EnrollingCloud, tmp_path: Path
) -> None:
    before = reloads(cloud.broker)
    pi = await cloud.enroll(tmp_path / "pi")
    await until_reloaded(cloud.broker, before)
    stolen = cloud.broker.client(pi, "gym-a-gw-1")  # the agent's own client id
    async with stolen:
        await stolen.subscribe(topics.access("gym-a", "gw-1"), qos=1)
        await stolen.publish(topics.status("gym-a", "gw-1"), b"{}", qos=1)

        before = reloads(cloud.broker)
        answer = await cloud.revoke()
        await until_reloaded(cloud.broker, before)

        with pytest.raises(aiomqtt.MqttError):  # the broker closed it
            await read_until_closed(stolen)
        with pytest.raises(aiomqtt.MqttError):
            await stolen.publish(topics.events("gym-a", "gw-1"), b"{}", qos=1)
        with pytest.raises(aiomqtt.MqttError):
            await stolen.subscribe(topics.access("gym-a", "gw-1"), qos=1)

    with pytest.raises(aiomqtt.MqttError):  # and it cannot come back: the CRL
        async with cloud.broker.client(pi, "gym-a-gw-1", timeout=3):
            pass
    assert "closing old connection" in cloud.broker.broker.log_path.read_text()
    assert answer["broker_reloaded"] is True
    assert answer["connection_closed"] is True
    assert (await cloud.http.get("/healthz")).json()["mqtt"] == "connected"
