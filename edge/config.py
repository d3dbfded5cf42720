"""The site config: one TOML file per gateway, loaded once by ``main`` and passed in.

Example: see ``SITE_TOML_EXAMPLE`` below (also in the README of the edge agent).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from edge.clinic.staff_access import SHARED_NAME, PinHash, StaffAccessError, staff_name
from edge.errors import ConfigError
from edge.transports.spec import TransportKind, TransportSpec, parse_spec
from protocol.ids import gateway_client_id
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

[[card_readers]]               # kiosk patient-card readers (QR/NFC in serial mode)
id = "clinic-a-kiosk-1"
transport = "serial:/dev/ttyACM0"
baud = 9600
walk_in_department = "internal"  # optional: where a card with no appointment goes
                               #   (default: the site's walk-in department)

[clinic]                       # the check-in desk and the local kiosk and staff pages
host = "0.0.0.0"               # the clinic network; pages work with no internet
port = 8080
reply_timeout_s = 3.0          # then the kiosk says "your number appears here shortly"
screen_hold_s = 60             # a kiosk shows a check-in this long, then "tap your card"
# staff_pin_required = false   # only on a closed network: no PIN, anyone may call patients
tls_cert = "/etc/denen/pages.crt"  # the pages over https only, with a certificate from the
tls_key = "/etc/denen/pages.key"   #   city's CA for the Pi's address; without: plain http

# [clinic.staff]               # each staff member's PIN, as its hash: set them on the Pi with
# tanaka = "$scrypt$…"         #   `denen-agent clinic set-staff-pin tanaka --config site.toml`;
                               #   with nobody here the staff page stays closed

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

[metrics]                      # Prometheus /metrics of the agent
host = "127.0.0.1"             # scraped through an SSH tunnel or a local node exporter
port = 9108
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
    # how long to wait for the broker's CONNACK, SUBACK or PUBACK; it also bounds a connect
    # into a line that drops before CONNACK, which aiomqtt would otherwise wait out
    timeout_s: float = Field(default=10.0, gt=0)
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


class CardReaderConfig(_Section):
    """A kiosk's patient-card reader: one line per card on a serial (or pty) line."""

    id: str = Field(pattern=SLUG_PATTERN)
    transport: str
    baud: int = Field(default=9600, gt=0)
    # where a card with no appointment today goes; None: the site's walk-in department
    walk_in_department: str | None = Field(default=None, pattern=SLUG_PATTERN)

    @field_validator("transport")
    @classmethod
    def _check_transport(cls, value: str) -> str:
        if parse_spec(value).kind not in (TransportKind.SERIAL, TransportKind.PTY):
            raise ValueError(f"{value!r}: a card reader is on a serial line (serial:/dev/…)")
        return value

    @property
    def spec(self) -> TransportSpec:
        return parse_spec(self.transport)


class ClinicConfig(_Section):
    """The clinic desk (check-in, queues while offline) and its pages on the clinic network."""

    host: str = Field(default="0.0.0.0", min_length=1)  # noqa: S104 - served to the clinic LAN
    port: int = Field(default=8080, ge=0, le=65535)  # 0: any free port (tests)
    # how long a kiosk or the staff page waits for the cloud's answer before saying
    # "your number appears here shortly" (the answer still updates the screen later)
    reply_timeout_s: float = Field(default=3.0, gt=0)
    screen_hold_s: float = Field(default=60.0, gt=0)  # then the kiosk asks for the next card
    kiosk_refresh_s: int = Field(default=2, ge=1)  # the kiosk page reloads itself this often
    staff_refresh_s: int = Field(default=15, ge=1)
    housekeeping_s: float = Field(default=30.0, gt=0)  # checks for the end of the day
    reader_reconnect_base_s: float = Field(default=0.5, gt=0)
    reader_reconnect_cap_s: float = Field(default=30.0, gt=0)
    # each staff member's PIN as its scrypt hash, by name (`denen-agent clinic
    # set-staff-pin NAME`); nobody: the staff side is closed, unless staff_pin_required =
    # false opens it to anyone
    staff: dict[str, str] = Field(default_factory=dict)
    # an older site file's one shared PIN: staff member "reception" until replaced
    staff_pin_hash: str | None = None
    staff_pin_required: bool = True
    # the pages over https only, with this certificate (PEM, server auth, the Pi's address
    # as a SAN) and key; unset: plain http, and the agent warns
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @model_validator(mode="after")
    def _tls_pair(self) -> ClinicConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: set both, or neither")
        return self

    @field_validator("staff")
    @classmethod
    def _check_staff(cls, value: dict[str, str]) -> dict[str, str]:
        for name, pin_hash in value.items():
            try:
                folded = staff_name(name)
                PinHash.parse(pin_hash)
            except StaffAccessError as exc:
                raise ValueError(f"{name}: {exc}") from None
            if folded != name:
                raise ValueError(f"{name}: write the staff name in lower case, as {folded}")
        return value

    @field_validator("staff_pin_hash")
    @classmethod
    def _check_pin_hash(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                PinHash.parse(value)
            except StaffAccessError as exc:
                raise ValueError(str(exc)) from None
        return value

    @property
    def staff_pins(self) -> dict[str, PinHash]:
        """Each staff member's PIN hash by name, the shared old one as "reception" unless
        [clinic.staff] has a reception of its own."""
        pins = {name: PinHash.parse(text) for name, text in self.staff.items()}
        if self.staff_pin_hash is not None:
            pins.setdefault(SHARED_NAME, PinHash.parse(self.staff_pin_hash))
        return pins

    @property
    def shared_pin_left(self) -> bool:
        """An old shared staff PIN still serves as "reception": set per-staff PINs."""
        return self.staff_pin_hash is not None and SHARED_NAME not in self.staff


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


class MetricsConfig(_Section):
    """The agent's Prometheus ``/metrics`` listener (every agent, gym or clinic)."""

    enabled: bool = True
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=9108, ge=0, le=65535)  # 0: any free port (tests)


class SiteConfig(_Section):
    """Everything one gateway needs to run its site."""

    site: str = Field(pattern=SLUG_PATTERN)
    gateway: str = Field(pattern=SLUG_PATTERN)
    state_dir: Path
    mqtt: MqttConfig
    locks: list[LockConfig] = Field(default_factory=list)
    displays: list[DisplayConfig] = Field(default_factory=list)
    card_readers: list[CardReaderConfig] = Field(default_factory=list)
    clinic: ClinicConfig | None = None  # None: not a clinic (set by [clinic] or card readers)
    display_link: DisplayLinkConfig = Field(default_factory=DisplayLinkConfig)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    lock_link: LockLinkConfig = Field(default_factory=LockLinkConfig)
    ble: BleConfig = Field(default_factory=BleConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)

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

    @field_validator("card_readers")
    @classmethod
    def _unique_reader_ids(cls, readers: list[CardReaderConfig]) -> list[CardReaderConfig]:
        seen: set[str] = set()
        for reader in readers:
            if reader.id in seen:
                raise ValueError(f"card reader id {reader.id!r} appears twice")
            seen.add(reader.id)
        return readers

    @model_validator(mode="before")
    @classmethod
    def _readers_make_a_clinic(cls, raw: Any) -> Any:
        # a kiosk reader needs the desk behind it: [clinic] with its defaults
        if isinstance(raw, dict) and raw.get("card_readers") and raw.get("clinic") is None:
            return {**raw, "clinic": {}}
        return raw

    @property
    def has_ble_locks(self) -> bool:
        """Whether any lock is on BLE (the radio is opened only then)."""
        return any(lock.spec.kind is TransportKind.BLE for lock in self.locks)

    @property
    def client_id(self) -> str:
        """The MQTT client id, fixed per gateway so the broker keeps its session."""
        return gateway_client_id(self.site, self.gateway)


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
