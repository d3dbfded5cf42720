"""Every state transition of the call-number display, in tables (h11 ``_state.py`` style).

Two independent machines:

* the **screen**: a display that booted (or was power-cycled) has no state and says
  HELLO until a full ``SHOW_STATE`` arrives; only then does it take partial updates;
* the **backlight**: on, or dimmed in standby by the daily schedule (an urgent
  announcement keeps it on; the firmware decides which trigger is due).

A trigger missing from a state's row is refused; the firmware answers it (a NACK for an
early partial update) and leaves the state alone. Side effects (chime, HELLO) are the
firmware's job.
"""

from __future__ import annotations

from enum import Enum


class Screen(Enum):
    NO_STATE = "no_state"  # booted, showing "waiting for data", sending HELLO
    SHOWING = "showing"


class ScreenTrigger(Enum):
    FULL_STATE = "full_state"  # SHOW_STATE
    PARTIAL_UPDATE = "partial_update"  # SET_CALLS, SET_ANNOUNCEMENT, SET_BRIGHTNESS, SET_STANDBY
    POWER_CYCLE = "power_cycle"


SCREEN_TRANSITIONS: dict[Screen, dict[ScreenTrigger, Screen]] = {
    Screen.NO_STATE: {
        ScreenTrigger.FULL_STATE: Screen.SHOWING,
        # no PARTIAL_UPDATE: half a state would show defaults as if they were chosen
        ScreenTrigger.POWER_CYCLE: Screen.NO_STATE,
    },
    Screen.SHOWING: {
        ScreenTrigger.FULL_STATE: Screen.SHOWING,
        ScreenTrigger.PARTIAL_UPDATE: Screen.SHOWING,
        ScreenTrigger.POWER_CYCLE: Screen.NO_STATE,
    },
}


def next_screen(state: Screen, trigger: ScreenTrigger) -> Screen | None:
    """Where ``trigger`` leads the screen from ``state``; ``None`` when refused."""
    return SCREEN_TRANSITIONS[state].get(trigger)


class Backlight(Enum):
    ON = "on"
    STANDBY = "standby"  # dimmed; numbers still shown


class BacklightTrigger(Enum):
    SLEEP_DUE = "sleep_due"  # the schedule's off time, and nothing urgent to show
    WAKE_DUE = "wake_due"  # the schedule's on time, or an urgent announcement
    POWER_CYCLE = "power_cycle"


BACKLIGHT_TRANSITIONS: dict[Backlight, dict[BacklightTrigger, Backlight]] = {
    Backlight.ON: {
        BacklightTrigger.SLEEP_DUE: Backlight.STANDBY,
        BacklightTrigger.POWER_CYCLE: Backlight.ON,
    },
    Backlight.STANDBY: {
        BacklightTrigger.WAKE_DUE: Backlight.ON,
        BacklightTrigger.POWER_CYCLE: Backlight.ON,
    },
}


def next_backlight(state: Backlight, trigger: BacklightTrigger) -> Backlight | None:
    """Where ``trigger`` leads the backlight from ``state``; ``None`` when not applicable."""
    return BACKLIGHT_TRANSITIONS[state].get(trigger)
