"""The fleet's tables: city departments and who belongs to them, sites, devices (locks,
displays and card readers in one table), twins (desired vs reported), health samples,
alerts, commands, firmware images, rollouts and their targets, and the fleet audit log.
Gateways are the existing ``gateways`` table (:class:`cloud.fleet.models.Gateway`), extended
with their health. Imported by :mod:`cloud.db.models`, so Alembic sees them.

Times are UTC epoch seconds (``BigInteger``) as everywhere else.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from cloud.db.base import Base, string_enum
from cloud.fleet.kinds import (
    AlertKind,
    CommandState,
    DeviceKind,
    RingPhase,
    RolloutKind,
    RolloutState,
    Severity,
    SubjectKind,
    TargetState,
)

_BIGINT_ID = BigInteger().with_variant(Integer, "sqlite")


class Device(Base):
    """A lock, display or card reader behind a gateway, with the health its agent last
    reported. ``model`` is set by ops (telemetry does not carry it); a firmware rollout
    targets the devices of the image's model only."""

    __tablename__ = "devices"
    __table_args__ = (
        UniqueConstraint("site", "device_id"),
        Index("ix_devices_site_gateway", "site", "gateway"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(40))
    gateway: Mapped[str] = mapped_column(String(40))
    device_id: Mapped[str] = mapped_column(String(40))
    kind: Mapped[DeviceKind] = mapped_column(string_enum(DeviceKind, "device_kind"))
    model: Mapped[str | None] = mapped_column(String(32))
    firmware: Mapped[str | None] = mapped_column(String(64))
    config: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    reachable: Mapped[bool | None] = mapped_column(Boolean)
    battery_pct: Mapped[int | None] = mapped_column(Integer)
    battery_days_left: Mapped[float | None] = mapped_column(Float)
    clock_offset_s: Mapped[float | None] = mapped_column(Float)
    clock_drift_s: Mapped[float | None] = mapped_column(Float)
    rssi_dbm: Mapped[int | None] = mapped_column(Integer)
    door_open: Mapped[bool | None] = mapped_column(Boolean)
    locked_out: Mapped[bool | None] = mapped_column(Boolean)
    last_sync_at: Mapped[int | None] = mapped_column(BigInteger)
    next_sync_at: Mapped[int | None] = mapped_column(BigInteger)
    shown_version: Mapped[int | None] = mapped_column(BigInteger)
    telemetry_at: Mapped[int | None] = mapped_column(BigInteger)
    sampled_at: Mapped[int | None] = mapped_column(BigInteger)  # its last health sample
    first_seen_at: Mapped[int] = mapped_column(BigInteger)
    # a lock's event numbering as the cloud last saw it: the boot (run of its event
    # counter), since when (the cloud's time), and that boot's highest seq with its lock_ts
    event_boot: Mapped[int | None] = mapped_column(BigInteger)
    boot_seen_at: Mapped[int | None] = mapped_column(BigInteger)
    event_seq: Mapped[int | None] = mapped_column(BigInteger)
    event_lock_ts: Mapped[int | None] = mapped_column(BigInteger)


class Twin(Base):
    """Desired vs reported state of one gateway's agent (``kind`` gateway, ``subject``
    the gateway slug: the agent config, versioned, published retained on ``config``) or of
    one device (``desired``: the firmware a rollout sent it). ``diverged_since`` is when
    reported stopped matching desired (null: they match, or nothing is desired)."""

    __tablename__ = "twins"

    site: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[SubjectKind] = mapped_column(
        string_enum(SubjectKind, "twin_kind"), primary_key=True
    )
    subject: Mapped[str] = mapped_column(String(40), primary_key=True)
    gateway: Mapped[str] = mapped_column(String(40))
    desired: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    desired_version: Mapped[int | None] = mapped_column(BigInteger)
    desired_at: Mapped[int | None] = mapped_column(BigInteger)
    reported: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    reported_version: Mapped[int | None] = mapped_column(BigInteger)
    reported_at: Mapped[int | None] = mapped_column(BigInteger)
    diverged_since: Mapped[int | None] = mapped_column(BigInteger)


class HealthSample(Base):
    """A point of a history chart: one per subject per sampling interval (default an
    hour), kept for a bounded time (default 45 days) by the periodic pass."""

    __tablename__ = "health_samples"
    __table_args__ = (
        Index("ix_health_samples_site_subject_at", "site", "subject", "at"),
        Index("ix_health_samples_at", "at"),
    )

    id: Mapped[int] = mapped_column(_BIGINT_ID, primary_key=True)
    site: Mapped[str] = mapped_column(String(40))
    subject_kind: Mapped[SubjectKind] = mapped_column(string_enum(SubjectKind, "sample_kind"))
    subject: Mapped[str] = mapped_column(String(40))
    at: Mapped[int] = mapped_column(BigInteger)
    battery_pct: Mapped[int | None] = mapped_column(Integer)
    clock_offset_s: Mapped[float | None] = mapped_column(Float)
    rssi_dbm: Mapped[int | None] = mapped_column(Integer)
    last_sync_at: Mapped[int | None] = mapped_column(BigInteger)
    outbox_depth: Mapped[int | None] = mapped_column(Integer)


class Alert(Base):
    """An alert about a gateway or a device. ``open_key`` (``kind:site:subject``) is set
    while it is unresolved and unique, so an alert opens once however many workers see the
    condition; resolving clears it. ``source_boot`` and ``source_seq`` name the lock event
    that opened it; ``seen_at`` is when its condition last showed (the kinds that clear
    after a quiet period, :data:`cloud.fleet.rules.QUIET_CLEARS`, count from it)."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_site_opened_at", "site", "opened_at"),
        Index("ix_alerts_resolved_at", "resolved_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[AlertKind] = mapped_column(string_enum(AlertKind, "alert_kind"))
    severity: Mapped[Severity] = mapped_column(string_enum(Severity, "severity"))
    site: Mapped[str] = mapped_column(String(40))
    gateway: Mapped[str] = mapped_column(String(40))
    subject_kind: Mapped[SubjectKind] = mapped_column(string_enum(SubjectKind, "alert_subject"))
    subject: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(String(300))
    opened_at: Mapped[int] = mapped_column(BigInteger)
    acknowledged_at: Mapped[int | None] = mapped_column(BigInteger)
    acknowledged_by: Mapped[str | None] = mapped_column(String(100))
    resolved_at: Mapped[int | None] = mapped_column(BigInteger)
    resolution: Mapped[str | None] = mapped_column(String(200))
    source_seq: Mapped[int | None] = mapped_column(BigInteger)
    source_boot: Mapped[int | None] = mapped_column(BigInteger)
    open_key: Mapped[str | None] = mapped_column(String(140), unique=True)
    seen_at: Mapped[int | None] = mapped_column(BigInteger)


class FirmwareImageRow(Base):
    """An uploaded signed image (:mod:`protocol.firmware_image`), bytes in the DB (at most
    1 MiB, the size a command can carry)."""

    __tablename__ = "firmware_images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[DeviceKind] = mapped_column(string_enum(DeviceKind, "image_kind"))
    model: Mapped[str] = mapped_column(String(32))
    version: Mapped[str] = mapped_column(String(20))
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(Integer)
    key_id: Mapped[str] = mapped_column(String(16))
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)  # loaded when sent
    uploaded_by: Mapped[str] = mapped_column(String(100))
    uploaded_at: Mapped[int] = mapped_column(BigInteger)


class Command(Base):
    """A command to one gateway (``req/{verb}``) and its reply (``res/{verb}``), paired by
    ``transaction``. A reply is stored once; a second delivery only counts
    ``duplicate_replies``. ``data`` is the verb's arguments as sent, except a firmware
    image, which is ``firmware_image_id`` and joined in when published."""

    __tablename__ = "commands"
    __table_args__ = (
        Index("ix_commands_site_created_at", "site", "created_at"),
        Index("ix_commands_status_expires_at", "status", "expires_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    transaction: Mapped[str] = mapped_column(String(64), unique=True)
    verb: Mapped[str] = mapped_column(String(32))
    site: Mapped[str] = mapped_column(String(40))
    gateway: Mapped[str] = mapped_column(String(40))
    device_id: Mapped[str | None] = mapped_column(String(40))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    firmware_image_id: Mapped[int | None] = mapped_column(ForeignKey("firmware_images.id"))
    requested_by: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[CommandState] = mapped_column(string_enum(CommandState, "command_state"))
    sent_at: Mapped[int | None] = mapped_column(BigInteger)
    replied_at: Mapped[int | None] = mapped_column(BigInteger)
    reply_data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    reply_error: Mapped[str | None] = mapped_column(String(500))
    duplicate_replies: Mapped[int] = mapped_column(Integer, server_default="0")
    rollout_id: Mapped[int | None] = mapped_column(ForeignKey("rollouts.id"))


class Rollout(Base):
    """A firmware image or agent config fields, sent ring by ring (``rings``: the sites of
    each ring, fixed at creation) with a health gate between rings."""

    __tablename__ = "rollouts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[RolloutKind] = mapped_column(string_enum(RolloutKind, "rollout_kind"))
    name: Mapped[str] = mapped_column(String(200))
    firmware_image_id: Mapped[int | None] = mapped_column(ForeignKey("firmware_images.id"))
    config: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    rings: Mapped[list[list[str]]] = mapped_column(JSON)
    current_ring: Mapped[int] = mapped_column(Integer, server_default="0")
    phase: Mapped[RingPhase] = mapped_column(string_enum(RingPhase, "ring_phase"))
    state: Mapped[RolloutState] = mapped_column(string_enum(RolloutState, "rollout_state"))
    soak_s: Mapped[int] = mapped_column(Integer)
    auto_advance: Mapped[bool] = mapped_column(Boolean, server_default="1")
    ring_started_at: Mapped[int | None] = mapped_column(BigInteger)
    ring_done_at: Mapped[int | None] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    halted_at: Mapped[int | None] = mapped_column(BigInteger)
    halted_reason: Mapped[str | None] = mapped_column(String(300))


class RolloutTarget(Base):
    """One device (firmware) or one gateway (config, ``device_id`` null) of a rollout.
    ``previous`` is what it had before: the firmware it ran, or the desired config."""

    __tablename__ = "rollout_targets"
    __table_args__ = (Index("ix_rollout_targets_rollout_id_ring", "rollout_id", "ring"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    rollout_id: Mapped[int] = mapped_column(ForeignKey("rollouts.id"))
    ring: Mapped[int] = mapped_column(Integer)
    site: Mapped[str] = mapped_column(String(40))
    gateway: Mapped[str] = mapped_column(String(40))
    device_id: Mapped[str | None] = mapped_column(String(40))
    state: Mapped[TargetState] = mapped_column(string_enum(TargetState, "target_state"))
    transaction: Mapped[str | None] = mapped_column(String(64), index=True)
    config_version: Mapped[int | None] = mapped_column(BigInteger)
    previous: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    detail: Mapped[str | None] = mapped_column(String(300))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    sent_at: Mapped[int | None] = mapped_column(BigInteger)
    done_at: Mapped[int | None] = mapped_column(BigInteger)


class FleetAuditEntry(Base):
    """Who did what to the fleet: commands (an unlock with its reason), replies and
    expiries, acknowledgements, desired config changes, rollout moves."""

    __tablename__ = "fleet_audit"
    __table_args__ = (Index("ix_fleet_audit_at", "at"),)

    id: Mapped[int] = mapped_column(_BIGINT_ID, primary_key=True)
    at: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(40))
    site: Mapped[str | None] = mapped_column(String(40))
    subject: Mapped[str | None] = mapped_column(String(80))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Gateway(Base):
    __tablename__ = "gateways"

    site: Mapped[str] = mapped_column(String(40), primary_key=True)
    gateway: Mapped[str] = mapped_column(String(40), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))
    agent_version: Mapped[str | None] = mapped_column(String(64))
    last_seen: Mapped[int] = mapped_column(BigInteger)
    # fleet health (cloud.fleet): availability is birth/will and heartbeat together
    available: Mapped[bool | None] = mapped_column(Boolean)
    available_since: Mapped[int | None] = mapped_column(BigInteger)
    telemetry_at: Mapped[int | None] = mapped_column(BigInteger)
    uptime_s: Mapped[float | None] = mapped_column(Float)
    outbox_depth: Mapped[int | None] = mapped_column(Integer)
    outbox_oldest_age_s: Mapped[float | None] = mapped_column(Float)
    outbox_growth: Mapped[int] = mapped_column(Integer, server_default="0")
    frames_dropped: Mapped[int | None] = mapped_column(Integer)
    time_trusted: Mapped[bool | None] = mapped_column(Boolean)
    sampled_at: Mapped[int | None] = mapped_column(BigInteger)  # its last health sample


class EnrollmentToken(Base):
    """A one-time token city ops hand to a technician; only its SHA-256 is stored."""

    __tablename__ = "enrollment_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    site: Mapped[str] = mapped_column(String(40))
    gateway: Mapped[str] = mapped_column(String(40))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    used_at: Mapped[int | None] = mapped_column(BigInteger)


class GatewayCertificate(Base):
    """A client certificate the cloud issued to a gateway (serial as hex: up to 159 bits)."""

    __tablename__ = "gateway_certificates"
    __table_args__ = (Index("ix_gateway_certificates_site_gateway", "site", "gateway"),)

    serial: Mapped[str] = mapped_column(String(40), primary_key=True)
    site: Mapped[str] = mapped_column(String(40))
    gateway: Mapped[str] = mapped_column(String(40))
    common_name: Mapped[str] = mapped_column(String(100))
    not_after: Mapped[int] = mapped_column(BigInteger)
    issued_at: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[int | None] = mapped_column(BigInteger)
