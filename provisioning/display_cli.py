"""``denen provision display pair``: the command line of display pairing
(:mod:`provisioning.display_pairing`).

Building the parser imports nothing of the agent, so ``denen --help`` works on a machine
without the edge extras; running ``pair`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from protocol.clock import SystemClock
from protocol.ids import SLUG_RE

if TYPE_CHECKING:
    from provisioning.display_pairing import DisplayPairingResult

PAIR_EPILOG = """\
example (the display's serial cable on the Pi's USB serial adapter):
  denen provision display pair --serial /dev/ttyUSB1 --id clinic-a-disp-1 \\
      --config /etc/denen/site.toml

Stop the agent first (it holds the display's line). Press the pairing button on the display
when asked. If the display shows a 6-digit code, someone else paired it in the same window:
type the code to take it back. The link key goes to STATE_DIR/displays/ID.key.json (read by
the agent, which then sends this display sealed frames only).
"""


def add_display_parser(steps: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The ``display`` step and its ``pair`` sub-command."""
    display = steps.add_parser(
        "display",
        help="pair a call-number display over its serial line: give it its own key",
        description="Pair a call-number display: one random link key per display.",
        epilog=PAIR_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    display.set_defaults(print_step_help=display.print_help)
    actions = display.add_subparsers(dest="action", metavar="ACTION")
    pair = actions.add_parser(
        "pair",
        help="pair one display (press its pairing button when asked)",
        description="Pair one display: its link key and clock.",
        epilog=PAIR_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pair.add_argument(
        "--serial", metavar="DEVICE", required=True, help="serial device, e.g. /dev/ttyUSB1"
    )
    pair.add_argument(
        "--id", dest="display_id", required=True, help="display id, e.g. clinic-a-disp-1"
    )
    pair.add_argument("--config", type=Path, help="the site TOML (its state_dir is used)")
    pair.add_argument("--state-dir", type=Path, help="the agent's state directory")
    pair.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the button")


def run_display_command(args: argparse.Namespace) -> int:
    """``denen provision display …``; returns the exit code."""
    if args.action != "pair":
        args.print_step_help()
        return 0
    if not SLUG_RE.fullmatch(args.display_id):
        return _fail(
            f"display id {args.display_id!r} is not a slug [a-z0-9-], e.g. clinic-a-disp-1"
        )
    from edge.config import load_config  # noqa: PLC0415 - needs the edge extras
    from edge.errors import ConfigError  # noqa: PLC0415

    state_dir = args.state_dir
    known: set[str] = set()
    if args.config is not None:
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            return _fail(str(exc))
        state_dir = state_dir or config.state_dir
        known = {display.id for display in config.displays}
    if state_dir is None:
        return _fail("say where the agent keeps its state: --config site.toml or --state-dir")
    spec = f"serial:{args.serial}"
    try:
        result = asyncio.run(_pair(args, spec, state_dir))
    except _PairingFailedError as exc:
        return _fail(str(exc))
    sys.stdout.write(
        f"display {result.display_id} is paired; the agent's key is in {result.key_path}\n"
    )
    if args.config is not None and args.display_id not in known:
        with Path(args.config).open("a") as toml:  # a new [[displays]] table, valid anywhere
            toml.write(f'\n[[displays]]\nid = "{args.display_id}"\ntransport = "{spec}"\n')
        sys.stdout.write(f"added display {args.display_id} to {args.config}\n")
    sys.stdout.write("start (or restart) the agent: it drives this display with the new key\n")
    return 0


class _PairingFailedError(Exception):
    """Pairing ended with a message for the technician."""


async def _pair(args: argparse.Namespace, spec: str, state_dir: Path) -> DisplayPairingResult:
    from provisioning.display_pairing import ask_display_code, pair_display  # noqa: PLC0415
    from provisioning.pairing import PairingError, PairingOptions  # noqa: PLC0415

    options = PairingOptions(button_wait_s=args.wait, confirm_code=ask_display_code)
    try:
        return await pair_display(
            args.display_id, spec, state_dir=state_dir, clock=SystemClock(), options=options
        )
    except PairingError as exc:
        raise _PairingFailedError(str(exc)) from exc


def _fail(message: str) -> int:
    sys.stderr.write(f"denen provision display: {message}\n")
    return 1
