"""The fleet's pure rules: availability, thresholds, the battery forecast, the ring gate."""

from __future__ import annotations

import pytest

from cloud.fleet import rules
from cloud.fleet.kinds import AlertKind, RingPhase, TargetState
from cloud.fleet.rules import BatterySample, GateInput
from protocol.messages import OpeningHours

DAY = 86_400
NOW = 1_799_971_200  # Friday 2027-01-15 09:00 Tokyo


def drain(start_pct: float, per_day: float, days: int, every_h: int = 12) -> list[BatterySample]:
    steps = days * 24 // every_h
    return [
        BatterySample(NOW - (steps - i) * every_h * 3600, start_pct - per_day * i * every_h / 24)
        for i in range(steps + 1)
    ]


def test_forecast_is_the_level_over_the_drain_rate() -> None:
    samples = drain(40, 2.0, days=7)  # 40 % → 26 % in a week
    days = rules.battery_days_left(samples, NOW)
    assert days == pytest.approx(13.0)


def test_forecast_needs_enough_points_a_span_and_a_drain() -> None:
    assert rules.battery_days_left(drain(40, 2, days=7)[:2], NOW) is None
    short = [BatterySample(NOW - 3600 * h, 50 - h) for h in range(4)]  # three hours
    assert rules.battery_days_left(short, NOW) is None
    assert rules.battery_days_left(drain(40, 0, days=3), NOW) is None  # flat
    assert rules.battery_days_left(drain(40, -1, days=3), NOW) is None  # charging


def test_forecast_starts_again_after_a_battery_change() -> None:
    old = drain(30, 5, days=4)  # a fast-draining old battery, down to 10 %
    new = [BatterySample(NOW + h * 12 * 3600, 100 - h) for h in range(5)]  # 2 % a day
    days = rules.battery_days_left(old + new, new[-1].at)
    assert days == pytest.approx(96 / 2)


def test_forecast_ignores_samples_outside_the_window() -> None:
    ancient = [BatterySample(NOW - 40 * DAY, 100), BatterySample(NOW - 30 * DAY, 99)]
    assert rules.battery_days_left(ancient + drain(50, 1, days=4), NOW) == pytest.approx(46)


@pytest.mark.parametrize(
    ("pct", "alert"),
    [
        (None, None),
        (100, None),
        (20, None),
        (19, AlertKind.BATTERY_LOW),
        (10, AlertKind.BATTERY_LOW),
        (9, AlertKind.BATTERY_CRITICAL),
        (0, AlertKind.BATTERY_CRITICAL),
    ],
)
def test_battery_levels(pct: int | None, alert: AlertKind | None) -> None:
    assert rules.battery_alert(pct) is alert


def test_clock_drift_over_thirty_seconds_either_way() -> None:
    assert rules.clock_drifting(None, None) is None
    assert rules.clock_drifting(30.0, None) is False
    assert rules.clock_drifting(None, -31.0) is True
    assert rules.clock_drifting(2.0, 45.0) is True


def test_a_gateway_is_available_while_online_and_heard_within_two_heartbeats() -> None:
    assert rules.gateway_available("online", NOW, NOW + 120, 60, 2)
    assert rules.gateway_available("online", NOW, NOW + 125, 60, 2)
    assert not rules.gateway_available("online", NOW, NOW + 126, 60, 2)
    assert not rules.gateway_available("offline", NOW, NOW, 60, 2)
    assert rules.is_available("online", None)
    assert not rules.is_available("online", False)


def test_a_battery_lock_is_offline_only_after_a_missed_sync_plus_grace() -> None:
    due = rules.sync_due(NOW, None, NOW - DAY, 12 * 3600)
    assert due == NOW + 12 * 3600
    assert rules.sync_due(NOW, NOW + 3600, NOW - DAY, 12 * 3600) == NOW + 3600
    assert rules.sync_due(None, None, NOW, 100) == NOW + 100
    assert not rules.sync_missed(due, due + 3600, 3600)
    assert rules.sync_missed(due, due + 3601, 3600)


def test_outbox_backlog_needs_growth_and_depth_or_age() -> None:
    assert rules.outbox_backlog(60, 3, None) is True
    assert rules.outbox_backlog(60, 2, None) is None  # deep but not growing: as it is
    assert rules.outbox_backlog(10, 5, 900.0) is True  # old
    assert rules.outbox_backlog(10, 5, 10.0) is False


def test_clinic_hours_default_to_weekday_daytime() -> None:
    assert rules.in_clinic_hours(None, NOW)  # Friday 09:00
    assert not rules.in_clinic_hours(None, NOW + 10 * 3600)  # 19:00
    assert not rules.in_clinic_hours(None, NOW + 2 * DAY)  # Sunday 09:00
    evenings = OpeningHours(open_minute=18 * 60, close_minute=22 * 60)
    assert not rules.in_clinic_hours(evenings, NOW)


def test_device_health_order() -> None:
    def health(**kw: object) -> str:
        base: dict[str, object] = {
            "kind": "lock",
            "gateway_available": True,
            "reachable": False,
            "sync_missed": False,
            "open_critical": 0,
            "open_warning": 0,
        }
        return rules.device_health(rules.DeviceHealthInput(**{**base, **kw}))  # type: ignore[arg-type]

    assert health() == "ok"  # a sleeping lock is fine
    assert health(sync_missed=True) == "offline"
    assert health(gateway_available=False) == "offline"
    assert health(kind="display") == "offline"  # a powered display that cannot be reached
    assert health(open_critical=1, open_warning=2) == "critical"
    assert health(open_warning=1) == "warning"


def _gate(states: list[TargetState], **kw: object) -> str:
    base: dict[str, object] = {
        "states": states,
        "phase": RingPhase.SENDING,
        "ring_done_at": None,
        "soak_s": 600,
        "new_critical_alerts": 0,
    }
    verdict = rules.ring_gate(GateInput(**{**base, **kw}), NOW)  # type: ignore[arg-type]
    return verdict.action


def test_ring_gate() -> None:
    ok, sent, failed = TargetState.SUCCEEDED, TargetState.SENT, TargetState.FAILED
    assert _gate([ok, sent]) == "wait"
    assert _gate([ok, TargetState.DEFERRED]) == "wait"
    assert _gate([ok, failed]) == "fail"
    assert _gate([ok, ok]) == "soak"
    assert _gate([ok, ok], ring_done_at=NOW - 599) == "wait"
    assert _gate([ok, ok], ring_done_at=NOW - 600) == "pass"
    assert _gate([ok, ok], ring_done_at=NOW - 10, new_critical_alerts=1) == "fail"
