"""The geometry of the fleet pages' history charts (no I/O): round value steps, points
inside the plot, guide lines at thresholds, time ticks at local midnights, sync gaps."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from cloud.dashboard.fleet_charts import day_ticks, line_chart, nice_step, sync_gaps

TOKYO = ZoneInfo("Asia/Tokyo")
NOW = 1_799_971_200  # Friday 2027-01-15 09:00 Tokyo
DAY = 86400


@pytest.mark.parametrize(
    ("span", "step"), [(100, 25), (60, 20), (12, 5), (1, 0.25), (0.3, 0.1), (0, 1)]
)
def test_nice_step_cuts_a_span_in_about_four_round_parts(span: float, step: float) -> None:
    assert nice_step(span) == pytest.approx(step)


def test_points_fall_inside_the_plot_in_time_order_and_outsiders_are_left_out() -> None:
    samples = [(NOW - 2 * DAY, 80.0), (NOW - DAY, 60.0), (NOW, 40.0), (NOW - 9 * DAY, 99.0)]
    c = line_chart(samples, start=NOW - 7 * DAY, end=NOW, low=0, high=100, unit=" %")
    assert len(c.dots) == 3
    xs = [d.x for d in c.dots]
    assert xs == sorted(xs)
    assert xs[-1] == c.right  # now is the right edge
    for d in c.dots:
        assert c.left <= d.x <= c.right
        assert c.top <= d.y <= c.bottom
    assert c.dots[0].y < c.dots[1].y < c.dots[2].y  # less battery: lower on the chart
    assert [t.label for t in c.y_ticks] == ["0 %", "25 %", "50 %", "75 %", "100 %"]
    assert not c.empty


def test_the_value_axis_widens_to_the_data_and_guides_sit_on_their_values() -> None:
    c = line_chart(
        [(NOW, 47.0)], start=NOW - DAY, end=NOW, low=-30, high=30, guides=[(30, "+30 s")]
    )
    assert c.y_ticks[-1].label == "60"  # 47 s is beyond the usual ±30 s
    assert c.y_ticks[-1].at == c.top
    assert [g.label for g in c.guides] == ["+30 s"]
    assert c.top < c.guides[0].at < c.bottom


def test_no_samples_make_an_empty_chart() -> None:
    assert line_chart([], start=NOW - DAY, end=NOW, low=0, high=100).empty


def test_day_ticks_are_local_midnights_thinned_for_long_spans() -> None:
    week = day_ticks(NOW - 7 * DAY, NOW, TOKYO, lambda d: d.strftime("%m-%d"))
    assert [label for _, label in week] == [f"01-{d:02d}" for d in range(9, 16)]
    for at, _ in week:
        assert datetime.fromtimestamp(at, TOKYO).hour == 0
    month = day_ticks(NOW - 30 * DAY, NOW, TOKYO, lambda d: d.strftime("%m-%d"))
    assert 5 <= len(month) <= 10
    day = day_ticks(NOW - DAY, NOW, TOKYO, lambda d: d.strftime("%H:%M"))
    assert [label for _, label in day] == ["12:00", "18:00", "00:00", "06:00"]


def test_sync_gaps_are_the_hours_since_the_sync_before() -> None:
    syncs = [NOW, NOW - 12 * 3600, NOW - 36 * 3600, NOW]  # a repeat counts once
    assert sync_gaps(syncs) == [(NOW - 12 * 3600, 24.0), (NOW, 12.0)]
    assert sync_gaps([NOW]) == []
