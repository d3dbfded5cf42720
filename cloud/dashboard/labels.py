"""Words a facility manager reads for what the wire calls an event kind."""

from __future__ import annotations

from protocol.messages import LockEventKind

EVENT_LABELS: dict[str, str] = {
    LockEventKind.UNLOCKED: "Unlocked with PIN",
    LockEventKind.DENIED_WRONG_PIN: "Denied: wrong PIN",
    LockEventKind.DENIED_OUTSIDE_WINDOW: "Denied: outside the booked hours",
    LockEventKind.DENIED_LOCKED_OUT: "Denied: keypad locked out",
    LockEventKind.DENIED_REVOKED: "Denied: cancelled offline PIN",
    LockEventKind.RELOCKED: "Relocked",
    LockEventKind.DOOR_OPENED: "Door opened",
    LockEventKind.DOOR_CLOSED: "Door closed",
    LockEventKind.DOOR_HELD_OPEN: "Door held open",
    LockEventKind.LOCKOUT_STARTED: "Keypad locked out after wrong PINs",
    LockEventKind.BATTERY: "Battery level",
    LockEventKind.CLOCK_SET: "Clock set by the gateway",
    LockEventKind.JAM: "Bolt jammed",
}


def event_label(kind: str) -> str:
    """The label of ``kind``, or the kind itself for one this version does not know."""
    return EVENT_LABELS.get(kind, kind)
