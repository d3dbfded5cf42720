"""``denen-agent clinic set-staff-pin --config site.toml``: set the clinic staff page's PIN.

Asks for the PIN twice (or reads one line with ``--pin-stdin``), hashes it with scrypt and
writes ``staff_pin_hash = "…"`` into the ``[clinic]`` table of the site file, leaving every
other line as it was; then the agent must be restarted. Only the hash is written, never the
PIN, and neither is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import re
import stat
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

from edge.clinic.staff_access import PinHash, StaffAccessError, check_pin_format
from edge.config import parse_config
from edge.errors import ConfigError

EXIT_BAD_PIN = 1
EXIT_BAD_CONFIG = 2

_HEADER = re.compile(r"\s*\[")
_CLINIC = re.compile(r"\s*\[\s*clinic\s*\]\s*(#.*)?")
_HASH_LINE = re.compile(r"\s*staff_pin_hash\s*=")


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``clinic set-staff-pin`` under ``denen-agent``."""
    clinic = subparsers.add_parser("clinic", help="the clinic desk's settings on this agent")
    commands = clinic.add_subparsers(dest="clinic_command", required=True)
    pin = commands.add_parser(
        "set-staff-pin",
        help="set the PIN of the staff page (6 to 12 digits); restart the agent afterwards",
        description="Set the PIN of the clinic agent's staff page. Only its scrypt hash is "
        "written into [clinic] staff_pin_hash of the site file; restart the agent afterwards.",
    )
    pin.add_argument("--config", required=True, help="path to the site TOML file")
    pin.add_argument(
        "--pin-stdin",
        action="store_true",
        help="read the PIN from the first line of standard input instead of asking twice",
    )


def run(args: argparse.Namespace, *, ask: Callable[[str], str] = getpass.getpass) -> int:
    """Run ``denen-agent clinic …``; the exit status."""
    path = Path(args.config)
    try:
        pin = sys.stdin.readline().strip() if args.pin_stdin else _ask_twice(ask)
        check_pin_format(pin)
    except StaffAccessError as exc:
        print(f"denen-agent: {exc}", file=sys.stderr)
        return EXIT_BAD_PIN
    try:
        set_staff_pin(path, PinHash.make(pin))
    except ConfigError as exc:
        print(f"denen-agent: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    print(f"Staff PIN set in {path} ([clinic] staff_pin_hash).")
    print("Restart the agent to use it: sudo systemctl restart denen-agent")
    if path.stat().st_mode & stat.S_IROTH:
        print(
            f"Note: {path} is readable by every user of this machine; a short PIN can be "
            "guessed from its hash offline. Let only root and the agent's user read it."
        )
    return 0


def _ask_twice(ask: Callable[[str], str]) -> str:
    pin = ask("New staff PIN (6 to 12 digits): ").strip()
    check_pin_format(pin)
    if ask("The same PIN again: ").strip() != pin:
        raise StaffAccessError("the two PINs differ; nothing was changed")
    return pin


def with_pin_hash(text: str, pin_hash: PinHash) -> str:
    """``text`` (a site file) with ``staff_pin_hash`` set in its ``[clinic]`` table: the
    line replaced if there is one, else added under ``[clinic]``, else a ``[clinic]`` table
    appended. Every other line stays as it was."""
    line = f'staff_pin_hash = "{pin_hash}"'
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    start = next((i for i, text in enumerate(lines) if _CLINIC.fullmatch(text.rstrip())), None)
    if start is None:
        ending = "" if not text or text.endswith("\n") else newline
        return f"{text}{ending}{newline}[clinic]{newline}{line}{newline}"
    end = next((i for i in range(start + 1, len(lines)) if _HEADER.match(lines[i])), len(lines))
    for i in range(start + 1, end):
        if _HASH_LINE.match(lines[i]):
            lines[i] = line + newline
            return "".join(lines)
    lines.insert(start + 1, line + newline)
    return "".join(lines)


def set_staff_pin(path: Path, pin_hash: PinHash) -> None:
    """Write ``pin_hash`` into the site file at ``path``, atomically, keeping its mode; raise
    :class:`ConfigError` (saying what to add by hand) when the file cannot take it."""
    try:
        text = path.read_text()
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        current = parse_config(tomllib.loads(text), source=path.name)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name}: not valid TOML: {exc}") from exc
    if current.clinic is None:
        raise ConfigError(
            f"{path}: not a clinic's site file (no [clinic] table and no card readers)"
        )
    updated = with_pin_hash(text, pin_hash)
    by_hand = f'add staff_pin_hash = "{pin_hash}" under [clinic] in {path} by hand'
    try:
        clinic = parse_config(tomllib.loads(updated), source=path.name).clinic
    except (tomllib.TOMLDecodeError, ConfigError) as exc:
        raise ConfigError(f"{path}: cannot set the PIN here ({exc}); {by_hand}") from None
    if clinic is None or clinic.staff_pin_hash != str(pin_hash):
        raise ConfigError(
            f"{path}: the [clinic] table is written in a way this command cannot edit; {by_hand}"
        )
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w") as fh:
            fh.write(updated)
            fh.flush()
            os.fsync(fh.fileno())
        owner = path.stat()
        with contextlib.suppress(PermissionError):  # only root can keep another's ownership
            os.chown(tmp, owner.st_uid, owner.st_gid)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"{path}: cannot write: {exc.strerror or exc}") from exc
