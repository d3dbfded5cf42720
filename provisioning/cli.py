"""``denen``: the technician's command line.

The sub-command groups exist now; the provisioning steps (CA, enrollment, lock pairing,
doctor) are filled in by the provisioning-and-security work and print their help until then.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import metadata

EPILOG = """\
examples:
  denen provision ca init --out /etc/denen/ca
  denen provision enroll --token ENROLL-TOKEN
  denen provision lock pair --serial /dev/ttyUSB0
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
    for name, text in STEPS.items():
        steps.add_parser(name, help=text, description=text)
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
    if args.group == "provision":
        step = args.step
        if step is None:
            args.print_group_help()
            return 0
        print(
            f"denen provision {step}: not available in this release yet; "
            "see the README's technician section for the manual steps.",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
