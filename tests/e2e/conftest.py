"""The whole stack as separate processes, in a temp dir: broker, cloud, lock, agent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioning.broker import free_port
from provisioning.local_stack import LocalStack


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    running = LocalStack(tmp_path / "stack", http_port=free_port(), sim_port=free_port())
    with running:
        yield running
    # show what each part said when a test failed
    for service in running.services.values():
        print(f"--- {service.name} log ---\n{service.log_text()[-3000:]}")
