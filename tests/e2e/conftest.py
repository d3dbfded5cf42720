"""The whole stack as separate processes, in a temp dir: broker, cloud, lock, agent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioning.local_stack import LocalStack
from tests.support.stack import running_stack


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    with running_stack(tmp_path / "stack") as running:
        yield running
