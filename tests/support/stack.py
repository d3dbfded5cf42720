"""The whole stack as separate processes in a temp dir (broker, cloud, lock, agent), for
the end-to-end and the browser tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from provisioning.broker import free_port
from provisioning.local_stack import LocalStack


@contextlib.contextmanager
def running_stack(workdir: Path, *, clinic: bool = False) -> Iterator[LocalStack]:
    """A started :class:`LocalStack` on free ports (with the clinic when asked); prints each
    part's log afterwards (pytest shows it when the test failed)."""
    running = LocalStack(workdir, http_port=free_port(), sim_port=free_port(), clinic=clinic)
    with running:
        yield running
    for service in running.services.values():
        print(f"--- {service.name} log ---\n{service.log_text()[-3000:]}")
