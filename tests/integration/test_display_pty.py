"""A display on a real pty with its control API: the test stands in for the agent."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from firmware_sim.display.control import create_display_app
from firmware_sim.display.firmware import HELLO_RETRY_S
from firmware_sim.display.pty_host import DisplayPtyHost
from protocol import display_wire as dw
from tests.integration.test_display_pty_support import (
    T0,
    F,
    display_client,
    hosted_display,
    served,
)

ID = "clinic-a-disp-1"
KEY = bytes.fromhex("c3" * 32)

STATE = dw.DisplayState(
    version=12,
    calls=dw.Calls(
        (dw.RoomCall("1", "A-021", 4), dw.RoomCall("3", "A-023", 9)), ("A-024", "A-025")
    ),
    announcement=dw.Announcement("番号でお呼びします", dw.AnnouncementLevel.INFO, T0 + 3600),
    brightness=80,
    time=T0,
)


@pytest.fixture
async def display() -> AsyncIterator[DisplayPtyHost]:
    async with hosted_display(ID) as (host, _):
        yield host


@pytest.fixture
async def control(display: DisplayPtyHost) -> AsyncIterator[httpx.AsyncClient]:
    async with served(create_display_app([display])) as client:
        yield client


def face(view: dict[str, object]) -> object:
    return (view["rooms"], view["next_numbers"], view["announcement"], view["brightness"])


async def test_a_power_cycled_display_is_restored_within_two_seconds(
    display: DisplayPtyHost, control: httpx.AsyncClient
) -> None:
    async with display_client(display.path) as agent:
        await agent.show(STATE)
        shown = (await control.get(f"/api/displays/{ID}")).json()
        assert [(r["room"], r["number"]) for r in shown["rooms"]] == [
            ("1", "A-021"),
            ("3", "A-023"),
        ]
        assert shown["announcement"] == "番号でお呼びします"

        loop = asyncio.get_running_loop()
        started = loop.time()
        blank = (await control.post(f"/api/displays/{ID}/power-cycle")).json()
        assert (blank["has_state"], blank["rooms"], blank["boot_count"]) == (False, [], 2)

        hello = await agent.wait_hello()  # the agent hears the display came back …
        assert (hello.boot_count, hello.reason) == (2, dw.BootReason.POWER_CYCLE)
        await agent.show(STATE)  # … and sends the whole state in one frame

        while True:
            view = (await control.get(f"/api/displays/{ID}")).json()
            if view["has_state"]:
                break
            await asyncio.sleep(0.02)
        assert loop.time() - started < 2.0
        assert face(view) == face(shown)
        assert view["chime_count"] == shown["chime_count"]  # restoring is not a call


async def test_hello_repeats_until_someone_sends_the_state() -> None:
    # the HELLO sent at start went to nobody (opening the port flushes it)
    async with hosted_display("disp-2") as (host, clock), display_client(host.path) as agent:
        clock.advance(HELLO_RETRY_S)
        hello = await agent.wait_hello()  # sent by the periodic tick
        assert hello.reason is dw.BootReason.POWER_ON
        await agent.show(STATE)
        status = dw.DisplayStatus.decode((await agent.request(F.GET_STATUS)).payload)
        assert (status.has_state, status.state_version, status.clock) == (True, 12, T0)


async def test_a_new_call_chimes_on_the_face(
    display: DisplayPtyHost, control: httpx.AsyncClient
) -> None:
    async with display_client(display.path) as agent:
        await agent.show(STATE)
        recall = dw.Calls((dw.RoomCall("1", "A-021", 4), dw.RoomCall("3", "A-023", 10)))
        assert (await agent.request(F.SET_CALLS, recall.encode())).type is F.ACK
    view = (await control.get(f"/api/displays/{ID}")).json()
    assert (view["chime"], view["chime_count"]) == (True, 1)
    assert [r["fresh"] for r in view["rooms"]] == [False, True]


async def test_garbage_on_the_line_is_skipped_and_counted(display: DisplayPtyHost) -> None:
    async with display_client(display.path) as agent:
        agent.writer.write(b"\x00\xd5noise\xd5\x44")  # a false magic, too
        reply = await agent.request(F.GET_STATUS)
        assert reply.type is F.STATUS
        assert display.view().dropped_bytes > 0


async def test_a_provisioned_display_refuses_unsealed_state_on_the_line() -> None:
    async with hosted_display("disp-3", key=KEY) as (host, _):
        async with display_client(host.path) as attacker:
            reply = await attacker.request(F.SHOW_STATE, STATE.encode())
            assert dw.decode_nack(reply.payload)[0] == dw.DisplayNackCode.AUTH_FAILED
        assert host.view().rooms == ()
        async with display_client(host.path, key=KEY) as agent:
            await agent.show(STATE)
        assert [r.number for r in host.view().rooms] == ["A-021", "A-023"]


async def test_the_face_page_carries_the_test_ids(
    display: DisplayPtyHost, control: httpx.AsyncClient
) -> None:
    async with display_client(display.path) as agent:
        await agent.show(STATE)
    page = await control.get(f"/displays/{ID}")
    assert page.status_code == 200
    for test_id in [
        "display-face",
        "calls",
        "room",
        "room-label",
        "room-number",
        "next-numbers",
        "next-number",
        "announcement",
        "chime",
        "no-state",
        "standby",
        "brightness",
        "chime-count",
        "power-cycle",
    ]:
        assert f'data-testid="{test_id}"' in page.text
    assert "A-023" in page.text
    assert "番号でお呼びします" in page.text
    index = await control.get("/")
    assert f'data-testid="display-link-{ID}"' in index.text
    assert (await control.get("/api/displays/nope")).status_code == 404
    assert (await control.post("/api/displays/nope/power-cycle")).status_code == 404


async def test_cli_hosts_a_display_that_says_hello(tmp_path: Path) -> None:
    link = tmp_path / "disp-1"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from firmware_sim.main import main; raise SystemExit(main())",
        "display",
        f"--id={ID}",
        f"--link={link}",
        "--control-port=0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        assert line.startswith(f"display {ID} on /dev/pts/")
        assert os.readlink(link) in line
        url = line.rsplit("control ", 1)[1].strip()
        async with display_client(str(link)) as agent, httpx.AsyncClient() as http:
            api = url.replace("/displays/", "/api/displays/")
            assert (await http.post(f"{api}/power-cycle")).status_code == 200
            assert (await agent.wait_hello()).boot_count == 2
            await agent.show(STATE)
            view = (await http.get(api)).json()
            assert [r["number"] for r in view["rooms"]] == ["A-021", "A-023"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0, stderr.decode()
    assert not link.is_symlink()
