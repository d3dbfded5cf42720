"""The fleet's vocabulary: kinds and states shared by the tables, the rules and the API."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class DeviceKind(StrEnum):
    """What a device is; locks, displays and card readers share one table."""

    LOCK = "lock"
    DISPLAY = "display"
    READER = "reader"


class Severity(StrEnum):
    CRITICAL = "critical"  # acts as a rollout gate failure, and needs someone now
    WARNING = "warning"


class AlertKind(StrEnum):
    GATEWAY_OFFLINE = "gateway_offline"  # last will, clean offline, or telemetry silence
    MISSED_SYNC = "missed_sync"  # a lock's 12-hour sync did not happen (plus grace)
    BATTERY_LOW = "battery_low"  # 10 % <= battery < 20 %
    BATTERY_CRITICAL = "battery_critical"  # battery < 10 %
    BATTERY_FORECAST = "battery_forecast"  # empty in under 14 days at the current drain
    LOCKOUT = "lockout"  # keypad lockout after wrong PINs (brute force)
    DOOR_HELD_OPEN = "door_held_open"
    JAM = "jam"
    CLOCK_DRIFT = "clock_drift"  # a lock's clock more than 30 s off
    OUTBOX_BACKLOG = "outbox_backlog"  # the agent's outbox keeps growing
    SEQ_BACKWARDS = "seq_backwards"  # a lock's event numbers went back within one boot
    FOREIGN_DEVICE = "foreign_device"  # a gateway named another site's or gateway's lock
    KEYPAD_GUESSING = "keypad_guessing"  # wrong PINs at a lock faster than typos come
    TAMPER = "tamper"  # a lock refused frames: forged, replayed, or under another key


SEVERITY: dict[AlertKind, Severity] = {
    AlertKind.GATEWAY_OFFLINE: Severity.CRITICAL,
    AlertKind.MISSED_SYNC: Severity.WARNING,
    AlertKind.BATTERY_LOW: Severity.WARNING,
    AlertKind.BATTERY_CRITICAL: Severity.CRITICAL,
    AlertKind.BATTERY_FORECAST: Severity.WARNING,
    AlertKind.LOCKOUT: Severity.WARNING,
    AlertKind.DOOR_HELD_OPEN: Severity.WARNING,
    AlertKind.JAM: Severity.CRITICAL,
    AlertKind.CLOCK_DRIFT: Severity.WARNING,
    AlertKind.OUTBOX_BACKLOG: Severity.WARNING,
    AlertKind.SEQ_BACKWARDS: Severity.WARNING,
    AlertKind.FOREIGN_DEVICE: Severity.CRITICAL,
    AlertKind.KEYPAD_GUESSING: Severity.WARNING,
    AlertKind.TAMPER: Severity.CRITICAL,
}


class SubjectKind(StrEnum):
    """What an alert or a twin is about: the agent (a gateway) or one device."""

    GATEWAY = "gateway"
    LOCK = "lock"
    DISPLAY = "display"
    READER = "reader"


@dataclass(frozen=True, slots=True)
class Subject:
    """Who an alert is about: a gateway, or a device behind one."""

    site: str
    gateway: str
    kind: SubjectKind
    id: str

    @property
    def label(self) -> str:
        if self.kind is SubjectKind.GATEWAY:
            return f"gateway {self.site}/{self.gateway}"
        return f"{self.kind.value} {self.id} at {self.site}/{self.gateway}"


class CommandState(StrEnum):
    """``pending`` → ``sent`` → a reply's status; ``expired`` also when no reply came by
    ``expires_at`` (then ``replied_at`` is null)."""

    PENDING = "pending"
    SENT = "sent"
    OK = "ok"
    ERROR = "error"
    EXPIRED = "expired"
    REJECTED = "rejected"


OPEN_COMMAND_STATES = (CommandState.PENDING, CommandState.SENT)


class RolloutKind(StrEnum):
    FIRMWARE = "firmware"  # a signed image to every lock (or display) of a model
    CONFIG = "config"  # fields of the agent config (the twin on ``config``)


class RolloutState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    HALTED = "halted"  # a ring failed its gate (config: and was rolled back)
    COMPLETED = "completed"


class RingPhase(StrEnum):
    """Where the current ring is: sending to its targets, soaking after every target
    succeeded, or passed (waiting for ``advance`` when the rollout does not advance by
    itself)."""

    SENDING = "sending"
    SOAKING = "soaking"
    PASSED = "passed"


class TargetState(StrEnum):
    WAITING = "waiting"  # its ring has not started
    DEFERRED = "deferred"  # not now (a booking, clinic hours, gateway offline): retried
    SENT = "sent"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # never sent: the rollout halted first
    ROLLED_BACK = "rolled_back"  # config: the previous config was published again


def gateway_subject(site: str, gateway: str) -> Subject:
    return Subject(site, gateway, SubjectKind.GATEWAY, gateway)
