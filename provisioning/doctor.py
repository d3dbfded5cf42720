"""``denen provision doctor``: checks a site gateway and says what to fix.

Each check returns a :class:`Finding`; nothing here changes the system. The checks are
the ones a technician on a ladder needs: is the Pi's clock real time (a Pi without an RTC
boots in 1970), does the broker accept us, when do our certificates expire, does each
lock answer, is there disk space for the outbox, are lock keys lying on the disk.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import aiomqtt
from cryptography import x509

from edge.config import SiteConfig
from edge.errors import EdgeError
from edge.lock_keys import KEY_DIR
from edge.mqtt_link import client_tls
from edge.transports import open_transport
from protocol.clock import Clock, is_trusted_time
from protocol.errors import FrameError
from protocol.lock_wire import FrameParser, FrameType, LockFrame, LockInfo

CERT_WARN_DAYS = 30
DISK_WARN_BYTES = 200 * 1024 * 1024
DISK_FAIL_BYTES = 20 * 1024 * 1024


class Severity(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    severity: Severity
    detail: str
    fix: str = ""

    def render(self) -> str:
        line = f"[{self.severity.value:>4}] {self.check}: {self.detail}"
        return f"{line}\n       fix: {self.fix}" if self.fix else line


def check_clock(clock: Clock) -> Finding:
    now = clock.now()
    when = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    if not is_trusted_time(now):
        return Finding(
            "clock",
            Severity.FAIL,
            f"the Pi's clock says {when}: it has no real-time clock and no network time yet",
            "connect the Pi to the network and wait for NTP (`timedatectl` shows "
            "'System clock synchronized: yes'); the agent will not set lock clocks until then",
        )
    return Finding("clock", Severity.OK, f"the Pi's clock says {when}")


def check_disk(path: Path) -> Finding:
    target = path if path.exists() else path.parent
    if not target.exists():
        return Finding(
            "disk",
            Severity.FAIL,
            f"state directory {path} does not exist",
            f"create it (`mkdir -p {path}`) or fix state_dir in site.toml",
        )
    free = shutil.disk_usage(target).free
    mib = free // (1024 * 1024)
    if free < DISK_FAIL_BYTES:
        return Finding(
            "disk",
            Severity.FAIL,
            f"{mib} MiB free under {target}: events cannot be queued safely",
            "free space on the SD card (old logs: `journalctl --vacuum-size=50M`)",
        )
    if free < DISK_WARN_BYTES:
        return Finding(
            "disk", Severity.WARN, f"{mib} MiB free under {target}", "free space on the SD card"
        )
    return Finding("disk", Severity.OK, f"{mib} MiB free under {target}")


def check_lock_secrets(state_dir: Path) -> Finding:
    """No lock's PIN key or offline secret on this Pi: older pairings left them in
    ``locks/ID.cloud.json`` for a hand-over; with one and an access snapshot every PIN of
    that lock can be worked out, and offline codes made for any time."""
    left = sorted((state_dir / KEY_DIR).glob("*.cloud.json"))
    if not left:
        return Finding("lock secrets", Severity.OK, "no lock's PIN key or offline secret on disk")
    names = ", ".join(str(path) for path in left)
    locks = [path.name.removesuffix(".cloud.json") for path in left]
    return Finding(
        "lock secrets",
        Severity.FAIL,
        f"lock keys lie on this Pi's disk: {names}; with them and an access snapshot every "
        "PIN of those locks can be worked out",
        "register each lock's keys with the cloud, then delete the file: pair the lock again "
        "(new keys go straight to the cloud, which confirms), "
        + "; ".join(
            f"`denen provision lock pair --serial DEVICE --id {lock} --config SITE.toml`"
            for lock in locks
        )
        + ", then `shred -u "
        + " ".join(str(path) for path in left)
        + "`",
    )


def check_certificates(config: SiteConfig, clock: Clock) -> list[Finding]:
    tls = config.mqtt.tls
    if tls is None:
        return [
            Finding(
                "certificates",
                Severity.WARN,
                "the broker connection is not TLS: anyone on the network can read it",
                "enroll this Pi: `denen provision enroll --token-file - --cloud URL`",
            )
        ]
    findings = []
    for label, path in (("CA", tls.ca), ("client certificate", tls.cert)):
        if path is None:
            continue
        findings.append(_certificate_finding(label, path, clock))
    return findings


def _certificate_finding(label: str, path: Path, clock: Clock) -> Finding:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        return Finding(
            "certificates",
            Severity.FAIL,
            f"{label} {path} cannot be read: {exc}",
            "enroll again: `denen provision enroll --token-file - --cloud URL`",
        )
    now = dt.datetime.fromtimestamp(clock.now(), dt.UTC)
    left = cert.not_valid_after_utc - now
    if left.total_seconds() <= 0:
        return Finding(
            "certificates",
            Severity.FAIL,
            f"{label} {path} expired on {cert.not_valid_after_utc:%Y-%m-%d}",
            "ask city operations for a new enrollment token and enroll again",
        )
    if left.days < CERT_WARN_DAYS:
        return Finding(
            "certificates",
            Severity.WARN,
            f"{label} {path} expires in {left.days} days",
            "ask city operations for a new enrollment token and enroll again",
        )
    return Finding("certificates", Severity.OK, f"{label} valid for {left.days} more days")


async def check_broker(config: SiteConfig, wait_s: float = 5.0) -> Finding:
    where = f"{config.mqtt.host}:{config.mqtt.port}"
    context = client_tls(config)
    try:
        async with asyncio.timeout(wait_s):
            # a client id of its own, so the running agent's session is left alone
            async with aiomqtt.Client(
                config.mqtt.host,
                config.mqtt.port,
                identifier=f"{config.client_id}-doctor",
                protocol=aiomqtt.ProtocolVersion.V5,
                tls_context=context,
            ):
                pass
    except TimeoutError:
        return Finding(
            "broker",
            Severity.FAIL,
            f"no answer from {where} within {wait_s:.0f}s",
            "check the network and the broker address in site.toml",
        )
    except (aiomqtt.MqttError, OSError, ssl.SSLError) as exc:
        return Finding(
            "broker",
            Severity.FAIL,
            f"{where} refused the connection: {exc}",
            "check the broker address in site.toml, the certificates "
            "(`denen provision enroll`) and whether this gateway was revoked",
        )
    return Finding("broker", Severity.OK, f"connected to {where}")


async def check_lock(lock_id: str, transport: str, wait_s: float = 2.0) -> Finding:
    try:
        link = await open_transport(transport, lock_id=lock_id)
    except (EdgeError, ValueError) as exc:
        return Finding(
            f"lock {lock_id}",
            Severity.FAIL,
            str(exc),
            f"check the cable or the transport in site.toml ({transport})",
        )
    try:
        parser = FrameParser()
        await link.send(bytes(LockFrame(FrameType.GET_INFO, seq=1)))
        async with asyncio.timeout(wait_s):
            while True:
                for frame in parser.feed(await link.receive()):
                    if frame.seq == 1 and frame.type is FrameType.INFO:
                        info = LockInfo.decode(frame.payload)
                        return _lock_finding(lock_id, info)
    except (TimeoutError, EdgeError, FrameError) as exc:
        return Finding(
            f"lock {lock_id}",
            Severity.FAIL,
            f"no valid answer on {transport}: {exc or 'timed out'}",
            "check the cable and the lock's batteries; wake the lock by pressing a key",
        )
    finally:
        await link.close()


def _lock_finding(lock_id: str, info: LockInfo) -> Finding:
    detail = (
        f"{info.model} firmware {info.firmware}, {info.slot_count} slots, "
        f"battery {info.battery_pct}%"
    )
    if info.battery_pct < 20:
        return Finding(
            f"lock {lock_id}", Severity.WARN, detail, "replace the lock's batteries soon"
        )
    if info.locked_out:
        return Finding(
            f"lock {lock_id}",
            Severity.WARN,
            detail + "; keypad locked out after wrong PINs",
            "wait for the lockout to end; check the audit log for a brute-force attempt",
        )
    return Finding(f"lock {lock_id}", Severity.OK, detail)


async def run_checks(
    config: SiteConfig, clock: Clock, progress: Callable[[str], None] = lambda _: None
) -> list[Finding]:
    """Every check, in the order a technician would fix them."""
    findings = [
        check_clock(clock),
        check_disk(config.state_dir),
        check_lock_secrets(config.state_dir),
    ]
    findings += check_certificates(config, clock)
    progress(f"connecting to the broker {config.mqtt.host}:{config.mqtt.port} …")
    findings.append(await check_broker(config))
    for lock in config.locks:
        progress(f"asking lock {lock.id} on {lock.transport} …")
        findings.append(await check_lock(lock.id, lock.transport))
    return findings
