"""``denen-sim``: host simulated devices on ptys with their control page.

    denen-sim lock --id lock-1 --pin-key-file key.hex [--link /tmp/lock-1] \\
        [--control-host 127.0.0.1 --control-port 8100] [--auto-lock 5]
    denen-sim lock --lock lock-1:key1.hex:/tmp/lock-1 --lock lock-2:key2.hex

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

from firmware_sim.control import create_app
from firmware_sim.errors import PinKeyError, SimulatorError
from firmware_sim.lock.firmware import LockFirmware
from firmware_sim.lock.pty_host import LockPtyHost
from protocol.clock import SystemClock
from protocol.ids import SLUG_RE

log = logging.getLogger("firmware_sim")

MIN_PIN_KEY_BYTES = 16


@dataclass(frozen=True, slots=True)
class LockSpec:
    lock_id: str
    pin_key_file: Path
    link: Path | None = None


def parse_lock_spec(spec: str) -> LockSpec:
    """``ID:KEYFILE[:LINK]`` → :class:`LockSpec`."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise argparse.ArgumentTypeError(f"{spec!r} is not ID:KEYFILE[:LINK]")
    if not SLUG_RE.fullmatch(parts[0]):
        raise argparse.ArgumentTypeError(f"lock id {parts[0]!r} is not a slug [a-z0-9-]")
    return LockSpec(parts[0], Path(parts[1]), Path(parts[2]) if len(parts) == 3 else None)


def load_pin_key(path: Path) -> bytes:
    """The lock's PIN key from a file holding it as hex text."""
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise PinKeyError(f"cannot read the PIN key file {path}: {exc.strerror}") from exc
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise PinKeyError(f"{path} does not hold a hex PIN key") from None
    if len(key) < MIN_PIN_KEY_BYTES:
        raise PinKeyError(f"the PIN key in {path} has {len(key)} bytes; use at least 16")
    return key


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="denen-sim", description="Host simulated Denen devices with their control page."
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    devices = parser.add_subparsers(dest="device", required=True)
    lock = devices.add_parser("lock", help="keypad locks on ptys, with a control page")
    lock.add_argument("--id", dest="lock_id", help="lock id (a slug), with --pin-key-file")
    lock.add_argument("--pin-key-file", type=Path, help="file holding the PIN key as hex")
    lock.add_argument("--link", type=Path, help="symlink to create to the pty (a stable path)")
    lock.add_argument(
        "--lock",
        dest="locks",
        action="append",
        type=parse_lock_spec,
        default=[],
        metavar="ID:KEYFILE[:LINK]",
        help="another lock; repeat for several",
    )
    lock.add_argument("--control-host", default="127.0.0.1")
    lock.add_argument("--control-port", type=int, default=8100, help="0 picks a free port")
    lock.add_argument("--auto-lock", type=float, default=5.0, help="seconds until it relocks")
    return parser


def lock_specs(args: argparse.Namespace) -> list[LockSpec]:
    """Every lock the command line names; raises SimulatorError when that is none or bad."""
    specs: list[LockSpec] = list(args.locks)
    if args.lock_id or args.pin_key_file:
        if not (args.lock_id and args.pin_key_file):
            raise SimulatorError("--id and --pin-key-file go together")
        if not SLUG_RE.fullmatch(args.lock_id):
            raise SimulatorError(f"lock id {args.lock_id!r} is not a slug [a-z0-9-]")
        specs.insert(0, LockSpec(args.lock_id, args.pin_key_file, args.link))
    if not specs:
        raise SimulatorError("name a lock: --id ID --pin-key-file FILE, or --lock ID:KEYFILE")
    if len({s.lock_id for s in specs}) != len(specs):
        raise SimulatorError("two locks have the same id")
    return specs


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: main owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def serve_locks(specs: Sequence[LockSpec], args: argparse.Namespace) -> None:
    """Host the locks and the control app until a signal asks to stop."""
    clock = SystemClock()
    hosts = [
        LockPtyHost(
            s.lock_id,
            LockFirmware(clock, load_pin_key(s.pin_key_file), auto_lock_s=args.auto_lock),
            link=s.link,
        )
        for s in specs
    ]
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


async def _announce(server: uvicorn.Server, hosts: Sequence[LockPtyHost], host: str) -> None:
    # the line tells a script (or a test) where everything is, so print it only once
    # the control port really listens
    while not server.started:
        if server.should_exit:
            return
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    for lock in hosts:
        link = f" (link {lock.link})" if lock.link else ""
        url = f"http://{host}:{port}/locks/{lock.lock_id}"
        sys.stdout.write(f"lock {lock.lock_id} on {lock.path}{link}, control {url}\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``denen-sim``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        specs = lock_specs(args)
        asyncio.run(serve_locks(specs, args))
    except SimulatorError as exc:
        log.error("%s", exc)  # noqa: TRY400 - a user error: the message says it all
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
