"""``denen provision doctor`` on real parts: a broker, a simulated lock on a pty."""

from __future__ import annotations

import os
from pathlib import Path

from edge.config import SiteConfig
from firmware_sim.lock import LockFirmware
from firmware_sim.lock.pty_host import LockPtyHost
from protocol.clock import ManualClock, SystemClock
from provisioning.doctor import Severity, check_clock, check_disk, run_checks
from tests.support.mosquitto import Mosquitto, free_port


def _config(state: Path, port: int, lock_path: str) -> SiteConfig:
    return SiteConfig.model_validate(
        {
            "site": "gym-a",
            "gateway": "gw-1",
            "state_dir": str(state),
            "mqtt": {"host": "127.0.0.1", "port": port},
            "locks": [{"id": "gym-a-1", "transport": f"serial:{lock_path}"}],
        }
    )


async def test_a_healthy_site_passes(tmp_path: Path, mosquitto: Mosquitto) -> None:
    firmware = LockFirmware(SystemClock(), battery_pct=87)
    async with LockPtyHost("gym-a-1", firmware) as host:
        config = _config(tmp_path, mosquitto.port, host.path)
        findings = {f.check: f for f in await run_checks(config, SystemClock())}
    assert findings["clock"].severity is Severity.OK
    assert findings["broker"].severity is Severity.OK
    assert findings["lock gym-a-1"].severity is Severity.OK
    assert "battery 87%" in findings["lock gym-a-1"].detail
    assert findings["disk"].severity is Severity.OK
    # no TLS yet: the doctor says so and how to fix it
    assert findings["certificates"].severity is Severity.WARN
    assert "enroll" in findings["certificates"].fix


async def test_a_broken_site_says_what_to_fix(tmp_path: Path) -> None:
    config = _config(tmp_path / "no" / "such", free_port(), "/dev/ttyDOESNOTEXIST")
    findings = {f.check: f for f in await run_checks(config, ManualClock(start=30.0))}
    clock = findings["clock"]
    assert clock.severity is Severity.FAIL
    assert "1970" in clock.detail
    assert "NTP" in clock.fix
    assert findings["broker"].severity is Severity.FAIL
    assert "site.toml" in findings["broker"].fix
    lock = findings["lock gym-a-1"]
    assert lock.severity is Severity.FAIL
    assert "cable" in lock.fix
    assert findings["disk"].severity is Severity.FAIL
    assert "mkdir" in findings["disk"].fix


async def test_a_silent_lock_is_reported(tmp_path: Path) -> None:
    # a pty nobody answers on: the device exists but the lock is asleep or dead
    master, slave = os.openpty()
    try:
        config = _config(tmp_path, free_port(), os.ttyname(slave))
        findings = {f.check: f for f in await run_checks(config, SystemClock())}
    finally:
        os.close(master)
        os.close(slave)
    assert findings["lock gym-a-1"].severity is Severity.FAIL
    assert "batteries" in findings["lock gym-a-1"].fix


def test_clock_and_disk_checks_render_a_fix() -> None:
    finding = check_clock(ManualClock(start=0.0))
    assert "fix:" in finding.render()
    assert check_disk(Path("/")).severity in (Severity.OK, Severity.WARN)
