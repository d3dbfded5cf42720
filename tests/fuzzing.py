"""How hard the fuzz tests push every parser that reads bytes or text from outside.

``make test`` runs each with a few hundred to a few thousand inputs; the long run gives
every one of them the same count, 10,000 by default (``scripts/fuzz-parsers``, which sets
:data:`LONG_RUN` and prints how many inputs each test tried).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

LONG_RUN = "DENEN_FUZZ_EXAMPLES"


def fuzz_settings(short_run: int) -> settings:
    """``short_run`` inputs in ``make test``; :data:`LONG_RUN` of them when it is set."""
    examples = int(os.environ.get(LONG_RUN, short_run))
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
