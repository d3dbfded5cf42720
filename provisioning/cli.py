"""``denen``: the technician's command line.

The sub-command groups exist now; the provisioning steps (CA, enrollment, lock pairing,
doctor) are filled in by the provisioning-and-security work and print their help until then.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from provisioning import lock_cli, security_cli

EPILOG = """\
examples:
  denen provision ca init --out /etc/denen/ca --broker-host mqtt.example.city
  denen provision broker-config --out deploy/mosquitto-prod --ca-dir /etc/denen/ca
  denen provision enroll --token ENROLL-TOKEN --cloud https://denen.example.city
  denen provision lock pair --serial /dev/ttyUSB0 --id gym-a-1 --config site.toml
  denen provision doctor
"""

STEPS = {
    "ca": "create the deployment's certificate authority and the broker's certificate",
    "enroll": "enroll this Pi with a one-time token from city operations",
    "lock": "pair a lock over serial or BLE: give it its key and set its clock",
    "doctor": "check clock, broker, certificates, devices and disk, and say what to fix",
}


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
        help="install a site: CA, enrollment, lock pairing, diagnostics",
        description="Install a site, one command per step.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    provision.set_defaults(print_group_help=provision.print_help)
    steps = provision.add_subparsers(dest="step", metavar="STEP")
    security_cli.add_steps(steps)
    lock_cli.add_lock_parser(steps)
    for name, text in STEPS.items():
        if name not in security_cli.STEPS and name != "lock":
            steps.add_parser(name, help=text, description=text)
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
    if args.group == "provision":
        step = args.step
        if step is None:
            args.print_group_help()
            return 0
        if step in security_cli.STEPS:
            return security_cli.run(args)
        if step == "lock":
            return lock_cli.run_lock_command(args)
        print(
            f"denen provision {step}: not available in this release yet; "
            "see the README's technician section for the manual steps.",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
