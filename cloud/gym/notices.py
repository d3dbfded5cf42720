"""The mails a booking sends, queued in the outbox inside the caller's transaction:
confirm your address, received, approved (with the PIN), not approved, cancelled. The
PIN and the booking and confirmation links are queued as private: staff never read them
in the outbox (:mod:`cloud.core.mail`)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from cloud.core.mail import queue_mail
from cloud.gym.booking_common import offline_code
from cloud.gym.models import Reservation
from cloud.gym.pin_seal import PinSeal
from cloud.localtime import format_local, format_span, format_span_ja
from cloud.settings import CloudSettings


def _when(r: Reservation, settings: CloudSettings) -> str:
    return f"{format_span(r.starts_at, r.ends_at, settings.zone)} ({settings.timezone})"


def confirm_address(
    session: Session,
    r: Reservation,
    settings: CloudSettings,
    *,
    confirm_url: str,
    valid_minutes: int,
    now: int,
) -> None:
    """Ask the citizen to confirm the booking from the mailbox it names (Japanese first,
    English beside): until then no PIN exists. Without SMTP the outbox is the only
    mailbox (the demo), so its reader is shown the link; with SMTP nobody but the
    recipient ever reads it."""
    ja_when = f"{format_span_ja(r.starts_at, r.ends_at, settings.zone)}({settings.timezone})"
    queue_mail(
        session,
        r.email,
        f"予約の確認 / Please confirm your booking: {r.facility.name}",
        f"{r.citizen_name} 様\n\n"
        f"{r.facility.name} {r.room.name} の {ja_when} のご予約を受け付けました。\n"
        f"{valid_minutes} 分以内に次のリンクを開いて予約を確定してください。"
        "確定するまで暗証番号(PIN)は発行されません。"
        "期限を過ぎると予約は取り消され、枠は空きに戻ります。\n"
        "お心当たりのない場合は、このメールを破棄してください。\n\n"
        f"{confirm_url}\n\n"
        "----\n"
        f"Dear {r.citizen_name},\n\n"
        f"we received a booking of {r.room.name} ({r.facility.name}) for {_when(r, settings)} "
        "under this address.\n"
        f"Please confirm it within {valid_minutes} minutes at the link above; until then no "
        "PIN is issued. Unconfirmed, the booking lapses and the slot is freed.\n"
        "If you did not book, ignore this mail.\n",
        now,
        private=(confirm_url,) if settings.smtp_host else (),
    )


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
        private=(status_url,),
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
    pin, note = None, ""
    if grant.pin_sealed is not None:
        pin = PinSeal(settings.secret_key).open(grant.id, grant.pin_sealed)
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
        private=(pin or "", status_url),
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
