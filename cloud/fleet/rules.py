"""The fleet's decisions, pure: no database, no clock, no MQTT. Numbers in, verdicts out.

Every alert threshold of issue 6 is here, next to the rule that uses it, so a reader finds
"when does a lock count as offline" in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cloud.fleet.kinds import AlertKind, RingPhase, TargetState
from protocol.messages import OpeningHours

DAY_S = 86_400

# ----------------------------------------------------------------------- gateways

# a heartbeat may be this late beyond its misses before the gateway counts as silent: the
# telemetry is QoS 0 and the periodic pass runs every few seconds
HEARTBEAT_SLACK_S = 5.0


def heartbeat_deadline(last_seen: float, interval_s: float, misses: float) -> float:
    """When a gateway last heard at ``last_seen`` counts as silent."""
    return last_seen + misses * interval_s + HEARTBEAT_SLACK_S


def gateway_available(
    state: str, last_seen: float, now: float, interval_s: float, misses: float
) -> bool:
    """Online by birth (no last will since) and heard within ``misses`` heartbeats."""
    return state == "online" and now <= heartbeat_deadline(last_seen, interval_s, misses)


def is_available(state: str, available: bool | None) -> bool:
    """A gateway's availability as last judged: online by birth and not found silent."""
    return state == "online" and available is not False


# outbox: a backlog is growing when the depth rose at least this many reports in a row and
# is at least OUTBOX_DEPTH, or the oldest message waited OUTBOX_AGE_S; it is over when the
# depth is back under OUTBOX_DEPTH and nothing waited that long
OUTBOX_DEPTH = 50
OUTBOX_GROWTH_REPORTS = 3
OUTBOX_AGE_S = 900.0


def outbox_backlog(depth: int, growth: int, oldest_age_s: float | None) -> bool | None:
    """True: the backlog alert holds; False: it is over; None: keep it as it is."""
    aged = oldest_age_s is not None and oldest_age_s >= OUTBOX_AGE_S
    if aged or (depth >= OUTBOX_DEPTH and growth >= OUTBOX_GROWTH_REPORTS):
        return True
    if depth < OUTBOX_DEPTH and not aged:
        return False
    return None


# -------------------------------------------------------------------------- locks


def sync_due(
    last_sync_at: float | None,
    next_sync_at: float | None,
    first_seen_at: float,
    interval_s: float,
) -> float:
    """When the lock's next sync should have happened: the agent's schedule when it said,
    else one interval after the last sync (or after the cloud first heard of the lock)."""
    if next_sync_at is not None:
        return next_sync_at
    return (last_sync_at if last_sync_at is not None else first_seen_at) + interval_s


def sync_missed(due: float, now: float, grace_s: float) -> bool:
    """A battery lock sleeps between syncs, so it is offline only once a sync was missed
    by more than the grace."""
    return now > due + grace_s


BATTERY_LOW_PCT = 20
BATTERY_CRITICAL_PCT = 10


def battery_alert(pct: int | None) -> AlertKind | None:
    """The one battery alert a level calls for (critical replaces low)."""
    if pct is None:
        return None
    if pct < BATTERY_CRITICAL_PCT:
        return AlertKind.BATTERY_CRITICAL
    if pct < BATTERY_LOW_PCT:
        return AlertKind.BATTERY_LOW
    return None


CLOCK_DRIFT_S = 30.0


def clock_drifting(offset_s: float | None, drift_s: float | None) -> bool | None:
    """True when the lock's clock is (or was, before the last correction) more than 30 s
    off; None when neither figure is known."""
    known = [abs(x) for x in (offset_s, drift_s) if x is not None]
    if not known:
        return None
    return max(known) > CLOCK_DRIFT_S


# keypad guessing: a lock's denied_wrong_pin event carries the wrong PINs it took in the
# hour before (firmware_sim/lock/wrong_entries.py). Typos come one or two at a time and a
# forgotten PIN hits the lockout at 5; this many in an hour is someone trying PINs. The
# lock allows at most 20 a day, so a guesser who keeps under this rate still ends in a
# lockout (its own alert) before the day is out.
KEYPAD_GUESSING_PER_HOUR = 10


def keypad_guessing(wrong_in_last_hour: int | None) -> bool:
    """Whether a wrong PIN that was the ``wrong_in_last_hour``-th of its hour is guessing."""
    return wrong_in_last_hour is not None and wrong_in_last_hour >= KEYPAD_GUESSING_PER_HOUR


# alerts about something someone does (not a state a report can show over): they clear
# by themselves once their condition has not shown for QUIET_S
QUIET_CLEARS = (AlertKind.KEYPAD_GUESSING, AlertKind.TAMPER)
QUIET_S = 3600.0


# a telemetry report taken just before a lock event may arrive after it (telemetry is QoS 0
# and direct, events go through the outbox): a report closes an event's alert only after this
SETTLE_S = 30.0


# ---------------------------------------------------------------- battery forecast

FORECAST_WINDOW_S = 14 * DAY_S  # samples older than this do not count
FORECAST_MIN_SAMPLES = 3
FORECAST_MIN_SPAN_S = DAY_S / 2  # less than half a day of data says nothing about a drain
FORECAST_ALERT_DAYS = 14.0
REPLACED_JUMP_PCT = 5  # a rise this large means a new battery: the fit starts there


@dataclass(frozen=True, slots=True)
class BatterySample:
    at: float
    pct: float


def battery_days_left(samples: Sequence[BatterySample], now: float) -> float | None:
    """Days until the battery is empty at the current drain: a least-squares line through
    the recent samples (since the last battery change), extended from the newest level to
    0 %. None when there are too few samples, too short a span, or no drain."""
    recent = sorted((s for s in samples if s.at >= now - FORECAST_WINDOW_S), key=lambda s: s.at)
    start = 0
    for i in range(1, len(recent)):
        if recent[i].pct - recent[i - 1].pct >= REPLACED_JUMP_PCT:
            start = i
    recent = recent[start:]
    if len(recent) < FORECAST_MIN_SAMPLES or recent[-1].at - recent[0].at < FORECAST_MIN_SPAN_S:
        return None
    n = len(recent)
    mean_t = sum(s.at for s in recent) / n
    mean_p = sum(s.pct for s in recent) / n
    var = sum((s.at - mean_t) ** 2 for s in recent)
    if var == 0:
        return None
    slope = sum((s.at - mean_t) * (s.pct - mean_p) for s in recent) / var  # % per second
    if slope >= 0:
        return None
    return max(recent[-1].pct, 0.0) / (-slope * DAY_S)


# --------------------------------------------------------------------------- health


@dataclass(frozen=True, slots=True)
class DeviceHealthInput:
    kind: str
    gateway_available: bool
    reachable: bool | None
    sync_missed: bool
    open_critical: int
    open_warning: int


def device_health(d: DeviceHealthInput) -> str:
    """``offline``, ``critical``, ``warning`` or ``ok``, in that order of precedence.

    A lock is offline when its sync was missed (its gateway being away counts too); a
    display or a reader, which are powered, when the agent cannot reach it."""
    if not d.gateway_available:
        return "offline"
    if d.kind == "lock":
        if d.sync_missed:
            return "offline"
    elif d.reachable is False:
        return "offline"
    if d.open_critical:
        return "critical"
    if d.open_warning:
        return "warning"
    return "ok"


# ------------------------------------------------------------------- firmware windows

# a display without clinic hours in its gateway's config is assumed to serve a clinic open
# 08:00-18:00 Monday to Saturday (Tokyo): its firmware waits for the evening
DEFAULT_CLINIC_HOURS = OpeningHours(
    open_minute=8 * 60, close_minute=18 * 60, utc_offset_min=540, weekdays=[0, 1, 2, 3, 4, 5]
)


def in_clinic_hours(hours: OpeningHours | None, at: float) -> bool:
    """Whether a display at ``at`` is in its clinic's hours (the default hours if unknown)."""
    return (hours or DEFAULT_CLINIC_HOURS).is_open(at)


# --------------------------------------------------------------------- rollout gate


@dataclass(frozen=True, slots=True)
class GateInput:
    """One ring of a running rollout, as the gate sees it."""

    states: Sequence[TargetState]
    phase: RingPhase
    ring_done_at: float | None  # when every target had succeeded
    soak_s: float
    new_critical_alerts: int  # critical alerts on the ring's targets since the ring began


@dataclass(frozen=True, slots=True)
class GateVerdict:
    """What to do with the ring: ``wait``, ``soak`` (every target succeeded: start the
    soak now), ``pass`` or ``fail`` (with why)."""

    action: str
    reason: str = ""


def ring_gate(g: GateInput, now: float) -> GateVerdict:
    """The health gate between rings: every target reports success and the new version,
    and none of them (or their gateways) raises a critical alert until the soak is over."""
    failed = sum(1 for s in g.states if s is TargetState.FAILED)
    if failed:
        return GateVerdict("fail", f"{failed} target(s) of the ring failed")
    if g.new_critical_alerts:
        return GateVerdict(
            "fail", f"{g.new_critical_alerts} critical alert(s) on the ring's targets"
        )
    if any(s is not TargetState.SUCCEEDED for s in g.states):
        return GateVerdict("wait")
    if g.ring_done_at is None:
        return GateVerdict("soak")
    if now >= g.ring_done_at + g.soak_s:
        return GateVerdict("pass")
    return GateVerdict("wait")
