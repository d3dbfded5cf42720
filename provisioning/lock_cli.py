"""``denen provision lock …``: the command line of lock pairing (:mod:`provisioning.pairing`).

Building the parser imports nothing of the agent, so ``denen --help`` works on a machine
without the edge extras; running ``pair`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from protocol.clock import SystemClock
from protocol.ids import SLUG_RE

PAIR_EPILOG = """\
example (at the door, the lock's service port on the Pi's USB serial adapter):
  denen provision lock pair --serial /dev/ttyUSB0 --id gym-a-1 --config /etc/denen/site.toml

Press the pairing button on the lock when asked; type the test PIN it shows on the keypad.
The link key goes to STATE_DIR/locks/ID.key.json (read by the agent); the PIN key and
offline secret to STATE_DIR/locks/ID.cloud.json, for `denen-cloud add-lock`.
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
    where.add_argument("--ble", metavar="AA:BB:CC:DD:EE:FF", help="BLE address (not yet)")
    pair.add_argument("--id", dest="lock_id", required=True, help="lock id, e.g. gym-a-1")
    pair.add_argument("--config", type=Path, help="the site TOML (its state_dir is used)")
    pair.add_argument("--state-dir", type=Path, help="the agent's state directory")
    pair.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the button")
    pair.add_argument(
        "--skip-keypad-test",
        action="store_true",
        help="only check the authenticated link; do not ask for the test PIN on the keypad",
    )


def run_lock_command(args: argparse.Namespace) -> int:
    """``denen provision lock …``; returns the exit code."""
    if args.action != "pair":
        args.print_step_help()
        return 0
    if not SLUG_RE.fullmatch(args.lock_id):
        return _fail(f"lock id {args.lock_id!r} is not a slug [a-z0-9-], e.g. gym-a-1")
    if args.ble:
        return _fail("BLE pairing arrives with the BLE transport; pair over --serial for now")
    from edge.config import load_config  # noqa: PLC0415 - needs the edge extras
    from edge.errors import ConfigError  # noqa: PLC0415
    from provisioning.pairing import PairingError, PairingOptions, pair_lock  # noqa: PLC0415

    state_dir = args.state_dir
    known_locks: set[str] = set()
    if args.config is not None:
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            return _fail(str(exc))
        state_dir = state_dir or config.state_dir
        known_locks = {lock.id for lock in config.locks}
    if state_dir is None:
        return _fail("say where the agent keeps its state: --config site.toml or --state-dir")
    options = PairingOptions(button_wait_s=args.wait, keypad_test=not args.skip_keypad_test)
    try:
        result = asyncio.run(
            pair_lock(
                args.lock_id,
                f"serial:{args.serial}",
                state_dir=state_dir,
                clock=SystemClock(),
                options=options,
            )
        )
    except PairingError as exc:
        return _fail(str(exc))
    sys.stdout.write(f"lock {result.lock_id} is paired; the agent's key is in {result.key_path}\n")
    if args.config is not None and args.lock_id not in known_locks:
        add_lock_to_site(Path(args.config), args.lock_id, f"serial:{args.serial}")
        sys.stdout.write(f"added lock {args.lock_id} to {args.config}; restart the agent\n")
    sys.stdout.write(
        f"register it with the cloud: {result.cloud_path} holds its pin_key, for\n"
        f"  denen-cloud add-lock {result.lock_id} --facility FACILITY_ID --pin-key PIN_KEY\n"
        "and its offline_secret; hand the file over safely and delete it here afterwards\n"
    )
    return 0


def add_lock_to_site(config: Path, lock_id: str, transport: str) -> None:
    """Append the lock to the site's TOML (a new ``[[locks]]`` table, valid anywhere)."""
    with config.open("a") as toml:
        toml.write(f'\n[[locks]]\nid = "{lock_id}"\ntransport = "{transport}"\n')


def _fail(message: str) -> int:
    sys.stderr.write(f"denen provision lock pair: {message}\n")
    return 1
