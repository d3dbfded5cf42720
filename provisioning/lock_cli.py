"""``denen provision lock …``: the command line of lock pairing (:mod:`provisioning.pairing`).

Building the parser imports nothing of the agent, so ``denen --help`` works on a machine
without the edge extras; running ``pair`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from protocol.clock import SystemClock
from protocol.ids import SLUG_RE

if TYPE_CHECKING:
    from edge.config import SiteConfig
    from protocol.messages import LockKeysResult
    from provisioning.cloud_keys import CloudLink
    from provisioning.pairing import PairingResult

EXIT_PENDING = 2  # paired, the keys sent, the cloud's confirmation not (yet) heard

PAIR_EPILOG = """\
examples (at the door, the lock's service port on the Pi's USB serial adapter, or BLE):
  denen provision lock pair --serial /dev/ttyUSB0 --id gym-a-1 --config /etc/denen/site.toml
  denen provision lock scan --config /etc/denen/site.toml
  denen provision lock pair --ble F0:F0:F0:F0:F0:02 --id gym-a-2 --config /etc/denen/site.toml

Press the pairing button on the lock when asked; type the test PIN it shows on the keypad.
Over BLE, press the button first (the lock bonds only in the 60 s after it), then type the
6-digit code the lock shows on its display (LE Secure Connections). If you are told the
lock was already paired in this window, type the code the lock then shows: yours wins.
The radio is [ble] hci in the site config ("bleak" when there is none), or --hci, e.g.
--hci tcp-client:127.0.0.1:9100 for the simulator's `denen-sim ble-hub`.
The link key goes to STATE_DIR/locks/ID.key.json (read by the agent). The PIN key and
offline secret go straight to the cloud, sealed to its pairing key, as this gateway (the
certificate and broker of --config); they are never written on the Pi. City operations
register the lock first (`denen-cloud add-lock ID --facility F`); the command waits for
the cloud to confirm and says what to do when it does not.
"""


def add_lock_parser(steps: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``lock`` step and its ``pair`` sub-command."""
    lock = steps.add_parser(
        "lock",
        help="pair a lock over serial or BLE: give it its keys and set its clock",
        description="Pair a lock at the door: one random key set per lock.",
        epilog=PAIR_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    lock.set_defaults(print_step_help=lock.print_help)
    actions = lock.add_subparsers(dest="action", metavar="ACTION")
    pair = actions.add_parser(
        "pair",
        help="pair one lock (press its pairing button when asked)",
        description="Pair one lock: keys, clock, and a test PIN on its keypad.",
        epilog=PAIR_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = pair.add_mutually_exclusive_group(required=True)
    where.add_argument("--serial", metavar="DEVICE", help="serial device, e.g. /dev/ttyUSB0")
    where.add_argument(
        "--ble",
        metavar="AA:BB:CC:DD:EE:FF",
        nargs="?",
        const="",
        help="BLE address; without one, list the Denen locks nearby",
    )
    pair.add_argument("--id", dest="lock_id", required=True, help="lock id, e.g. gym-a-1")
    _add_site_options(pair)
    pair.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the button")
    pair.add_argument(
        "--cloud-wait",
        type=float,
        default=30.0,
        help="seconds to wait for the cloud to confirm it stored the lock's keys",
    )
    pair.add_argument(
        "--skip-keypad-test",
        action="store_true",
        help="only check the authenticated link; do not ask for the test PIN on the keypad",
    )

    scan = actions.add_parser(
        "scan",
        help="list the Denen locks advertising nearby over BLE (name, address, RSSI)",
        description="Listen for Denen locks over BLE and list them, strongest first.",
        epilog=PAIR_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_site_options(scan)
    scan.add_argument("--timeout", type=float, default=5.0, help="seconds to listen")


def _add_site_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="the site TOML (its state_dir is used)")
    parser.add_argument("--state-dir", type=Path, help="the agent's state directory")
    parser.add_argument(
        "--hci",
        help='BLE radio: "bleak" or a bumble transport spec (default: [ble] hci of --config)',
    )


def run_lock_command(args: argparse.Namespace) -> int:
    """``denen provision lock …``; returns the exit code."""
    if args.action not in ("pair", "scan"):
        args.print_step_help()
        return 0
    if args.action == "pair" and not SLUG_RE.fullmatch(args.lock_id):
        return _fail(f"lock id {args.lock_id!r} is not a slug [a-z0-9-], e.g. gym-a-1")
    from edge.config import load_config  # noqa: PLC0415 - needs the edge extras
    from edge.errors import ConfigError  # noqa: PLC0415

    state_dir = args.state_dir
    known_locks: set[str] = set()
    hci, own_address = args.hci, None
    config: SiteConfig | None = None
    if args.config is not None:
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            return _fail(str(exc))
        state_dir = state_dir or config.state_dir
        known_locks = {lock.id for lock in config.locks}
        hci, own_address = hci or config.ble.hci, config.ble.own_address
    radio = RadioChoice(hci or "bleak", state_dir, own_address)
    if args.action == "scan" or args.ble == "":
        return asyncio.run(
            _scan(radio, getattr(args, "timeout", 5.0), pairing=args.action == "pair")
        )
    if config is None or state_dir is None:
        return _fail(
            "pairing sends the lock's keys straight to the cloud as this gateway: give the "
            "site config from `denen provision enroll`, --config /etc/denen/site.toml"
        )
    spec = f"ble:{args.ble}" if args.ble else f"serial:{args.serial}"
    where = f"--ble {args.ble}" if args.ble else f"--serial {args.serial}"
    again = f"denen provision lock pair {where} --id {args.lock_id} --config {args.config}"
    try:
        paired = asyncio.run(_pair(args, spec, radio if args.ble else None, state_dir, config))
    except _PairingFailedError as exc:
        return _fail(str(exc))
    result, answer = paired.result, paired.answer
    sys.stdout.write(f"lock {result.lock_id} is paired; the agent's key is in {result.key_path}\n")
    if args.lock_id not in known_locks:
        add_lock_to_site(Path(args.config), args.lock_id, spec)
        sys.stdout.write(f"added lock {args.lock_id} to {args.config}; restart the agent\n")
    if paired.send_error is not None:
        return _fail(
            f"the lock's keys did not reach the cloud: {paired.send_error}. Nothing of them "
            f"is kept on this Pi, so its PINs cannot work yet: once `denen provision doctor` "
            f"shows the broker, press the pairing button and pair again:\n  {again}"
        )
    if answer is None:
        sys.stdout.write(
            f"PENDING: the lock's keys went to the broker for the cloud, which has not "
            f"confirmed within {args.cloud_wait:.0f} s (it may be down or busy); nothing of "
            "them is kept on this Pi. Ask city operations whether the cloud shows the lock "
            f"as paired (its sync status); if it does not, press the pairing button and "
            f"pair again:\n  {again}\n"
        )
        return EXIT_PENDING
    if not answer.stored:
        return _fail(
            f"the cloud did not store the lock's keys: {answer.error}\nThe lock's PINs "
            f"cannot work until it does; press the pairing button and pair again:\n  {again}"
        )
    sys.stdout.write(
        f"the cloud stored lock {result.lock_id}'s PIN key and offline secret; nothing of "
        "them is kept on this Pi\n"
    )
    return 0


@dataclass(frozen=True, slots=True)
class RadioChoice:
    """Which BLE radio to open, from --hci or the site config."""

    hci: str
    state_dir: Path | None
    own_address: str | None


class _PairingFailedError(Exception):
    """Pairing ended with a message for the technician."""


@dataclass(frozen=True, slots=True)
class _Paired:
    """A paired lock and what became of its keys: the cloud's answer (None: none came in
    time), or why the broker did not take them."""

    result: PairingResult
    answer: LockKeysResult | None
    send_error: str | None = None


async def _pair(
    args: argparse.Namespace,
    spec: str,
    radio: RadioChoice | None,
    state_dir: Path,
    config: SiteConfig,
) -> _Paired:
    """The cloud's pairing key first (without a way to the cloud the lock is left as it
    is), then the lock, then its keys to the cloud."""
    from provisioning.cloud_keys import CloudKeysError, CloudLink  # noqa: PLC0415

    clock = SystemClock()
    try:
        async with CloudLink(config, clock, answer_wait_s=args.cloud_wait) as cloud:
            return await _pair_and_send(args, spec, radio, state_dir, cloud)
    except CloudKeysError as exc:
        raise _PairingFailedError(str(exc)) from exc


async def _pair_and_send(
    args: argparse.Namespace,
    spec: str,
    radio: RadioChoice | None,
    state_dir: Path,
    cloud: CloudLink,
) -> _Paired:
    from edge.errors import EdgeError  # noqa: PLC0415 - needs the edge extras
    from edge.transports import open_central  # noqa: PLC0415
    from protocol.sealed import CloudLockKeys  # noqa: PLC0415
    from provisioning.cloud_keys import CloudKeysError  # noqa: PLC0415
    from provisioning.pairing import PairingError, PairingOptions, pair_lock  # noqa: PLC0415

    options = PairingOptions(button_wait_s=args.wait, keypad_test=not args.skip_keypad_test)
    try:
        central = (
            None
            if radio is None
            else open_central(radio.hci, state_dir=state_dir, own_address=radio.own_address)
        )
    except EdgeError as exc:
        raise _PairingFailedError(str(exc)) from exc
    try:
        result = await pair_lock(
            args.lock_id,
            spec,
            state_dir=state_dir,
            clock=SystemClock(),
            options=options,
            ble=central,
        )
    except PairingError as exc:
        raise _PairingFailedError(str(exc)) from exc
    finally:
        if central is not None:
            await central.close()
    keys = CloudLockKeys(result.keys.pin_key, result.keys.offline_secret)
    try:
        return _Paired(result, await cloud.send(args.lock_id, keys))
    except CloudKeysError as exc:
        return _Paired(result, None, str(exc))


async def _scan(radio: RadioChoice, timeout_s: float, *, pairing: bool) -> int:
    from edge.errors import EdgeError  # noqa: PLC0415 - needs the edge extras
    from edge.transports import open_central  # noqa: PLC0415

    try:
        central = open_central(radio.hci, state_dir=radio.state_dir, own_address=radio.own_address)
    except EdgeError as exc:
        return _fail(str(exc))
    try:
        sys.stdout.write(f"scanning for Denen locks on {central.radio} for {timeout_s:.0f} s ...\n")
        sys.stdout.flush()
        found = await central.scan(timeout_s)
    except EdgeError as exc:
        return _fail(str(exc))
    finally:
        await central.close()
    for advert in found:
        rssi = "?" if advert.rssi is None else f"{advert.rssi} dBm"
        sys.stdout.write(f"  {advert.name or '(no name)':<30} {advert.address}  RSSI {rssi}\n")
    if not found:
        return _fail("no Denen lock heard: wake the lock (press a key) and scan again")
    if pairing:
        sys.stdout.write("pair one: run again with --ble ADDRESS --id LOCK_ID\n")
        return 1
    return 0


def add_lock_to_site(config: Path, lock_id: str, transport: str) -> None:
    """Append the lock to the site's TOML (a new ``[[locks]]`` table, valid anywhere)."""
    with config.open("a") as toml:
        toml.write(f'\n[[locks]]\nid = "{lock_id}"\ntransport = "{transport}"\n')


def _fail(message: str) -> int:
    sys.stderr.write(f"denen provision lock: {message}\n")
    return 1
