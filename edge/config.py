"""The site config: one TOML file per gateway, loaded once by ``main`` and passed in.

Example: see ``SITE_TOML_EXAMPLE`` below (also in the README of the edge agent).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edge.errors import ConfigError
from edge.transports.spec import TransportKind, TransportSpec, parse_spec
from protocol.messages import SLUG_PATTERN

SITE_TOML_EXAMPLE = """\
site = "gym-a"
gateway = "gw-1"
state_dir = "/var/lib/denen-agent"

[mqtt]
host = "mqtt.example.city"
port = 8883
keepalive = 60
session_expiry_s = 604800      # 7 days: the broker queues access updates that long
reconnect_base_s = 0.5
reconnect_cap_s = 30

[mqtt.tls]
ca = "/etc/denen/ca.crt"
cert = "/etc/denen/gw-1.crt"
key = "/etc/denen/gw-1.key"

[[locks]]
id = "gym-a-1"
transport = "serial:/dev/ttyUSB0"

[sync]
full_sync_interval_s = 43200   # 12 hours
event_poll_s = 30              # fallback when a WAKE frame is missed

[lock_link]
request_timeout_s = 1.0
retries = 3
reconnect_base_s = 1.0
reconnect_cap_s = 60

[telemetry]
interval_s = 60
"""


class _Section(BaseModel):
    # typos in a site file must fail loudly, not fall back to a default
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsConfig(_Section):
    """Client TLS material (modelled; the agent connects in plain TCP until enrollment lands)."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None


class MqttConfig(_Section):
    host: str = Field(min_length=1)
    port: int = Field(default=1883, ge=1, le=65535)
    keepalive: int = Field(default=60, ge=5, le=65535)
    session_expiry_s: int = Field(default=7 * 24 * 3600, ge=0, le=2**32 - 1)
    reconnect_base_s: float = Field(default=0.5, gt=0)
    reconnect_cap_s: float = Field(default=30.0, gt=0)
    tls: TlsConfig | None = None


class LockConfig(_Section):
    id: str = Field(pattern=SLUG_PATTERN)
    transport: str

    @field_validator("transport")
    @classmethod
    def _check_transport(cls, value: str) -> str:
        spec = parse_spec(value)
        if spec.kind is TransportKind.BLE:
            raise ValueError("ble transport is not supported yet; use serial:/dev/…")
        return value

    @property
    def spec(self) -> TransportSpec:
        return parse_spec(self.transport)


class SyncConfig(_Section):
    full_sync_interval_s: float = Field(default=43200, gt=0)
    event_poll_s: float = Field(default=30, gt=0)


class LockLinkConfig(_Section):
    request_timeout_s: float = Field(default=1.0, gt=0)
    retries: int = Field(default=3, ge=1, le=20)
    reconnect_base_s: float = Field(default=1.0, gt=0)
    reconnect_cap_s: float = Field(default=60.0, gt=0)


class TelemetryConfig(_Section):
    interval_s: float = Field(default=60, gt=0)


class SiteConfig(_Section):
    """Everything one gateway needs to run its site."""

    site: str = Field(pattern=SLUG_PATTERN)
    gateway: str = Field(pattern=SLUG_PATTERN)
    state_dir: Path
    mqtt: MqttConfig
    locks: list[LockConfig] = Field(default_factory=list)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    lock_link: LockLinkConfig = Field(default_factory=LockLinkConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)

    @field_validator("locks")
    @classmethod
    def _unique_ids(cls, locks: list[LockConfig]) -> list[LockConfig]:
        seen: set[str] = set()
        for lock in locks:
            if lock.id in seen:
                raise ValueError(f"lock id {lock.id!r} appears twice")
            seen.add(lock.id)
        return locks

    @property
    def client_id(self) -> str:
        """The MQTT client id, fixed per gateway so the broker keeps its session."""
        return f"{self.site}-{self.gateway}"


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_config(raw: dict[str, Any], *, source: str = "site.toml") -> SiteConfig:
    """Validate a parsed TOML document; errors read ``site.toml: locks[0].transport: …``."""
    try:
        return SiteConfig.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_input=False, include_url=False):
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{source}: {_where(err['loc'])}: {msg}")
        raise ConfigError("\n".join(lines)) from None


def load_config(path: str | Path) -> SiteConfig:
    """Read and validate a site TOML file; raise :class:`ConfigError` saying where."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        raw = tomllib.loads(text.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path.name}: not valid TOML: {exc}") from exc
    return parse_config(raw, source=path.name)
