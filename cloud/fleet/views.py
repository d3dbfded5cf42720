"""What the fleet services hand back: frozen values, safe after the session closed, and
serialised as they are by the JSON API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class DepartmentView:
    slug: str
    name: str
    members: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HealthCounts:
    ok: int = 0
    warning: int = 0
    critical: int = 0
    offline: int = 0


@dataclass(frozen=True, slots=True)
class SiteSummary:
    """A site at a glance: ``status`` is ``offline`` (a gateway is away), ``critical``,
    ``warning`` (open alerts of that severity), ``ok``, or ``unknown`` (no gateway yet)."""

    site: str
    name: str
    department: str | None
    ring: int
    status: str
    gateways_online: int
    gateways_total: int
    devices: HealthCounts
    open_alerts: int
    critical_alerts: int
    last_seen: int | None = None  # the latest word from any of its gateways


@dataclass(frozen=True, slots=True)
class TwinView:
    """Desired vs reported; ``diverged_since`` null when they match (or nothing is
    desired)."""

    desired: dict[str, Any] | None
    desired_version: int | None
    desired_at: int | None
    reported: dict[str, Any] | None
    reported_version: int | None
    reported_at: int | None
    diverged_since: int | None
    in_sync: bool


@dataclass(frozen=True, slots=True)
class SampleView:
    at: int
    battery_pct: int | None
    clock_offset_s: float | None
    rssi_dbm: int | None
    last_sync_at: int | None
    outbox_depth: int | None


@dataclass(frozen=True, slots=True)
class DeviceView:
    site: str
    gateway: str
    device_id: str
    kind: str
    model: str | None
    firmware: str | None
    health: str
    reachable: bool | None
    battery_pct: int | None
    battery_days_left: float | None
    clock_offset_s: float | None
    clock_drift_s: float | None
    rssi_dbm: int | None
    door_open: bool | None
    locked_out: bool | None
    last_sync_at: int | None
    next_sync_at: int | None
    sync_due_at: int | None
    telemetry_at: int | None
    config: dict[str, Any] | None
    event_boot: int | None = None  # a lock's current run of its event counter
    boot_seen_at: int | None = None  # when the cloud first saw an event of that run


@dataclass(frozen=True, slots=True)
class GatewayView:
    site: str
    gateway: str
    state: str  # from birth / last will
    available: bool  # birth and heartbeat together
    available_since: int | None
    last_seen: int
    heartbeat_interval_s: float
    agent_version: str | None
    telemetry_at: int | None
    uptime_s: float | None
    outbox_depth: int | None
    outbox_oldest_age_s: float | None
    frames_dropped: int | None
    time_trusted: bool | None


@dataclass(frozen=True, slots=True)
class AlertView:
    id: int
    kind: str
    severity: str
    site: str
    gateway: str
    subject_kind: str
    subject: str
    message: str
    opened_at: int
    acknowledged_at: int | None
    acknowledged_by: str | None
    resolved_at: int | None
    resolution: str | None

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


@dataclass(frozen=True, slots=True)
class CommandView:
    """A command and, once it came, its reply. ``status`` ``expired`` with no
    ``replied_at``: nobody answered by ``expires_at``."""

    transaction: str
    verb: str
    site: str
    gateway: str
    device_id: str | None
    data: dict[str, Any]
    requested_by: str
    reason: str | None
    created_at: int
    expires_at: int
    status: str
    sent_at: int | None
    replied_at: int | None
    reply: dict[str, Any] | None
    error: str | None
    duplicate_replies: int
    rollout_id: int | None
    firmware_image_id: int | None


@dataclass(frozen=True, slots=True)
class GatewayDetail:
    gateway: GatewayView
    twin: TwinView | None
    devices: tuple[DeviceView, ...]
    open_alerts: tuple[AlertView, ...]
    history: tuple[SampleView, ...]
    recent_commands: tuple[CommandView, ...]


@dataclass(frozen=True, slots=True)
class DeviceDetail:
    device: DeviceView
    twin: TwinView | None
    open_alerts: tuple[AlertView, ...]
    history: tuple[SampleView, ...]


@dataclass(frozen=True, slots=True)
class SiteDetail:
    summary: SiteSummary
    gateways: tuple[GatewayView, ...]
    devices: tuple[DeviceView, ...]
    open_alerts: tuple[AlertView, ...]


@dataclass(frozen=True, slots=True)
class FirmwareView:
    id: int
    kind: str
    model: str
    version: str
    sha256: str
    size: int
    uploaded_by: str
    uploaded_at: int


@dataclass(frozen=True, slots=True)
class TargetView:
    site: str
    gateway: str
    device_id: str | None
    state: str
    transaction: str | None
    config_version: int | None
    previous: dict[str, Any] | None
    detail: str | None
    attempts: int
    sent_at: int | None
    done_at: int | None


@dataclass(frozen=True, slots=True)
class RingView:
    ring: int
    sites: tuple[str, ...]
    counts: dict[str, int]
    targets: tuple[TargetView, ...]


@dataclass(frozen=True, slots=True)
class RolloutView:
    id: int
    kind: str
    name: str
    state: str
    current_ring: int
    phase: str
    firmware_image_id: int | None
    version: str | None  # the image's version (firmware)
    config: dict[str, Any] | None
    soak_s: int
    auto_advance: bool
    ring_started_at: int | None
    ring_done_at: int | None
    created_by: str
    created_at: int
    halted_at: int | None
    halted_reason: str | None
    rings: tuple[RingView, ...] = ()
    # firmware halted: the devices that took or tried the image (see RolloutService.halt)
    affected_devices: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class AuditView:
    id: int
    at: int
    actor: str
    action: str
    site: str | None
    subject: str | None
    detail: dict[str, Any]
