"""``denen-agent clinic …``: the clinic staff page's people, each with their own PIN.

- ``set-staff-pin NAME --config site.toml`` asks for the PIN twice (or reads one line with
  ``--pin-stdin``; never an argument, which ``ps`` and the shell history would show),
  hashes it with scrypt and writes ``NAME = "…"`` into the ``[clinic.staff]`` table.
- ``remove-staff NAME --config site.toml`` takes the line out: that PIN opens nothing.
- ``list-staff --config site.toml`` prints the names (never a hash).

Every other line of the site file stays as it was; the agent must be restarted afterwards.
An older site file's one shared ``staff_pin_hash`` is staff member ``reception``:
``set-staff-pin reception`` replaces it and ``remove-staff reception`` removes it.
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

from edge.clinic.staff_access import (
    SHARED_NAME,
    PinHash,
    StaffAccessError,
    check_pin_format,
    staff_name,
)
from edge.config import ClinicConfig, parse_config
from edge.errors import ConfigError

EXIT_BAD_PIN = 1
EXIT_BAD_CONFIG = 2
RESTART = "Restart the agent to use it: sudo systemctl restart denen-agent"

_HEADER = re.compile(r"\s*\[")
_CLINIC = re.compile(r"\s*\[\s*clinic\s*\]\s*(#.*)?")
_STAFF = re.compile(r"\s*\[\s*clinic\s*\.\s*staff\s*\]\s*(#.*)?")
_SHARED_LINE = re.compile(r"\s*staff_pin_hash\s*=")


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``clinic set-staff-pin|remove-staff|list-staff`` under ``denen-agent``."""
    clinic = subparsers.add_parser("clinic", help="the clinic desk's settings on this agent")
    commands = clinic.add_subparsers(dest="clinic_command", required=True)
    pin = commands.add_parser(
        "set-staff-pin",
        help="set one staff member's PIN for the staff page (6 to 12 digits)",
        description="Set the PIN a staff member logs in to the clinic agent's staff page "
        "with. Only its scrypt hash is written, into [clinic.staff] of the site file; "
        "restart the agent afterwards.",
    )
    pin.add_argument("name", help="the staff member's name or number, e.g. tanaka or s-0012")
    pin.add_argument("--config", required=True, help="path to the site TOML file")
    pin.add_argument(
        "--pin-stdin",
        action="store_true",
        help="read the PIN from the first line of standard input instead of asking twice",
    )
    remove = commands.add_parser(
        "remove-staff",
        help="remove a staff member: their PIN opens the staff page no more",
        description="Remove a staff member's PIN from [clinic.staff] of the site file "
        "(`reception` also removes an old shared staff_pin_hash); restart the agent.",
    )
    remove.add_argument("name", help="the staff member's name or number")
    remove.add_argument("--config", required=True, help="path to the site TOML file")
    listing = commands.add_parser(
        "list-staff", help="the names that may log in to the staff page (never their PINs)"
    )
    listing.add_argument("--config", required=True, help="path to the site TOML file")


def run(args: argparse.Namespace, *, ask: Callable[[str], str] = getpass.getpass) -> int:
    """Run ``denen-agent clinic …``; the exit status."""
    path = Path(args.config)
    try:
        if args.clinic_command == "list-staff":
            return _list(path)
        name = staff_name(args.name)
        if args.clinic_command == "remove-staff":
            return _remove(path, name)
        pin = sys.stdin.readline().strip() if args.pin_stdin else _ask_twice(ask)
        check_pin_format(pin)
    except StaffAccessError as exc:
        print(f"denen-agent: {exc}", file=sys.stderr)
        return EXIT_BAD_PIN
    except ConfigError as exc:
        print(f"denen-agent: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    try:
        write_staff(path, name, PinHash.make(pin))
    except ConfigError as exc:
        print(f"denen-agent: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    print(f"Staff PIN of {name} set in {path} ([clinic.staff] {name}).")
    print(RESTART)
    if path.stat().st_mode & stat.S_IROTH:
        print(
            f"Note: {path} is readable by every user of this machine; a short PIN can be "
            "guessed from its hash offline. Let only root and the agent's user read it."
        )
    return 0


def _list(path: Path) -> int:
    clinic = _clinic(path, _read(path)[0])
    for name in sorted(clinic.staff_pins):
        shared = " (the old shared PIN: give each person their own)"
        print(name + (shared if name == SHARED_NAME and clinic.shared_pin_left else ""))
    if not clinic.staff_pins:
        print(f"Nobody: the staff page is closed. Add someone: {_set_command(path)}")
    return 0


def _remove(path: Path, name: str) -> int:
    text = _read(path)[0]
    if name not in _clinic(path, text).staff_pins:
        raise ConfigError(f"{path}: no staff member {name!r}; see `list-staff`")
    write_staff(path, name, None)
    print(f"Removed staff member {name} from {path}. {RESTART}")
    return 0


def _set_command(path: Path) -> str:
    return f"denen-agent clinic set-staff-pin NAME --config {path}"


def _ask_twice(ask: Callable[[str], str]) -> str:
    pin = ask("New staff PIN (6 to 12 digits): ").strip()
    check_pin_format(pin)
    if ask("The same PIN again: ").strip() != pin:
        raise StaffAccessError("the two PINs differ; nothing was changed")
    return pin


def with_staff(text: str, name: str, pin_hash: PinHash | None) -> str:
    """``text`` (a site file) with ``name = "<hash>"`` set in its ``[clinic.staff]`` table
    (the line replaced if there is one, else added under the header, else the table
    appended), or with that line taken out when ``pin_hash`` is None. For
    :data:`SHARED_NAME` the old shared ``staff_pin_hash`` line goes too. Every other line
    stays as it was."""
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    if name == SHARED_NAME:
        lines = _without(lines, _CLINIC, _SHARED_LINE)
    lines = _without(lines, _STAFF, re.compile(rf"\s*{re.escape(name)}\s*="))
    if pin_hash is None:
        return "".join(lines)
    line = f'{name} = "{pin_hash}"{newline}'
    start = _table(lines, _STAFF)
    if start is None:
        text = "".join(lines)
        ending = "" if not text or text.endswith("\n") else newline
        return f"{text}{ending}{newline}[clinic.staff]{newline}{line}"
    lines.insert(start + 1, line)
    return "".join(lines)


def _table(lines: list[str], header: re.Pattern[str]) -> int | None:
    return next((i for i, text in enumerate(lines) if header.fullmatch(text.rstrip())), None)


def _without(lines: list[str], header: re.Pattern[str], key: re.Pattern[str]) -> list[str]:
    """``lines`` less the ``key = …`` lines of the table under ``header``."""
    start = _table(lines, header)
    if start is None:
        return lines
    end = next((i for i in range(start + 1, len(lines)) if _HEADER.match(lines[i])), len(lines))
    return (
        lines[: start + 1] + [t for t in lines[start + 1 : end] if not key.match(t)] + lines[end:]
    )


def _read(path: Path) -> tuple[str, int]:
    try:
        return path.read_text(), stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _clinic(path: Path, text: str) -> ClinicConfig:
    try:
        clinic = parse_config(tomllib.loads(text), source=path.name).clinic
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name}: not valid TOML: {exc}") from exc
    if clinic is None:
        raise ConfigError(
            f"{path}: not a clinic's site file (no [clinic] table and no card readers)"
        )
    return clinic


def write_staff(path: Path, name: str, pin_hash: PinHash | None) -> None:
    """Set (or with None remove) ``name``'s PIN hash in the site file at ``path``,
    atomically, keeping its mode; raise :class:`ConfigError` (saying what to do by hand)
    when the file cannot take it."""
    text, mode = _read(path)
    _clinic(path, text)
    updated = with_staff(text, name, pin_hash)
    by_hand = (
        f"remove {name} from [clinic.staff] in {path} by hand"
        if pin_hash is None
        else f'add {name} = "{pin_hash}" under [clinic.staff] in {path} by hand'
    )
    try:
        clinic = _clinic(path, updated)
    except ConfigError as exc:
        raise ConfigError(f"{path}: cannot change staff here ({exc}); {by_hand}") from None
    now = clinic.staff_pins.get(name)
    if (pin_hash is None and now is not None) or (pin_hash is not None and now != pin_hash):
        raise ConfigError(
            f"{path}: the staff table is written in a way this command cannot edit; {by_hand}"
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
