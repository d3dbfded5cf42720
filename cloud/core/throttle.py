"""How fast one may guess a password or a one-time code: per (account, client address)
with backoff, and a ceiling per account that only a distributed attack reaches.

Keyed by the pair, a stranger's wrong guesses slow the stranger's address only: the owner,
logging in from elsewhere, is never locked out by them (the old lockout per user name let
anyone lock anyone out). From one address, five wrong guesses are free, then each further
one waits :data:`BACKOFF_FIRST_S`, doubling up to :data:`BACKOFF_CAP_S` — about a dozen
guesses in the first hour, a couple a day after. An attacker with many addresses meets the
per-account ceiling: :data:`ACCOUNT_CEILING` failures within :data:`ACCOUNT_WINDOW_S`
close the account to every address for the rest of that window, and a WARNING tells ops.

Memory is bounded: at most :data:`MAX_TRACKED` pairs and as many accounts are remembered
(least recently failed forgotten first, about 2 MB at the bound). State is per process, as
before: with N workers an address gets N times the guesses, still few.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import TypeVar

from cloud.errors import TooManyAttemptsError
from protocol.clock import Clock

log = logging.getLogger(__name__)

FREE_FAILURES = 5
BACKOFF_FIRST_S = 60
BACKOFF_CAP_S = 3600
ACCOUNT_CEILING = 100  # one address gets ~12 guesses an hour: this needs ~10 addresses
ACCOUNT_WINDOW_S = 3600
MAX_TRACKED = 10_000

K = TypeVar("K")
V = TypeVar("V")


@dataclass(slots=True)
class _Pair:
    failures: int = 0
    wait_until: float = 0.0


@dataclass(slots=True)
class _Account:
    window_start: float
    failures: int = 0
    closed_until: float = 0.0


def _lru_get(table: OrderedDict[K, V], key: K, make: V) -> V:
    """``table[key]`` (``make`` when missing), marked most recently used; the least
    recently used entry goes when the table is past :data:`MAX_TRACKED`."""
    value = table.get(key)
    if value is None:
        value = table[key] = make
        if len(table) > MAX_TRACKED:
            table.popitem(last=False)
    table.move_to_end(key)
    return value


def too_many(minutes: int) -> TooManyAttemptsError:
    """The answer to a throttled login: when to try again (Japanese first, English beside
    it: the API returns it as is, the login page shows it to staff of either language)."""
    return TooManyAttemptsError(
        f"ログインの失敗が続いたため、{minutes}分後にもう一度お試しください。 / "
        f"too many failed logins; try again in {minutes} minute(s)"
    )


class LoginThrottle:
    """Counts failed logins (password or one-time code) per account and address."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._pairs: OrderedDict[tuple[str, str], _Pair] = OrderedDict()
        self._accounts: OrderedDict[str, _Account] = OrderedDict()

    def check(self, account: str, address: str) -> None:
        """Raise :class:`TooManyAttemptsError` (saying when to try again) while ``address``
        must wait before guessing for ``account``, or the account is closed to all."""
        now = self._clock.now()
        pair = self._pairs.get((account, address))
        acct = self._accounts.get(account)
        until = max(
            pair.wait_until if pair is not None else 0.0,
            acct.closed_until if acct is not None else 0.0,
        )
        if now < until:
            raise too_many(max(1, math.ceil((until - now) / 60)))

    def failed(self, account: str, address: str) -> None:
        """Count a wrong guess: the address waits after :data:`FREE_FAILURES`; the
        account closes at :data:`ACCOUNT_CEILING` within the window."""
        now = self._clock.now()
        pair = _lru_get(self._pairs, (account, address), _Pair())
        pair.failures += 1
        if pair.failures >= FREE_FAILURES:
            doublings = min(pair.failures - FREE_FAILURES, 16)
            pair.wait_until = now + min(BACKOFF_CAP_S, BACKOFF_FIRST_S * 2**doublings)
        acct = _lru_get(self._accounts, account, _Account(window_start=now))
        if now >= acct.window_start + ACCOUNT_WINDOW_S:
            acct.window_start, acct.failures = now, 0
        acct.failures += 1
        if acct.failures == ACCOUNT_CEILING:
            acct.closed_until = acct.window_start + ACCOUNT_WINDOW_S
            log.warning(
                "login ceiling reached: %d failed logins for account %r within %d s, more "
                "than one address can make; the account refuses every login for %d s. "
                "Likely a distributed guessing attack: check the access log for the "
                "addresses and tell the account's owner",
                acct.failures,
                account,
                ACCOUNT_WINDOW_S,
                math.ceil(acct.closed_until - now),
            )

    def succeeded(self, account: str, address: str) -> None:
        """Forget the address's wrong guesses for the account (not the account's count)."""
        self._pairs.pop((account, address), None)
