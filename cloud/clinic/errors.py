"""What the clinic services refuse, in words a patient or the staff can act on. Each is a
:mod:`cloud.errors` class, so the API answers with the usual status code."""

from __future__ import annotations

from cloud.errors import ConflictError, InvalidRequestError, NotFoundError


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
