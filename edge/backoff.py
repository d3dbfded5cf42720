"""Capped exponential backoff with full jitter (AWS architecture blog, 2015)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """``next_delay()`` returns a random delay in ``[0, min(cap, base * 2**attempt)]``.

    Full jitter spreads a fleet of gateways that lost the broker at the same moment, so
    they do not all reconnect in the same second.
    """

    base_s: float = 0.5
    cap_s: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; each call widens the window up to the cap."""
        ceiling = min(self.cap_s, self.base_s * (2 ** min(self.attempt, 32)))
        self.attempt += 1
        return self.rng.uniform(0, ceiling)

    def reset(self) -> None:
        """Call after a success so the next failure starts small again."""
        self.attempt = 0
