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
    LockEventKind.REMOTE_UNLOCKED: "Emergency remote unlock (city operations)",
}


# an offline PIN's events (no slot: the lock checked a 12-digit code by itself)
OFFLINE_EVENT_LABELS: dict[str, str] = {
    LockEventKind.UNLOCKED: "Unlocked with offline PIN",
    LockEventKind.DENIED_OUTSIDE_WINDOW: "Denied: offline PIN outside its hours",
}


def event_label(kind: str, offline: bool = False) -> str:
    """The label of ``kind`` (of an offline PIN's event when ``offline``), or the kind
    itself for one this version does not know."""
    if offline and kind in OFFLINE_EVENT_LABELS:
        return OFFLINE_EVENT_LABELS[kind]
    return EVENT_LABELS.get(kind, kind)
