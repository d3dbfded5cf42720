"""``denen-agent --config site.toml`` as a process: ready line, birth, SIGTERM → offline."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from protocol import messages, topics
from protocol.messages import GatewayState, StatusData
from tests.integration.test_edge_agent import GW, LOCK, SITE, LockPeer, paired, within
from tests.support.mosquitto import Mosquitto

READY = f"agent {SITE}/{GW} ready"


@pytest.fixture
async def peer() -> AsyncIterator[LockPeer]:
    lock = LockPeer(slot_count=2)
    yield lock
    lock.close()


def write_config(tmp_path: Path, broker: Mosquitto, lock_path: str) -> Path:
    paired(tmp_path / "state")
    path = tmp_path / "site.toml"
    path.write_text(
        f'site = "{SITE}"\ngateway = "{GW}"\nstate_dir = "{tmp_path / "state"}"\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
        f'[[locks]]\nid = "{LOCK}"\ntransport = "pty:{lock_path}"\n'
    )
    return path


async def retained_status(broker: Mosquitto) -> StatusData:
    async with aiomqtt.Client(broker.host, broker.port, protocol=aiomqtt.ProtocolVersion.V5) as c:
        await c.subscribe(topics.status(SITE, GW), qos=1)
        message = await within("retained status", anext(aiter(c.messages)))
        assert message.retain
        _, data = messages.parse(message.payload)  # type: ignore[arg-type]
        assert isinstance(data, StatusData)
        return data


async def test_the_agent_process_says_ready_and_goes_offline_on_sigterm(
    tmp_path: Path, mosquitto: Mosquitto, peer: LockPeer
) -> None:
    config = write_config(tmp_path, mosquitto, peer.path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge.main", "--config", str(config),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    try:

        async def ready() -> None:
            assert proc.stderr is not None
            while READY not in (await proc.stderr.readline()).decode():
                pass

        await within("the ready line on stderr", ready())
        online = await retained_status(mosquitto)
        assert online.state is GatewayState.ONLINE
        assert online.locks == [LOCK]
        proc.send_signal(signal.SIGTERM)
        _, rest = await within("the agent exits", proc.communicate(), limit_s=15)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, rest.decode()
    assert (await retained_status(mosquitto)).state is GatewayState.OFFLINE


async def test_a_bad_config_exits_2_with_the_field_named(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text('site = "gym-a"\ngateway = "gw-1"\nstate_dir = "/tmp/x"\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge.main", "--config", str(path),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await within("the agent exits", proc.communicate())
    assert proc.returncode == 2
    assert "site.toml: mqtt: Field required" in err.decode()
