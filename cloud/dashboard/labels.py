"""Words a facility manager reads for what the wire calls an event kind, in English or
Japanese (the English text is the catalogue's key: :mod:`cloud.dashboard.i18n`)."""

from __future__ import annotations

from cloud.dashboard.i18n import N_, Lang, gettext
from protocol.messages import LockEventKind

EVENT_LABELS: dict[str, str] = {
    LockEventKind.UNLOCKED: N_("Unlocked with PIN"),
    LockEventKind.DENIED_WRONG_PIN: N_("Denied: wrong PIN"),
    LockEventKind.DENIED_OUTSIDE_WINDOW: N_("Denied: outside the booked hours"),
    LockEventKind.DENIED_LOCKED_OUT: N_("Denied: keypad locked out"),
    LockEventKind.DENIED_REVOKED: N_("Denied: cancelled offline PIN"),
    LockEventKind.RELOCKED: N_("Relocked"),
    LockEventKind.DOOR_OPENED: N_("Door opened"),
    LockEventKind.DOOR_CLOSED: N_("Door closed"),
    LockEventKind.DOOR_HELD_OPEN: N_("Door held open"),
    LockEventKind.LOCKOUT_STARTED: N_("Keypad locked out after wrong PINs"),
    LockEventKind.BATTERY: N_("Battery level"),
    LockEventKind.CLOCK_SET: N_("Clock set by the gateway"),
    LockEventKind.JAM: N_("Bolt jammed"),
    LockEventKind.REMOTE_UNLOCKED: N_("Emergency remote unlock (city operations)"),
    LockEventKind.FRAMES_REFUSED: N_("Refused forged or replayed commands"),
}


# an offline PIN's events (no slot: the lock checked a 12-digit code by itself)
OFFLINE_EVENT_LABELS: dict[str, str] = {
    LockEventKind.UNLOCKED: N_("Unlocked with offline PIN"),
    LockEventKind.DENIED_OUTSIDE_WINDOW: N_("Denied: offline PIN outside its hours"),
}


def event_label(kind: str, offline: bool = False, lang: Lang = "en") -> str:
    """The label of ``kind`` (of an offline PIN's event when ``offline``) in ``lang``, or
    the kind itself for one this version does not know."""
    if offline and kind in OFFLINE_EVENT_LABELS:
        return gettext(lang, OFFLINE_EVENT_LABELS[kind])
    return gettext(lang, EVENT_LABELS[kind]) if kind in EVENT_LABELS else kind
