"""Fixtures shared by every layer of tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mosquitto import Mosquitto, running_mosquitto

POSTGRES_URL = os.environ.get(
    "DENEN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private broker (anonymous, persistent) on a free port."""
    with running_mosquitto(tmp_path / "broker") as broker:
        yield broker
