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
from protocol.lock_gatt import is_ble_address
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

[[locks]]
id = "gym-a-2"
transport = "ble:F0:F0:F0:F0:F0:02"   # its address: `denen provision lock scan`

[[displays]]                   # call-number displays, on a serial line
id = "clinic-a-disp-1"
transport = "serial:/dev/ttyUSB1"

[ble]                          # the radio every ble: lock goes through
hci = "bleak"                  # BlueZ on the Pi; or a bumble HCI transport spec:
                               #   "usb:0" (a USB dongle), "tcp-client:127.0.0.1:9100"
                               #   (`denen-sim ble-hub --port 9100`, CI and the demo)
# own_address = "C2:11:22:33:44:55"  # bumble only; default: a random static address
                               #   made once and kept in state_dir/ble/ with the bonds
connect_timeout_s = 10

[sync]
full_sync_interval_s = 43200   # 12 hours
jitter_s = 900                 # each scheduled sync up to 15 min late: no fleet stampede
awake_s = 10                   # a lock stays listening this long after a sync or a wake
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
        parse_spec(value)
        return value

    @property
    def spec(self) -> TransportSpec:
        return parse_spec(self.transport)


class DisplayConfig(_Section):
    """A call-number display: a slug id and a serial (or pty) transport spec."""

    id: str = Field(pattern=SLUG_PATTERN)
    transport: str

    @field_validator("transport")
    @classmethod
    def _check_transport(cls, value: str) -> str:
        if parse_spec(value).kind not in (TransportKind.SERIAL, TransportKind.PTY):
            raise ValueError(f"{value!r}: a display is on a serial line (serial:/dev/…)")
        return value

    @property
    def spec(self) -> TransportSpec:
        return parse_spec(self.transport)


class BleConfig(_Section):
    """The gateway's BLE radio: ``hci = "bleak"`` (BlueZ) or a bumble transport spec."""

    hci: str = Field(default="bleak", min_length=1)
    own_address: str | None = None
    connect_timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("hci")
    @classmethod
    def _check_hci(cls, value: str) -> str:
        if value != "bleak" and ":" not in value:
            raise ValueError(
                f'{value!r} is neither "bleak" nor a bumble transport spec '
                'such as "usb:0" or "tcp-client:127.0.0.1:9100"'
            )
        return value

    @field_validator("own_address")
    @classmethod
    def _check_address(cls, value: str | None) -> str | None:
        if value is not None and not is_ble_address(value):
            raise ValueError(f"own_address {value!r} is not AA:BB:CC:DD:EE:FF")
        return value


class SyncConfig(_Section):
    """When locks are loaded: see :mod:`edge.sync_policy` and :mod:`edge.sync_schedule`."""

    full_sync_interval_s: float = Field(default=43200, gt=0)
    # random delay added to each scheduled sync, so a city's locks do not sync at once
    jitter_s: float = Field(default=900, ge=0)
    # after a sync or a keypad wake the lock keeps its radio on this long; a change that
    # arrives meanwhile is loaded at once, since it costs no extra wake
    awake_s: float = Field(default=10, ge=0)
    event_poll_s: float = Field(default=30, gt=0)


class LockLinkConfig(_Section):
    request_timeout_s: float = Field(default=1.0, gt=0)
    retries: int = Field(default=3, ge=1, le=20)
    reconnect_base_s: float = Field(default=1.0, gt=0)
    reconnect_cap_s: float = Field(default=60.0, gt=0)


class DisplayLinkConfig(_Section):
    request_timeout_s: float = Field(default=0.5, gt=0)
    retries: int = Field(default=3, ge=1, le=20)
    reconnect_base_s: float = Field(default=0.5, gt=0)
    reconnect_cap_s: float = Field(default=30.0, gt=0)


class TelemetryConfig(_Section):
    interval_s: float = Field(default=60, gt=0)


class SiteConfig(_Section):
    """Everything one gateway needs to run its site."""

    site: str = Field(pattern=SLUG_PATTERN)
    gateway: str = Field(pattern=SLUG_PATTERN)
    state_dir: Path
    mqtt: MqttConfig
    locks: list[LockConfig] = Field(default_factory=list)
    displays: list[DisplayConfig] = Field(default_factory=list)
    display_link: DisplayLinkConfig = Field(default_factory=DisplayLinkConfig)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    lock_link: LockLinkConfig = Field(default_factory=LockLinkConfig)
    ble: BleConfig = Field(default_factory=BleConfig)
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

    @field_validator("displays")
    @classmethod
    def _unique_display_ids(cls, displays: list[DisplayConfig]) -> list[DisplayConfig]:
        seen: set[str] = set()
        for display in displays:
            if display.id in seen:
                raise ValueError(f"display id {display.id!r} appears twice")
            seen.add(display.id)
        return displays

    @property
    def has_ble_locks(self) -> bool:
        """Whether any lock is on BLE (the radio is opened only then)."""
        return any(lock.spec.kind is TransportKind.BLE for lock in self.locks)

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
