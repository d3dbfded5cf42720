"""What the clinic services refuse, in words a patient or the staff can act on. Each is a
:mod:`cloud.errors` class, so the API answers with the usual status code."""

from __future__ import annotations

from cloud.errors import ConflictError, InvalidRequestError, NotFoundError, TooManyAttemptsError


class CardNotRegisteredError(NotFoundError):
    """The card is valid but no patient holds it (HTTP 404)."""

    def __init__(self) -> None:
        super().__init__("this card is not registered; please see reception")


class InvalidCardError(InvalidRequestError):
    """Not a card number (wrong length, a misread digit); never echoes the digits."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"that is not a patient card number ({reason}); check the 16 digits and try again"
        )


class CheckinTooEarlyError(ConflictError):
    """Every appointment today is more than the check-in window away (HTTP 409)."""

    def __init__(self, appointment_local: str, opens_local: str, opens_at: int) -> None:
        super().__init__(
            f"check-in for your {appointment_local} appointment opens at {opens_local}; "
            "please come back then"
        )
        self.opens_at = opens_at


class CardRefusedError(NotFoundError):
    """The app's check-in refused the card: a code the cloud did not sign, or the card of
    no patient. One answer for both (HTTP 404), so it never tells whether a card exists."""

    def __init__(self) -> None:
        super().__init__(
            "この診察券ではアプリから受付できません。診察券のQRコードを読み取り直すか、"
            "受付窓口へお越しください。 / This card cannot check in from the app: scan the "
            "QR code printed on your card again, or please see reception."
        )


class CheckinRateLimitedError(TooManyAttemptsError):
    """Too many refused app check-ins from one address or at one site (HTTP 429);
    ``retry_after_s`` says when to try again."""

    def __init__(self, minutes: int, retry_after_s: int) -> None:
        super().__init__(
            f"アプリからの受付が続けて失敗しました。{minutes}分後にもう一度お試しください。"
            "お急ぎの方は受付窓口へお越しください。 / Too many failed check-ins: try again in "
            f"{minutes} minute{'s' if minutes != 1 else ''}, or please see reception."
        )
        self.retry_after_s = retry_after_s
