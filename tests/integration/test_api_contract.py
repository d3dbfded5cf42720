"""The OpenAPI schema is a contract city IT can generate clients from: schemathesis, with
all its checks, against the real ``denen-cloud serve``, finds no server error, no status
code the schema does not declare and no answer that breaks its declared body.

A short run (a few examples per operation and phase, a few thousand requests); the long
one is ``.venv/bin/python scripts/fuzz_api.py`` (see docs/security.md for its figures)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fuzz_api.py"


@pytest.mark.timeout(900)
def test_schemathesis_finds_nothing_the_schema_does_not_declare() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--max-examples", "2"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-30_000:] + done.stderr[-5_000:]
    # every role's run (and the anonymous one) tested something
    runs = [line.split() for line in done.stdout.splitlines() if line.endswith(" ok")]
    assert {run[0] for run in runs} == {"manager", "ops", "clinic", "anonymous"}
    assert all(int(run[1]) > 100 for run in runs), done.stdout
