"""Every state transition of the keypad lock, in one table (h11 ``_state.py`` style).

The lock has a bolt (locked or not) and a door (open or closed); both are folded into one
:class:`DoorLock` state so that the rules read as a table. A trigger missing from a
state's row is refused: the firmware leaves the state alone and reports the refusal.
Side effects (events, timers) are the firmware's job; this module only says where a
trigger leads.

Keypad lockout is the second, independent machine: too many wrong PINs in a window of time
(:mod:`firmware_sim.lock.wrong_entries`) lock the keypad for a while, whatever the bolt and
door do.
"""

from __future__ import annotations

from enum import Enum


class DoorLock(Enum):
    """Bolt and door together."""

    LOCKED_CLOSED = "locked_closed"
    UNLOCKED_CLOSED = "unlocked_closed"
    UNLOCKED_OPEN = "unlocked_open"
    # opened from inside while locked: egress is always free, the outside stays locked
    LOCKED_OPEN = "locked_open"

    @property
    def locked(self) -> bool:
        return self in (DoorLock.LOCKED_CLOSED, DoorLock.LOCKED_OPEN)

    @property
    def door_open(self) -> bool:
        return self in (DoorLock.UNLOCKED_OPEN, DoorLock.LOCKED_OPEN)


class Trigger(Enum):
    PIN_ACCEPTED = "pin_accepted"
    REMOTE_UNLOCK = "remote_unlock"  # the gateway's authenticated UNLOCK (a fleet command)
    OPEN_FROM_OUTSIDE = "open_from_outside"
    OPEN_FROM_INSIDE = "open_from_inside"
    CLOSE = "close"
    RELOCK_DUE = "relock_due"


DOOR_LOCK_TRANSITIONS: dict[DoorLock, dict[Trigger, DoorLock]] = {
    DoorLock.LOCKED_CLOSED: {
        Trigger.PIN_ACCEPTED: DoorLock.UNLOCKED_CLOSED,
        Trigger.REMOTE_UNLOCK: DoorLock.UNLOCKED_CLOSED,
        # no OPEN_FROM_OUTSIDE: the door fails secure outside
        Trigger.OPEN_FROM_INSIDE: DoorLock.LOCKED_OPEN,
    },
    DoorLock.UNLOCKED_CLOSED: {
        Trigger.PIN_ACCEPTED: DoorLock.UNLOCKED_CLOSED,  # restarts the auto-lock timer
        Trigger.REMOTE_UNLOCK: DoorLock.UNLOCKED_CLOSED,
        Trigger.OPEN_FROM_OUTSIDE: DoorLock.UNLOCKED_OPEN,
        Trigger.OPEN_FROM_INSIDE: DoorLock.UNLOCKED_OPEN,
        Trigger.RELOCK_DUE: DoorLock.LOCKED_CLOSED,
    },
    DoorLock.UNLOCKED_OPEN: {
        Trigger.PIN_ACCEPTED: DoorLock.UNLOCKED_OPEN,
        Trigger.REMOTE_UNLOCK: DoorLock.UNLOCKED_OPEN,
        # no RELOCK_DUE: throwing the bolt into an open door would jam it; relock on close
        Trigger.CLOSE: DoorLock.UNLOCKED_CLOSED,
    },
    DoorLock.LOCKED_OPEN: {
        Trigger.PIN_ACCEPTED: DoorLock.UNLOCKED_OPEN,
        Trigger.REMOTE_UNLOCK: DoorLock.UNLOCKED_OPEN,
        Trigger.CLOSE: DoorLock.LOCKED_CLOSED,
    },
}


def next_state(state: DoorLock, trigger: Trigger) -> DoorLock | None:
    """Where ``trigger`` leads from ``state``; ``None`` when the lock refuses it."""
    return DOOR_LOCK_TRANSITIONS[state].get(trigger)


class Keypad(Enum):
    READY = "ready"
    LOCKED_OUT = "locked_out"


class KeypadTrigger(Enum):
    WRONG_PIN_LIMIT = "wrong_pin_limit"  # a window of time holds its limit of wrong PINs
    LOCKOUT_EXPIRED = "lockout_expired"


KEYPAD_TRANSITIONS: dict[Keypad, dict[KeypadTrigger, Keypad]] = {
    Keypad.READY: {KeypadTrigger.WRONG_PIN_LIMIT: Keypad.LOCKED_OUT},
    Keypad.LOCKED_OUT: {KeypadTrigger.LOCKOUT_EXPIRED: Keypad.READY},
}


def next_keypad(state: Keypad, trigger: KeypadTrigger) -> Keypad | None:
    """Where ``trigger`` leads the keypad from ``state``; ``None`` when not allowed."""
    return KEYPAD_TRANSITIONS[state].get(trigger)
