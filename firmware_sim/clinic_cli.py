"""``denen-sim display`` and ``denen-sim card-reader``: the clinic's devices on ptys.

    denen-sim display --id clinic-a-disp-1 [--link /tmp/disp-1] [--state-file disp-1.json] \\
        [--release-key release.pub] [--control-host 127.0.0.1 --control-port 8110]
    denen-sim card-reader --id clinic-a-kiosk-1 [--link /tmp/kiosk-1] [--control-port 8120]

A display says HELLO when it starts (and every few seconds until it gets its state); its
face is at ``/displays/{id}`` and ``POST /api/displays/{id}/power-cycle`` pulls its plug.
It starts unpaired, like one fresh from the box: press its pairing button (the page, or
``POST /api/displays/{id}/pair-button``) and run ``denen provision display pair``; then it
takes only sealed frames. With ``--state-file`` it keeps its key and counters there (its
flash) and comes back paired after a restart. With ``--release-key`` (repeatable;
``denen release keygen``'s release.pub) it installs firmware images signed by that key;
without one it refuses every update.
A card reader's "tap card" form is at ``/readers/{id}``.

The composition root for these two: command line → firmware → pty host → control app →
uvicorn; one line per device once everything listens, then serve until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Generator, Sequence
from pathlib import Path

import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import FastAPI

from firmware_sim.card_reader.control import create_reader_app
from firmware_sim.card_reader.firmware import CardReaderFirmware
from firmware_sim.card_reader.pty_host import CardReaderPtyHost
from firmware_sim.display.control import create_display_app
from firmware_sim.display.firmware import DisplayFirmware
from firmware_sim.display.pairing import load_display_pairing
from firmware_sim.display.pty_host import DisplayPtyHost
from firmware_sim.errors import SimulatorError
from protocol.clock import SystemClock
from protocol.firmware_image import load_public_key
from protocol.ids import SLUG_RE


def add_clinic_parsers(devices: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``display`` and ``card-reader`` subcommands to ``denen-sim``."""
    display = devices.add_parser("display", help="a call-number display on a pty")
    display.add_argument("--id", dest="device_id", required=True, help="display id (a slug)")
    display.add_argument("--link", type=Path, help="symlink to create to the pty")
    display.add_argument(
        "--state-file", type=Path, help="where the display keeps its key and counters"
    )
    add_release_key_argument(display)
    display.add_argument("--control-host", default="127.0.0.1")
    display.add_argument("--control-port", type=int, default=8110, help="0 picks a free port")
    reader = devices.add_parser("card-reader", help="a kiosk patient-card reader on a pty")
    reader.add_argument("--id", dest="device_id", required=True, help="reader id (a slug)")
    reader.add_argument("--link", type=Path, help="symlink to create to the pty")
    reader.add_argument("--control-host", default="127.0.0.1")
    reader.add_argument("--control-port", type=int, default=8120, help="0 picks a free port")


def add_release_key_argument(parser: argparse.ArgumentParser) -> None:
    """``--release-key FILE``: a release public key the device takes firmware from."""
    parser.add_argument(
        "--release-key",
        dest="release_keys",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="release public key (PEM) whose signed firmware is installed; repeatable",
    )


def read_release_keys(paths: Sequence[Path]) -> list[Ed25519PublicKey]:
    """The release public keys in ``paths``; SimulatorError naming the file that is not one."""
    keys = []
    for path in paths:
        try:
            keys.append(load_public_key(path.read_bytes()))
        except (OSError, ValueError) as exc:
            raise SimulatorError(f"cannot read a release public key from {path}: {exc}") from exc
    return keys


async def serve_clinic_device(args: argparse.Namespace) -> None:
    """Host the one display or card reader the command line names until a signal."""
    if not SLUG_RE.fullmatch(args.device_id):
        raise SimulatorError(f"id {args.device_id!r} is not a slug [a-z0-9-]")
    clock = SystemClock()
    host: DisplayPtyHost | CardReaderPtyHost
    app: FastAPI
    if args.device == "display":
        paired = None if args.state_file is None else load_display_pairing(args.state_file)
        release_keys = read_release_keys(args.release_keys)
        firmware = DisplayFirmware(clock, paired, release_keys=release_keys)
        display = DisplayPtyHost(
            args.device_id, firmware, link=args.link, state_file=args.state_file
        )
        host, app, page = display, create_display_app([display]), "displays"
    else:
        reader = CardReaderPtyHost(args.device_id, CardReaderFirmware(clock), link=args.link)
        host, app, page = reader, create_reader_app([reader]), "readers"
    config = uvicorn.Config(
        app, host=args.control_host, port=args.control_port, lifespan="off", log_level="warning"
    )
    server = _Server(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, setattr, server, "should_exit", True)

    def line(port: int) -> str:
        link = f" (link {host.link})" if host.link else ""
        url = f"http://{args.control_host}:{port}/{page}/{args.device_id}"
        return f"{args.device} {args.device_id} on {host.path}{link}, control {url}\n"

    async with host, asyncio.TaskGroup() as tasks:
        tasks.create_task(_announce(server, line), name="announce")
        await server.serve()


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: we own SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def _announce(server: uvicorn.Server, line: Callable[[int], str]) -> None:
    # printed once the control port really listens: scripts and tests wait for it
    while not server.started:
        if server.should_exit:
            return
        await asyncio.sleep(0.02)
    sys.stdout.write(line(server.servers[0].sockets[0].getsockname()[1]))
    sys.stdout.flush()
