"""``denen-sim``: host simulated devices on ptys with their control page.

    denen-sim lock --id lock-1 [--state-file lock-1.json] [--link /tmp/lock-1] \\
        [--control-host 127.0.0.1 --control-port 8100] [--auto-lock 5]
    denen-sim lock --lock lock-1:/tmp/lock-1 --lock lock-2 --state-dir .sim \\
        [--release-key release.pub]

    denen-sim ble-hub --port 9100
    denen-sim lock --id gym-a-2 --ble-hci tcp-client:127.0.0.1:9100 \\
        --ble-address F0:F0:F0:F0:F0:02 [--state-file gym-a-2.json]

    denen-sim display --id clinic-a-disp-1 --link /tmp/disp-1 --control-port 8110
    denen-sim card-reader --id clinic-a-kiosk-1 --link /tmp/kiosk-1 --control-port 8120

    denen-sim fleet --gateways 5000 --broker 127.0.0.1:1883 --control-port 8130

With ``--ble-hci`` the ``--id`` lock is a BLE GATT peripheral (bumble) instead of a pty:
the hub is the shared virtual air, and the agent reaches the lock through it with
``[ble] hci = "tcp-client:127.0.0.1:9100"``. Its BLE pairing passkey shows on its display.

A lock starts unpaired, like one fresh from the factory: press its pairing button on the
control page (or ``POST /api/locks/{id}/pair-button``) and run ``denen provision lock
pair``. With a state file (``--state-file``, or ``--state-dir`` for every lock) it keeps
its keys and counters there and comes back paired after a restart. With
``--release-key`` (repeatable) the locks install firmware images signed by that key.

The composition root: settings from the command line → firmware → pty hosts → control
app → uvicorn. Prints one line per lock once everything listens, then serves until
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Generator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from firmware_sim.ble_hub import BleHub
from firmware_sim.clinic_cli import (
    add_clinic_parsers,
    add_release_key_argument,
    read_release_keys,
    serve_clinic_device,
)
from firmware_sim.control import create_app
from firmware_sim.errors import SimulatorError
from firmware_sim.fleet.cli import add_fleet_parser, serve_fleet
from firmware_sim.lock.ble_host import LockBleHost, bond_file_for
from firmware_sim.lock.firmware import LockFirmware
from firmware_sim.lock.pty_host import LockPtyHost
from firmware_sim.lock.state_file import load_pairing
from protocol.clock import SystemClock
from protocol.ids import SLUG_RE
from protocol.lock_gatt import is_ble_address

log = logging.getLogger("firmware_sim")


@dataclass(frozen=True, slots=True)
class LockSpec:
    lock_id: str
    link: Path | None = None
    state_file: Path | None = None
    ble_address: str | None = None  # with --ble-hci: a BLE peripheral, not a pty


def parse_lock_spec(spec: str) -> LockSpec:
    """``ID[:LINK]`` → :class:`LockSpec`."""
    lock_id, _, link = spec.partition(":")
    if not SLUG_RE.fullmatch(lock_id):
        raise argparse.ArgumentTypeError(f"lock id {lock_id!r} is not a slug [a-z0-9-]")
    return LockSpec(lock_id, Path(link) if link else None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="denen-sim", description="Host simulated Denen devices with their control page."
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    devices = parser.add_subparsers(dest="device", required=True)
    lock = devices.add_parser("lock", help="keypad locks on ptys, with a control page")
    lock.add_argument("--id", dest="lock_id", help="lock id (a slug)")
    lock.add_argument("--link", type=Path, help="symlink to create to the pty (a stable path)")
    lock.add_argument(
        "--state-file", type=Path, help="where the --id lock keeps its keys and counters"
    )
    lock.add_argument(
        "--state-dir", type=Path, help="where every lock keeps its state (ID.json); optional"
    )
    lock.add_argument(
        "--lock",
        dest="locks",
        action="append",
        type=parse_lock_spec,
        default=[],
        metavar="ID[:LINK]",
        help="another lock; repeat for several",
    )
    lock.add_argument("--control-host", default="127.0.0.1")
    lock.add_argument("--control-port", type=int, default=8100, help="0 picks a free port")
    lock.add_argument("--auto-lock", type=float, default=5.0, help="seconds until it relocks")
    add_release_key_argument(lock)
    lock.add_argument(
        "--ble-hci",
        metavar="SPEC",
        help="host the --id lock on BLE through this bumble HCI transport "
        "(e.g. tcp-client:127.0.0.1:9100, a `denen-sim ble-hub`)",
    )
    lock.add_argument(
        "--ble-address",
        default="F0:F0:F0:F0:F0:01",
        metavar="AA:BB:CC:DD:EE:FF",
        help="the BLE lock's random static address (default F0:F0:F0:F0:F0:01)",
    )
    hub = devices.add_parser("ble-hub", help="a virtual BLE radio that BLE devices share")
    hub.add_argument("--host", default="127.0.0.1")
    hub.add_argument("--port", type=int, default=9100, help="TCP port for HCI clients")
    add_clinic_parsers(devices)  # display, card-reader
    add_fleet_parser(devices)  # many gateways for load (firmware_sim/fleet)
    return parser


def lock_specs(args: argparse.Namespace) -> list[LockSpec]:
    """Every lock the command line names; raises SimulatorError when that is none or bad."""
    specs: list[LockSpec] = list(args.locks)
    if args.lock_id:
        if not SLUG_RE.fullmatch(args.lock_id):
            raise SimulatorError(f"lock id {args.lock_id!r} is not a slug [a-z0-9-]")
        if args.ble_hci and not is_ble_address(args.ble_address):
            raise SimulatorError(f"--ble-address {args.ble_address!r} is not AA:BB:CC:DD:EE:FF")
        ble_address = args.ble_address if args.ble_hci else None
        specs.insert(0, LockSpec(args.lock_id, args.link, args.state_file, ble_address))
    elif args.link or args.state_file or args.ble_hci:
        raise SimulatorError("--link, --state-file and --ble-hci belong to --id ID")
    if not specs:
        raise SimulatorError("name a lock: --id ID, or --lock ID[:LINK]")
    if len({s.lock_id for s in specs}) != len(specs):
        raise SimulatorError("two locks have the same id")
    if args.state_dir is not None:
        specs = [
            s
            if s.state_file
            else LockSpec(s.lock_id, s.link, args.state_dir / f"{s.lock_id}.json", s.ble_address)
            for s in specs
        ]
    return specs


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: main owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve_locks(specs: Sequence[LockSpec], args: argparse.Namespace) -> None:
    """Host the locks and the control app until a signal asks to stop."""
    clock = SystemClock()
    hosts: list[LockPtyHost | LockBleHost] = []
    release_keys = read_release_keys(args.release_keys)
    for s in specs:
        firmware = LockFirmware(
            clock,
            None if s.state_file is None else load_pairing(s.state_file),
            auto_lock_s=args.auto_lock,
            release_keys=release_keys,
        )
        if s.ble_address is not None:
            hosts.append(
                LockBleHost(
                    s.lock_id,
                    firmware,
                    hci=args.ble_hci,
                    address=s.ble_address,
                    state_file=s.state_file,
                    bond_file=bond_file_for(s.state_file),
                )
            )
        else:
            hosts.append(LockPtyHost(s.lock_id, firmware, link=s.link, state_file=s.state_file))
    config = uvicorn.Config(
        create_app(hosts),
        host=args.control_host,
        port=args.control_port,
        lifespan="off",
        log_level="warning",
    )
    server = _Server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, setattr, server, "should_exit", True)
    async with AsyncExitStack() as stack:
        for host in hosts:
            await stack.enter_async_context(host)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(_announce(server, hosts, args.control_host), name="announce")
            await server.serve()
    log.info("simulator stopped")


async def serve_hub(args: argparse.Namespace) -> None:
    """Run the virtual BLE air until a signal asks to stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with BleHub(args.port, args.host) as hub:
        sys.stdout.write(f"ble-hub on {hub.spec}\n")
        sys.stdout.flush()
        await stop.wait()


async def _announce(
    server: uvicorn.Server, hosts: Sequence[LockPtyHost | LockBleHost], host: str
) -> None:
    # the line tells a script (or a test) where everything is, so print it only once
    # the control port really listens
    while not server.started:
        if server.should_exit:
            return
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    for lock in hosts:
        link = f" (link {lock.link})" if isinstance(lock, LockPtyHost) and lock.link else ""
        url = f"http://{host}:{port}/locks/{lock.lock_id}"
        paired = "paired" if lock.firmware.pairing.paired else "unpaired"
        sys.stdout.write(f"lock {lock.lock_id} on {lock.path}{link}, {paired}, control {url}\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``denen-sim``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if args.device == "ble-hub":
            asyncio.run(serve_hub(args))
        elif args.device in ("display", "card-reader"):
            asyncio.run(serve_clinic_device(args))
        elif args.device == "fleet":
            asyncio.run(serve_fleet(args))
        else:
            asyncio.run(serve_locks(lock_specs(args), args))
    except SimulatorError as exc:
        log.error("%s", exc)  # noqa: TRY400 - a user error: the message says it all
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
