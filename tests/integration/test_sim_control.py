"""The simulator's control page and API on a real uvicorn, with the lock on a real pty."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from firmware_sim.control import create_app
from firmware_sim.lock.pairing import PairingRecord
from firmware_sim.lock.pty_host import LockPtyHost
from firmware_sim.lock.state_file import save_pairing
from protocol.lock_wire import FrameType, LockInfo
from protocol.messages import LockEventKind as K
from tests.integration.test_lock_pty_support import (
    GRANT,
    SECRETS,
    hosted_lock,
    serial_client,
)


@pytest.fixture
async def lock_host() -> AsyncIterator[LockPtyHost]:
    async with hosted_lock("gym-a-1") as (host, _):
        yield host


@pytest.fixture
async def control(lock_host: LockPtyHost) -> AsyncIterator[httpx.AsyncClient]:
    """The control app on a free port, and an HTTP client pointed at it."""
    config = uvicorn.Config(create_app([lock_host]), port=0, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        yield client
    server.should_exit = True
    await task


async def test_keys_pressed_through_the_api_unlock_and_the_agent_hears(
    lock_host: LockPtyHost, control: httpx.AsyncClient
) -> None:
    async with serial_client(lock_host.path) as agent:
        await agent.load_pin("482913")
        await agent.events()
        agent.wakes.clear()

        response = await control.post("/api/locks/gym-a-1/keys", json={"keys": "482913#"})

        assert response.status_code == 200
        view = response.json()
        assert (view["display"], view["locked"]) == ("OPEN", False)
        await agent.wait_wake()
        (unlock,) = [e for e in await agent.events() if e.kind is K.UNLOCKED]
        assert unlock.grant_id == GRANT


async def test_view_shows_what_the_keypad_shows(control: httpx.AsyncClient) -> None:
    view = (await control.get("/api/locks/gym-a-1")).json()
    assert view["display"] == "NO TIME"
    assert view["path"].startswith("/dev/pts/")
    await control.post("/api/locks/gym-a-1/keys", json={"keys": "12"})
    assert (await control.get("/api/locks/gym-a-1")).json()["display"] == "**"
    await control.post("/api/locks/gym-a-1/keys", json={"keys": "34#"})
    assert (await control.get("/api/locks/gym-a-1")).json()["display"] == "DENIED"


async def test_door_fails_secure_outside_and_opens_from_inside(
    lock_host: LockPtyHost, control: httpx.AsyncClient
) -> None:
    outside = (await control.post("/api/locks/gym-a-1/door", json={"open": True})).json()
    assert outside["moved"] is False
    assert outside["view"]["door_open"] is False
    inside = await control.post("/api/locks/gym-a-1/door", json={"open": True, "from_inside": True})
    assert inside.json()["moved"] is True
    async with serial_client(lock_host.path) as agent:
        info = LockInfo.decode((await agent.request(FrameType.GET_INFO)).payload)
        assert info.door_open
    closed = (await control.post("/api/locks/gym-a-1/door", json={"open": False})).json()
    assert (closed["moved"], closed["view"]["door_open"]) == (True, False)


async def test_bad_keys_and_unknown_locks_are_refused(control: httpx.AsyncClient) -> None:
    assert (await control.post("/api/locks/gym-a-1/keys", json={"keys": "12a#"})).status_code == (
        422
    )
    assert (await control.post("/api/locks/gym-a-1/keys", json={"keys": ""})).status_code == 422
    assert (await control.get("/api/locks/nope")).status_code == 404
    assert (await control.get("/locks/nope")).status_code == 404


async def test_pages_carry_the_keypad_and_test_ids(control: httpx.AsyncClient) -> None:
    index = await control.get("/")
    assert 'data-testid="lock-link-gym-a-1"' in index.text
    page = await control.get("/locks/gym-a-1")
    assert page.status_code == 200
    for test_id in [f"key-{k}" for k in "0123456789"] + [
        "key-star",
        "key-hash",
        "display",
        "lock-state",
        "door-state",
        "door-open",
        "door-open-inside",
        "door-close",
    ]:
        assert f'data-testid="{test_id}"' in page.text
    assert "setInterval(refresh, 500)" in page.text


async def test_cli_hosts_a_lock_until_sigterm(tmp_path: Path) -> None:
    state_file = tmp_path / "lock-1.json"
    save_pairing(state_file, PairingRecord(SECRETS))
    link = tmp_path / "lock-1"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from firmware_sim.main import main; raise SystemExit(main())",
        "lock",
        "--id=lock-1",
        f"--state-file={state_file}",
        f"--link={link}",
        "--control-port=0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        assert line.startswith("lock lock-1 on /dev/pts/")
        assert f"(link {link}), paired," in line
        url = line.rsplit("control ", 1)[1].strip()
        assert os.readlink(link) in line
        async with httpx.AsyncClient() as http:
            page = await http.get(url)
            assert 'data-testid="display"' in page.text
            api = url.replace("/locks/", "/api/locks/")
            view = (await http.post(f"{api}/keys", json={"keys": "0000#"})).json()
            assert view["display"] == "DENIED"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0, stderr.decode()
    assert not link.is_symlink()
    assert b"0000" not in stderr  # typed digits never reach the log


async def test_cli_refuses_a_state_file_that_is_not_one(tmp_path: Path) -> None:
    state_file = tmp_path / "bad.json"
    state_file.write_text("not json at all")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from firmware_sim.main import main; raise SystemExit(main())",
        "lock",
        "--id=lock-1",
        f"--state-file={state_file}",
        "--control-port=0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 2
    assert b"is not a lock state file" in stderr
    assert b"pair the lock again" in stderr


async def test_the_pairing_button_opens_a_window_shown_in_the_view(
    lock_host: LockPtyHost, control: httpx.AsyncClient
) -> None:
    before = (await control.get("/api/locks/gym-a-1")).json()
    assert (before["paired"], before["pairing_open_s"], before["auth_failures"]) == (True, 0, 0)
    view = (await control.post("/api/locks/gym-a-1/pair-button")).json()
    assert view["pairing_open_s"] == 60
    assert view["display"] == "PAIRING"
    page = await control.get("/locks/gym-a-1")
    assert 'data-testid="pair-button"' in page.text
    assert "pairing open 60 s" in page.text
