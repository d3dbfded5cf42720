"""BLE across processes: ``denen-sim ble-hub`` is the air, ``denen-sim lock --ble-hci`` a
lock on it, and the agent's bumble central in this process connects through the hub too."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from edge.transports.ble_bumble import BumbleCentral
from protocol.clock import SystemClock
from provisioning.broker import free_port
from provisioning.pairing import PairingOptions, pair_lock

LOCK = "gym-a-2"
ADDRESS = "F0:F0:F0:F0:F0:02"


async def start(*argv: str, ready: str) -> asyncio.subprocess.Process:
    """Start ``denen-sim`` with ``argv`` and wait for its ``ready`` line."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "firmware_sim.main", *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        if not line:
            raise AssertionError(f"denen-sim {argv[0]} ended before saying {ready!r}")
        if ready in line:
            return proc


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)


@pytest.fixture
async def sim() -> AsyncIterator[tuple[str, str]]:
    """The hub and one BLE lock as processes: (hub transport spec, control URL)."""
    hub_port, control_port = free_port(), free_port()
    hub = await start("ble-hub", "--port", str(hub_port), ready="ble-hub on")
    spec = f"tcp-client:127.0.0.1:{hub_port}"
    try:
        lock = await start(
            "lock", "--id", LOCK, "--ble-hci", spec, "--ble-address", ADDRESS,
            "--control-port", str(control_port), ready=f"lock {LOCK} on ble:{ADDRESS}",
        )  # fmt: skip
        try:
            yield spec, f"http://127.0.0.1:{control_port}/api/locks/{LOCK}"
        finally:
            await stop(lock)
    finally:
        await stop(hub)


async def test_pairing_a_lock_process_through_the_hub(tmp_path: Path, sim: tuple[str, str]) -> None:
    spec, control = sim
    central = BumbleCentral.from_hci(spec, bond_dir=tmp_path / "ble", connect_timeout_s=10)
    async with httpx.AsyncClient() as http:

        async def passkey() -> int:  # the technician reads the lock's display
            for _ in range(200):
                shown = re.fullmatch(r"PAIR (\d{6})", (await http.get(control)).json()["display"])
                if shown:
                    return int(shown.group(1))
                await asyncio.sleep(0.02)
            raise AssertionError("the lock never showed a passkey")

        pending: list[asyncio.Task[httpx.Response]] = []

        def say(line: str) -> None:
            typed = re.search(r"type (\d+)# on the lock's keypad", line)
            if typed:
                body = {"keys": typed.group(1) + "#"}
                pending.append(asyncio.create_task(http.post(f"{control}/keys", json=body)))

        try:
            found = await central.scan(0.5)
            assert (LOCK, ADDRESS) in [(a.name, a.address) for a in found]
            (await http.post(f"{control}/pair-button")).raise_for_status()
            result = await pair_lock(
                LOCK,
                f"ble:{ADDRESS}",
                state_dir=tmp_path,
                clock=SystemClock(),
                options=PairingOptions(say=say, passkey=passkey, keypad_wait_s=15),
                ble=central,
            )
        finally:
            await central.close()
        await asyncio.gather(*pending)
        view = (await http.get(control)).json()
    assert result.keypad_tested
    assert view["paired"]
    assert view["clock_set"]
    assert view["path"] == f"ble:{ADDRESS}"
