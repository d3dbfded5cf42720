"""Fixtures shared by every layer of tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mosquitto import Mosquitto, running_mosquitto
from tests.support.secure_broker import SecureBroker, running_secure_broker

POSTGRES_URL = os.environ.get(
    "DENEN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private broker (anonymous, persistent) on a free port."""
    with running_mosquitto(tmp_path / "broker") as broker:
        yield broker


@pytest.fixture
def secure_broker(tmp_path: Path) -> Iterator[SecureBroker]:
    """A broker with the production config: mutual TLS, per-gateway ACL, CRL.

    Gateways gym-a/gw-1 and gym-b/gw-1 are in its ACL; mint their certificates with
    ``secure_broker.gateway(site, gw)``.
    """
    with running_secure_broker(tmp_path / "secure") as broker:
        yield broker
