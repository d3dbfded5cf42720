"""The patient's app checks in with the signed QR code of the card (:mod:`cloud.clinic.
card_qr`), never with a bare card number, and refused cards are counted.

- A code the cloud did not sign and the card of no patient get one answer
  (:class:`~cloud.clinic.errors.CardRefusedError`, 404): it never says whether a card
  exists.
- Each refusal counts against the client's address and against the site
  (:mod:`protocol.guess_limits`): after :data:`ADDRESS_RULES`' free refusals an address
  waits, after :data:`SITE_RULES`' the site's app check-in does (someone with many
  addresses); while waiting the answer is 429 "try again in N minutes"
  (:class:`~cloud.clinic.errors.CheckinRateLimitedError`). A check-in that works does not
  clear the count: a patient's own code must not launder guesses in between.

The counts live in this process's memory, bounded by ``max_keys``; a restart forgets them.
The address is the one uvicorn reports (behind a reverse proxy on the same host, its
``X-Forwarded-For``).
"""

from __future__ import annotations

import threading

from cloud.clinic.card_qr import CardQrError, card_qr_key, read_card_qr
from cloud.clinic.checkin import CheckinResult, CheckinService
from cloud.clinic.errors import CardNotRegisteredError, CardRefusedError, CheckinRateLimitedError
from cloud.clinic.models import TicketSource
from cloud.settings import CloudSettings
from protocol.clock import Clock
from protocol.guess_limits import GuessRules, GuessTable, minutes_left

ADDRESS_RULES = GuessRules(free=10, first_wait_s=60.0, max_wait_s=3600.0, max_keys=10_000)
SITE_RULES = GuessRules(free=60, first_wait_s=60.0, max_wait_s=900.0, max_keys=1_000)


class AppCheckinService:
    """Check-ins from the patient's app (module docstring)."""

    def __init__(self, checkin: CheckinService, clock: Clock, settings: CloudSettings) -> None:
        self._checkin = checkin
        self._clock = clock
        self._key = card_qr_key(settings)
        self._by_address = GuessTable(ADDRESS_RULES)
        self._by_site = GuessTable(SITE_RULES)
        self._lock = threading.Lock()  # FastAPI runs the sync routes in a thread pool

    def check_in(
        self, site: str, qr: str, *, client: str, department: str | None = None
    ) -> CheckinResult:
        """Check in at ``site`` with the text of the card's QR code, sent from ``client``."""
        self._refuse_while_waiting(site, client)
        try:
            card = read_card_qr(self._key, qr)
            return self._checkin.check_in(
                site, card.digits, department=department, source=TicketSource.APP
            )
        except (CardQrError, CardNotRegisteredError):
            now = self._clock.now()
            with self._lock:
                self._by_address.wrong(client, now)
                self._by_site.wrong(site, now)
            raise CardRefusedError from None

    def _refuse_while_waiting(self, site: str, client: str) -> None:
        now = self._clock.now()
        with self._lock:
            waits = [
                t
                for t in (
                    self._by_address.waits_until(client, now),
                    self._by_site.waits_until(site, now),
                )
                if t is not None
            ]
        if waits:
            until = max(waits)
            raise CheckinRateLimitedError(minutes_left(until, now), max(1, round(until - now)))
