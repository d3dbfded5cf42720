"""Payment of a booking: unpaid → paid → refunded, behind a :class:`PaymentProvider`.

Approval does not wait for payment: the city's counter takes the fee at the facility
office before or on the day, so a booking is approved (and its PIN issued) while
unpaid; the manager records the payment when the money is handed over, and a paid
booking that is cancelled is refunded. A card provider plugs in behind the same
interface later (its payments are confirmed by the provider's callback, not by hand).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from cloud.errors import ConflictError, InvalidRequestError, NotFoundError
from cloud.gym.booking_common import LOAD, reservation_view
from cloud.gym.models import PaymentState, Reservation, ReservationStatus
from cloud.gym.views import ReservationView
from protocol.clock import Clock


class PaymentAction(StrEnum):
    PAY = "pay"
    REFUND = "refund"


# every legal move; anything else is refused
TRANSITIONS: Mapping[tuple[PaymentState, PaymentAction], PaymentState] = {
    (PaymentState.UNPAID, PaymentAction.PAY): PaymentState.PAID,
    (PaymentState.PAID, PaymentAction.REFUND): PaymentState.REFUNDED,
}

_REFUSALS: Mapping[tuple[PaymentState, PaymentAction], str] = {
    (PaymentState.PAID, PaymentAction.PAY): "is paid already; nothing to do",
    (PaymentState.REFUNDED, PaymentAction.PAY): (
        "was refunded and cannot be paid again; the citizen books anew"
    ),
    (PaymentState.UNPAID, PaymentAction.REFUND): ("is unpaid; only a paid booking can be refunded"),
    (PaymentState.REFUNDED, PaymentAction.REFUND): "was refunded already; nothing to do",
}


def next_payment_state(
    reservation_id: str, state: PaymentState, action: PaymentAction
) -> PaymentState:
    """The state after ``action``, or :class:`ConflictError` saying why not."""
    after = TRANSITIONS.get((state, action))
    if after is None:
        raise ConflictError(f"the payment of booking {reservation_id} {_REFUSALS[state, action]}")
    return after


class PaymentProvider(Protocol):
    """How a booking is paid. ``method`` is stored on the booking."""

    @property
    def method(self) -> str:
        """A short name (``counter``)."""
        ...

    @property
    def confirmed_by_staff(self) -> bool:
        """True when a manager records the payment by hand (money at a counter)."""
        ...

    def instructions(self, fee_yen: int, facility_name: str) -> str:
        """What the citizen is told to do to pay."""
        ...

    def refund(self, reservation_id: str, fee_yen: int, facility_name: str) -> str:
        """Give the fee back; return what the citizen is told about it."""
        ...


def yen(amount: int) -> str:
    """``¥2,400``."""
    return f"\u00a5{amount:,}"


class CounterPayment:
    """Pay at the facility office's counter; a manager records it; refunds in cash there."""

    method = "counter"
    confirmed_by_staff = True

    def instructions(self, fee_yen: int, facility_name: str) -> str:
        """Where and how much to pay."""
        if fee_yen == 0:
            return "This booking is free of charge."
        return (
            f"Please pay {yen(fee_yen)} at the counter of {facility_name} before or on the "
            "day of your booking."
        )

    def refund(self, reservation_id: str, fee_yen: int, facility_name: str) -> str:
        """Nothing to call: the counter hands the money back."""
        return (
            f"Your payment of {yen(fee_yen)} is refunded: collect it at the counter of "
            f"{facility_name}."
        )


class PaymentService:
    """Record payments that staff confirm, with who did it and when."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        providers: Mapping[str, PaymentProvider],
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._providers = providers

    def mark_paid(self, reservation_id: str, by: str) -> ReservationView:
        """A manager took the fee at the counter: unpaid → paid."""
        now = int(self._clock.now())
        with self._sessions.begin() as session:
            r = session.get(Reservation, reservation_id, options=LOAD, with_for_update=True)
            if r is None:
                raise NotFoundError(f"no reservation {reservation_id}")
            provider = self._providers[r.payment_method]
            if not provider.confirmed_by_staff:
                raise InvalidRequestError(
                    f"booking {reservation_id} is paid by {provider.method}; its provider "
                    "confirms the payment, not a manager"
                )
            if r.status in (ReservationStatus.CANCELLED, ReservationStatus.REJECTED):
                raise ConflictError(
                    f"booking {reservation_id} is {r.status.value}; there is nothing to pay"
                )
            if r.fee_yen == 0:
                raise ConflictError(f"booking {reservation_id} is free of charge; nothing to pay")
            r.payment_state = next_payment_state(r.id, r.payment_state, PaymentAction.PAY)
            r.paid_at, r.paid_by = now, by
            return reservation_view(r, self._providers)


def refund_if_paid(
    session: Session,
    r: Reservation,
    provider: PaymentProvider,
    by: str,
    now: int,
) -> str | None:
    """Inside the caller's transaction: refund a paid booking; the note for the citizen."""
    if r.payment_state is not PaymentState.PAID:
        return None
    r.payment_state = next_payment_state(r.id, r.payment_state, PaymentAction.REFUND)
    r.refunded_at, r.refunded_by = now, by
    session.flush()
    return provider.refund(r.id, r.fee_yen, r.facility.name)
