"""History charts for the fleet pages as inline SVG: the geometry only (pure, no I/O).

A chart is a time axis from ``start`` to ``end`` and a value axis from ``low`` to ``high``
(widened to the data), drawn in a fixed viewBox; the template draws the lines, dots,
ticks and guide lines (thresholds such as the battery's 20 %) this module placed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

WIDTH = 640
HEIGHT = 180
LEFT = 48  # room for the value labels
RIGHT = 12
TOP = 10
BOTTOM = 24  # room for the time labels


@dataclass(frozen=True, slots=True)
class Tick:
    at: float  # pixels along its axis
    label: str


@dataclass(frozen=True, slots=True)
class Dot:
    x: float
    y: float
    title: str  # shown on hover: the time and the value


@dataclass(frozen=True, slots=True)
class LineChart:
    width: int
    height: int
    left: int
    top: int
    plot_width: int
    plot_height: int
    line: str  # SVG polyline points, "x,y x,y …"
    dots: tuple[Dot, ...]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    guides: tuple[Tick, ...]  # horizontal lines at thresholds
    empty: bool

    @property
    def bottom(self) -> int:
        return self.top + self.plot_height

    @property
    def right(self) -> int:
        return self.left + self.plot_width


def nice_step(span: float, count: int = 4) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) that cuts ``span`` into about
    ``count`` parts."""
    if span <= 0:
        return 1.0
    raw = span / count
    power = 10.0 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power  # pragma: no cover - the loop ends at 10


def _value_label(value: float, step: float) -> str:
    return f"{value:.0f}" if step >= 1 else f"{value:.1f}"


def line_chart(
    samples: Sequence[tuple[float, float]],
    *,
    start: float,
    end: float,
    low: float,
    high: float,
    unit: str = "",
    x_ticks: Sequence[tuple[float, str]] = (),
    guides: Sequence[tuple[float, str]] = (),
    title: Callable[[float, float], str] | None = None,
) -> LineChart:
    """Place ``samples`` ``(epoch seconds, value)`` on a chart of ``start``..``end``;
    the value axis spans ``low``..``high`` and whatever the samples need beyond it."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    inside = sorted((t, v) for t, v in samples if start <= t <= end)
    values = [v for _, v in inside]
    low = min([low, *values])
    high = max([high, *values])
    if high <= low:
        high = low + 1
    step = nice_step(high - low)
    low = math.floor(low / step) * step
    high = math.ceil(high / step) * step
    span_t = max(end - start, 1.0)

    def x(t: float) -> float:
        return round(LEFT + (t - start) / span_t * plot_w, 1)

    def y(v: float) -> float:
        return round(TOP + (high - v) / (high - low) * plot_h, 1)

    y_ticks = []
    v = low
    while v <= high + step / 1000:
        y_ticks.append(Tick(y(v), f"{_value_label(v, step)}{unit}"))
        v += step
    describe = title or (lambda _t, value: f"{value:g}{unit}")
    return LineChart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        top=TOP,
        plot_width=plot_w,
        plot_height=plot_h,
        line=" ".join(f"{x(t)},{y(v)}" for t, v in inside),
        dots=tuple(Dot(x(t), y(v), describe(t, v)) for t, v in inside),
        x_ticks=tuple(Tick(x(t), label) for t, label in x_ticks if start <= t <= end),
        y_ticks=tuple(y_ticks),
        guides=tuple(Tick(y(g), label) for g, label in guides if low <= g <= high),
        empty=not inside,
    )


def day_ticks(
    start: float, end: float, zone: ZoneInfo, label: Callable[[datetime], str]
) -> list[tuple[float, str]]:
    """Local midnights between ``start`` and ``end`` (at most about eight, evenly
    thinned), or every six hours for a span under two days."""
    first = datetime.fromtimestamp(start, zone)
    if end - start < 2 * 86400:
        moment = first.replace(minute=0, second=0, microsecond=0)
        moment += timedelta(hours=(6 - moment.hour % 6) % 6 or 6)
        hop = timedelta(hours=6)
        every = 1
    else:
        moment = first.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        hop = timedelta(days=1)
        every = max(1, math.ceil((end - start) / 86400 / 8))
    ticks: list[tuple[float, str]] = []
    n = 0
    while moment.timestamp() <= end:
        if n % every == 0:
            ticks.append((moment.timestamp(), label(moment)))
        n += 1
        # add in wall-clock time, then normalise (a day is not always 24 h everywhere)
        moment = (moment.replace(tzinfo=None) + hop).replace(tzinfo=zone)
    return ticks


def sync_gaps(syncs: Sequence[int]) -> list[tuple[float, float]]:
    """``(sync time, hours since the sync before)`` for each sync after the first."""
    ordered = sorted(set(syncs))
    return [(b, (b - a) / 3600) for a, b in pairwise(ordered)]
