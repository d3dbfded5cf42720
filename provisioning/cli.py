"""``denen``: the technician's command line.

``denen provision`` installs a site one step at a time (CA, broker config, enrollment,
lock pairing, doctor); ``denen release`` signs firmware images; ``denen demo`` runs the
whole stack on this machine.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from provisioning import display_cli, doctor_cli, lock_cli, release_cli, security_cli

EPILOG = """\
examples:
  denen provision ca init --out /etc/denen/ca --broker-host mqtt.example.city
  denen provision broker-config --out deploy/mosquitto-prod --ca-dir /etc/denen/ca
  denen provision enroll --token-file - --cloud https://denen.example.city
  denen provision lock pair --serial /dev/ttyUSB0 --id gym-a-1 --config site.toml
  denen provision doctor --config /etc/denen/site.toml
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="denen",
        description="Install and look after a Denen site.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"denen {_version()}")
    groups = parser.add_subparsers(dest="group", metavar="GROUP")
    provision = groups.add_parser(
        "provision",
        help="install a site: CA, enrollment, lock and display pairing, diagnostics",
        description="Install a site, one command per step.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    provision.set_defaults(print_group_help=provision.print_help)
    steps = provision.add_subparsers(dest="step", metavar="STEP")
    security_cli.add_steps(steps)
    lock_cli.add_lock_parser(steps)
    display_cli.add_display_parser(steps)
    doctor_cli.add_doctor_parser(steps)
    release_cli.add_release_parser(groups)
    demo = groups.add_parser(
        "demo",
        help="run the whole stack on this machine (broker, cloud, a simulated gym)",
        description="Run broker, cloud, a simulated keypad lock and its agent; Ctrl-C stops.",
        epilog="example:\n  denen demo --dir .demo --port 8000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--dir", type=Path, default=Path(".demo"), help="where state and logs go")
    demo.add_argument("--port", type=int, default=8000, help="dashboard port on 127.0.0.1")
    return parser


def _version() -> str:
    try:
        return metadata.version("denen")
    except metadata.PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.group is None:
        parser.print_help()
        return 0
    if args.group == "demo":
        from provisioning.local_stack import run_demo  # noqa: PLC0415 - only the demo needs it

        return run_demo(args.dir, args.port)
    if args.group == "release":
        return release_cli.run(args)
    if args.group == "provision":
        step = args.step
        if step is None:
            args.print_group_help()
            return 0
        if step in security_cli.STEPS:
            return security_cli.run(args)
        if step == "lock":
            return lock_cli.run_lock_command(args)
        if step == "display":
            return display_cli.run_display_command(args)
        if step == "doctor":
            return doctor_cli.run_doctor(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
