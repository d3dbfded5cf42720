"""``denen provision doctor``: run every check and print what to fix."""

from __future__ import annotations

import argparse
import asyncio
import sys

from edge.config import load_config
from edge.errors import ConfigError
from protocol.clock import SystemClock
from provisioning.doctor import Severity, run_checks

DEFAULT_CONFIG = "/etc/denen/site.toml"
EPILOG = """\
example:
  denen provision doctor --config /etc/denen/site.toml

checks the Pi's clock (a Pi without an RTC can boot in 1970), disk space for the outbox,
the broker connection and certificate expiry, and asks each lock for its model and
battery. Exit status 0 when nothing failed, 1 otherwise.
"""


def add_doctor_parser(steps: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``doctor`` to ``denen provision``."""
    doctor = steps.add_parser(
        "doctor",
        help="check clock, broker, certificates, devices and disk, and say what to fix",
        description="Check this gateway and say what to fix.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    doctor.add_argument("--config", default=DEFAULT_CONFIG, help="the site's TOML file")


def run_doctor(args: argparse.Namespace) -> int:
    """Print one line per check (and a fix under each problem); 1 when any failed."""
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"doctor: {exc}", file=sys.stderr)
        print("fix: enroll this Pi first: denen provision enroll --token-file - --cloud URL")
        return 1
    findings = asyncio.run(
        run_checks(config, SystemClock(), progress=lambda text: print(text, flush=True))
    )
    for finding in findings:
        print(finding.render())
    failed = sum(f.severity is Severity.FAIL for f in findings)
    warned = sum(f.severity is Severity.WARN for f in findings)
    print(f"\n{failed} failed, {warned} to look at, {len(findings) - failed - warned} fine")
    return 1 if failed else 0
