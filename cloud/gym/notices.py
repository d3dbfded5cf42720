"""The mails a booking sends, queued in the outbox inside the caller's transaction:
received, approved (with the PIN), not approved, cancelled."""

from __future__ import annotations

from sqlalchemy.orm import Session

from cloud.core.mail import queue_mail
from cloud.gym.booking_common import offline_code
from cloud.gym.models import Reservation
from cloud.localtime import format_local, format_span
from cloud.settings import CloudSettings


def _when(r: Reservation, settings: CloudSettings) -> str:
    return f"{format_span(r.starts_at, r.ends_at, settings.zone)} ({settings.timezone})"


def booking_received(
    session: Session,
    r: Reservation,
    settings: CloudSettings,
    *,
    status_url: str,
    payment: str,
    now: int,
) -> None:
    """Tell the citizen the booking is waiting for a manager."""
    queue_mail(
        session,
        r.email,
        f"Booking received: {r.facility.name}",
        f"Dear {r.citizen_name},\n\nwe received your booking of {r.room.name} "
        f"({r.facility.name}) for {_when(r, settings)}.\n"
        f"{payment}\n"
        "A manager will approve it; your PIN will then be shown here:\n"
        f"{status_url}\n",
        now,
    )


def booking_approved(
    session: Session,
    r: Reservation,
    settings: CloudSettings,
    *,
    status_url: str,
    payment: str,
    now: int,
) -> None:
    """Tell the citizen the PIN and its window (the only mail that carries a PIN): the
    slot PIN, or the offline PIN with its whole-hour window — one code either way."""
    grant = r.grant
    assert grant is not None
    zone = settings.zone
    pin, note = grant.pin, ""
    if grant.offline_pin is not None:
        pin = offline_code(grant.offline_pin)
        note = " (whole hours: the lock checks this code by itself)"
    queue_mail(
        session,
        r.email,
        f"Your PIN for {r.room.name}",
        f"Dear {r.citizen_name},\n\nyour booking of {r.room.name} ({r.facility.name}) "
        f"for {_when(r, settings)} is approved.\n\n"
        f"PIN: {pin}\n"
        f"Valid from {format_local(grant.window_start, zone)} to "
        f"{format_local(grant.window_end, zone)} ({settings.timezone}){note}.\n"
        "Type the PIN and # on the keypad; the door locks itself again.\n\n"
        f"{payment}\n"
        f"Your booking (and to cancel it): {status_url}\n",
        now,
    )


def booking_rejected(session: Session, r: Reservation, now: int) -> None:
    """Tell the citizen the booking was not approved."""
    queue_mail(
        session,
        r.email,
        f"Booking not approved: {r.facility.name}",
        f"Dear {r.citizen_name},\n\nyour booking of {r.room.name} could not be "
        "approved. Please pick another time.\n",
        now,
    )


def booking_cancelled(
    session: Session,
    r: Reservation,
    settings: CloudSettings,
    *,
    by_citizen: bool,
    refund: str | None,
    now: int,
) -> None:
    """Tell the citizen the booking is cancelled, why, and about any refund."""
    who = "As you asked, your" if by_citizen else "The facility manager cancelled your"
    lines = [
        f"Dear {r.citizen_name},\n",
        f"{who} booking of {r.room.name} ({r.facility.name}) for {_when(r, settings)} "
        "is cancelled.",
        f"Reason: {r.cancel_reason}",
    ]
    if r.grant is not None and r.grant.offline_pin is not None:
        lines.append(
            "The PIN you were given is cancelled; the door refuses it once the lock has "
            "taken the cancellation at its next sync."
        )
    elif r.grant is not None:
        lines.append("The PIN you were given no longer opens the door.")
    if refund:
        lines.append(refund)
    queue_mail(
        session, r.email, f"Booking cancelled: {r.facility.name}", "\n".join(lines) + "\n", now
    )
