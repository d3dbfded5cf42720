"""``denen provision display pair`` as a process, against the simulated display on a pty."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge.config import load_config
from edge.display_keys import DisplayKeyStore
from firmware_sim.display.firmware import DisplayFirmware
from firmware_sim.display.pty_host import DisplayPtyHost
from protocol.clock import SystemClock

DISPLAY = "clinic-a-disp-1"


@pytest.fixture
async def fresh_display(tmp_path: Path) -> AsyncIterator[DisplayPtyHost]:
    """A display straight from the box, keeping its flash in a state file."""
    firmware = DisplayFirmware(SystemClock())
    state = tmp_path / "display.json"
    async with DisplayPtyHost(DISPLAY, firmware, tick_s=0.05, state_file=state) as host:
        yield host


async def pair(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "provisioning.cli", "provision", "display", "pair", *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_without_the_button_pairing_fails_saying_to_press_it(
    tmp_path: Path, fresh_display: DisplayPtyHost
) -> None:
    where = ["--serial", fresh_display.path, "--id", DISPLAY]
    code, out, err = await pair(*where, "--state-dir", str(tmp_path), "--wait", "1.5")
    assert code == 1
    assert "press the pairing button on the display" in err
    assert "press the pairing button on the display" in out  # the progress line
    assert not fresh_display.view().provisioned
    assert not (tmp_path / "displays" / f"{DISPLAY}.key.json").exists()


async def test_pairing_writes_both_keys_and_adds_the_display_to_the_site(
    tmp_path: Path, fresh_display: DisplayPtyHost
) -> None:
    site = tmp_path / "site.toml"
    site.write_text(
        f'site = "clinic-a"\ngateway = "gw-1"\nstate_dir = "{tmp_path}"\n\n'
        '[mqtt]\nhost = "127.0.0.1"\n'
    )
    fresh_display.pair_button()
    code, out, err = await pair(
        "--serial", fresh_display.path, "--id", DISPLAY, "--config", str(site)
    )
    assert code == 0, err
    assert f"display {DISPLAY} is paired" in out
    record = DisplayKeyStore(tmp_path).load(DISPLAY)
    assert record is not None
    assert record.link_key.hex() not in out + err  # the key is never printed
    key_file = tmp_path / "displays" / f"{DISPLAY}.key.json"
    assert key_file.stat().st_mode & 0o777 == 0o600
    view = fresh_display.view()
    assert (view.provisioned, view.clock_set) == (True, True)
    flash = fresh_display.firmware.record()
    assert flash is not None
    assert flash.link_key == record.link_key
    assert (tmp_path / "display.json").stat().st_mode & 0o777 == 0o600  # its flash, kept
    config = load_config(site)
    assert [(d.id, d.transport) for d in config.displays] == [
        (DISPLAY, f"serial:{fresh_display.path}")
    ]
