"""Identifiers fixed where a thing is born."""

from __future__ import annotations

import os
import re
import time
import uuid

# No anchors: check with ``SLUG_RE.fullmatch`` (``match`` with ``$`` lets "gym-a\n" through)
SLUG_RE = re.compile(r"[a-z0-9-]{1,40}")


def uuid7(epoch_ms: int | None = None) -> str:
    """A time-ordered UUIDv7 (RFC 9562) as a string; sorts by creation time."""
    ms = int(time.time() * 1000) if epoch_ms is None else epoch_ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


def gateway_client_id(site: str, gateway: str) -> str:
    """A gateway's MQTT client id, fixed so the broker keeps its session (the cloud uses it
    to close a revoked gateway's connection: the broker allows one connection per id)."""
    return f"{site}-{gateway}"


def is_slug(value: str) -> bool:
    """Site, gateway and device ids are slugs ``[a-z0-9-]{1,40}``."""
    return SLUG_RE.fullmatch(value) is not None
