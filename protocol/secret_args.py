"""Secrets on command lines: taken from a file or standard input, refused as arguments.

An argument is seen by every user of the machine (``ps``, ``/proc/PID/cmdline``) and kept
in shell history. So a command that needs a key or a token reads it from ``--X-file PATH``
(``-``: the first line of standard input), and the old ``--X VALUE`` form is still parsed,
only to stop with a message saying how to pass it instead. Shared by ``denen-cloud`` and
``denen provision``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from protocol.errors import LocalProtocolError

STDIN = "-"


class SecretInputError(LocalProtocolError):
    """A secret's file could not be read or was empty; the message says what to do."""


class _RefuseOnCommandLine(argparse.Action):
    """``--X VALUE``: stop with how to pass the secret (``--X -`` may stand for
    ``--X-file -``, where that was the old way to say standard input)."""

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str,
        *,
        what: str,
        instead: str,
        file_dest: str,
        dash_means_stdin: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.what = what
        self.instead = instead
        self.file_dest = file_dest
        self.dash_means_stdin = dash_means_stdin

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        if self.dash_means_stdin and values == STDIN:
            setattr(namespace, self.file_dest, STDIN)
            return
        article = "an" if self.what[0] in "aeiou" else "a"
        parser.error(
            f"{option_string}: {article} {self.what} on the command line is seen by every user of "
            "this machine (ps) and stays in the shell history, so it is refused. Put it in "
            f"a file only you can read and pass {self.instead} PATH, or pipe it in with "
            f"{self.instead} -"
        )


def add_secret_file(
    parser: argparse.ArgumentParser,
    flag: str,
    *,
    what: str,
    help: str,
    required: bool = False,
    dash_means_stdin: bool = False,
) -> None:
    """Add ``{flag}-file PATH`` (``-``: standard input) for a secret, and ``flag`` itself
    only to refuse a value given on the command line. Both fill ``{flag}_file``."""
    file_flag = f"{flag}-file"
    dest = file_flag.lstrip("-").replace("-", "_")
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument(
        file_flag, dest=dest, metavar="PATH", help=f"{help} (a file, or - for stdin)"
    )
    group.add_argument(
        flag,
        dest=f"_{dest}_refused",
        action=_RefuseOnCommandLine,
        what=what,
        instead=file_flag,
        file_dest=dest,
        dash_means_stdin=dash_means_stdin,
        help=f"same as {file_flag} -" if dash_means_stdin else argparse.SUPPRESS,
        metavar="-" if dash_means_stdin else None,
    )


def read_secret(source: str, what: str) -> str:
    """The secret in file ``source`` (``-``: the first line of standard input), stripped."""
    if source == STDIN:
        text = sys.stdin.readline().strip()
        where = "standard input"
    else:
        try:
            text = Path(source).read_text().strip()
        except OSError as exc:
            raise SecretInputError(
                f"the {what} file {source} cannot be read ({exc.strerror}): give the path of "
                "a file holding it, or - and pipe it in"
            ) from None
        where = source
    if not text:
        raise SecretInputError(f"no {what} in {where}: it holds nothing")
    return text
