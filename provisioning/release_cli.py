"""``denen release``: the release manager's key pair and signed firmware images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from protocol.errors import DenenError
from provisioning import release

RAW = argparse.RawDescriptionHelpFormatter
EPILOG = """\
examples:
  denen release keygen --out ~/denen-release
  denen release sign --key ~/denen-release/release.key --kind lock --model RL-2000 \\
      --version 1.4.2 --payload build/rl2000.bin --out rl2000-1.4.2.dnfw

keep release.key offline (0600); devices trust release.pub (the simulators take it with
`denen-sim lock --release-key release.pub`). A device installs only a newer version of its
own kind and model, signed by a key it trusts.
"""


def add_release_parser(groups: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``denen release keygen`` and ``denen release sign``."""
    parser = groups.add_parser(
        "release",
        help="sign firmware images for locks and displays",
        description="The release key pair and signed firmware images.",
        epilog=EPILOG,
        formatter_class=RAW,
    )
    parser.set_defaults(print_group_help=parser.print_help)
    commands = parser.add_subparsers(dest="release_command", metavar="COMMAND")
    keygen = commands.add_parser(
        "keygen",
        help="make an Ed25519 release key pair",
        description="Write release.key (private, 0600) and release.pub into --out.",
        epilog=EPILOG,
        formatter_class=RAW,
    )
    keygen.add_argument("--out", type=Path, required=True, help="directory (made 0700)")
    keygen.add_argument("--force", action="store_true", help="replace an existing key pair")
    sign = commands.add_parser(
        "sign",
        help="sign a firmware payload into an image",
        description="Sign a payload as one device model's firmware version.",
        epilog=EPILOG,
        formatter_class=RAW,
    )
    sign.add_argument("--key", type=Path, required=True, help="release.key")
    sign.add_argument("--kind", required=True, choices=("lock", "display"))
    sign.add_argument("--model", required=True, help="the device model, as INFO reports it")
    sign.add_argument("--version", required=True, help="MAJOR.MINOR.PATCH, e.g. 1.4.2")
    sign.add_argument("--payload", type=Path, required=True, help="the firmware binary")
    sign.add_argument("--out", type=Path, required=True, help="the signed image to write")


def run(args: argparse.Namespace) -> int:
    """Run ``denen release COMMAND``; errors are one line on stderr and exit status 1."""
    if args.release_command is None:
        args.print_group_help()
        return 0
    try:
        if args.release_command == "keygen":
            files = release.keygen(args.out, force=args.force)
            print(f"wrote {files.private} (keep it offline) and {files.public}")
            print(f"key id {files.key_id}")
            return 0
        image = release.sign_release(
            args.key,
            kind=args.kind,
            model=args.model,
            version=args.version,
            payload_path=args.payload,
            out=args.out,
        )
    except (DenenError, OSError) as exc:
        print(f"denen release {args.release_command}: {exc}", file=sys.stderr)
        return 1
    h = image.header
    print(
        f"signed {h.describe()}: {h.payload_len} payload bytes, sha256 {h.sha256.hex()}, "
        f"key id {h.key_id.hex()} -> {args.out}"
    )
    return 0
