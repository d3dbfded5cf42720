"""Storing reports many at a time without letting one bad report cost the others.

The MQTT bridge stores births, telemetry and applied versions in one transaction per
batch (thousands of gateways report every minute; a transaction each would not keep up).
Those are best effort — the next report repeats each — but a single report the database
refuses (a value out of range, a constraint) must not drop the rest of its batch:
:func:`store_many` then stores them one at a time. When the database itself is away
(:class:`~sqlalchemy.exc.OperationalError`) one at a time would only fail thousands of
times, so the batch is logged and left to the next reports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

from sqlalchemy.exc import OperationalError

log = logging.getLogger(__name__)

T = TypeVar("T")


def store_many(store: Callable[[Sequence[T]], object], items: Sequence[T], what: str) -> bool:
    """``store(items)`` in one go; if it fails on the data, each item on its own. True
    when everything was stored. Never raises (it is called for best-effort reports)."""
    if not items:
        return True
    try:
        store(items)
    except OperationalError:
        log.exception(
            "could not store %d %s: the database is not answering; they are dropped (the "
            "next reports repeat them); check the database",
            len(items),
            what,
        )
        return False
    except Exception:
        if len(items) == 1:
            log.exception("could not store a report (%s); dropped, the next one repeats it", what)
            return False
        log.warning(
            "storing %d %s in one transaction failed; storing them one at a time",
            len(items),
            what,
            exc_info=True,
        )
    else:
        return True
    stored = True
    for item in items:
        try:
            store([item])
        except OperationalError:
            log.exception(
                "could not store %s: the database is not answering; the rest of the batch "
                "is dropped (the next reports repeat it); check the database",
                what,
            )
            return False
        except Exception:
            log.exception(
                "could not store one report (%s); the others are stored, this one is "
                "dropped (the traceback says which value the database refused)",
                what,
            )
            stored = False
    return stored
