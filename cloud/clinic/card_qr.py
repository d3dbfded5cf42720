"""The signed QR code on a patient card: what the patient's phone shows to check in.

A card number alone is not enough to check in from the app: numbers are printed on paper,
read aloud at the desk and follow a pattern (facility, serial, check digit), so they can be
guessed. The reception prints a QR code on the card that carries the number and a MAC the
cloud made, and the app sends that::

    denen-card:1:<site>:<16 digits>:<mac>

``mac`` is the first 16 bytes (hex) of HMAC-SHA256 under the cloud's QR key over
``"<site>|<digits>"``; ``site`` is the clinic whose reception printed it (the card still
checks in at every site of the network, like the card itself). The QR key is derived
from the clinic card secret (:func:`cloud.clinic.publish.card_secret`), so changing
``clinic_card_secret`` (or ``secret_key`` when that is unset) voids every printed code.

:func:`read_card_qr` says only "not a code of ours", whatever was wrong with it, so the
answer to a forged code never differs from the answer to a real code of an unknown card
(the check-in says the same for both: :class:`cloud.clinic.errors.CardRefusedError`).
"""

from __future__ import annotations

import hashlib
import hmac
import re

from cloud.clinic.publish import card_secret
from cloud.settings import CloudSettings
from protocol.ids import SLUG_RE
from protocol.patient_card import CardNumberError, PatientCardNumber

PREFIX = "denen-card:1:"
MAC_BYTES = 16
_QR_RE = re.compile(
    rf"{re.escape(PREFIX)}(?P<site>{SLUG_RE.pattern}):(?P<digits>[0-9]{{16}}):"
    rf"(?P<mac>[0-9a-f]{{{2 * MAC_BYTES}}})"
)


class CardQrError(ValueError):
    """Not a card QR code the cloud signed (the reason is never told to the sender)."""


def card_qr_key(settings: CloudSettings) -> bytes:
    """The key of every card QR code, apart from the day keys of the card tags."""
    return hmac.new(card_secret(settings), b"denen-clinic-card-qr-v1", hashlib.sha256).digest()


def _mac(key: bytes, site: str, card: PatientCardNumber) -> str:
    body = f"{site}|{card.digits}".encode()
    return hmac.new(key, body, hashlib.sha256).digest()[:MAC_BYTES].hex()


def sign_card_qr(key: bytes, site: str, card: PatientCardNumber) -> str:
    """The text of the QR code that ``site``'s reception prints on ``card``."""
    return f"{PREFIX}{site}:{card.digits}:{_mac(key, site, card)}"


def read_card_qr(key: bytes, text: str) -> PatientCardNumber:
    """The card of a QR code the cloud signed; :class:`CardQrError` for anything else."""
    found = _QR_RE.fullmatch(text.strip())
    if found is None:
        raise CardQrError
    try:
        card = PatientCardNumber(found["digits"])
    except CardNumberError:
        raise CardQrError from None
    if not hmac.compare_digest(_mac(key, found["site"], card), found["mac"]):
        raise CardQrError
    return card
