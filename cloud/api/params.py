"""Path and query parameters as the schema declares them, so a value the database cannot
hold is a 422 naming the field, never a 500 from deep in a query."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated

from fastapi import Path, Query
from pydantic import BeforeValidator, Field

from protocol.messages import SLUG_PATTERN

MAX_ROW_ID = 2**31 - 1
"""Row ids are SQL ``INTEGER`` (PostgreSQL's holds 32 bits)."""

RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
"""A row's id in a path: a facility, a reservation, an alert, a rollout…"""

SlugPath = Annotated[str, Path(pattern=SLUG_PATTERN)]
"""A site, gateway or device id in a path (``[a-z0-9-]{1,40}``)."""

Days = Annotated[int, Query(ge=1, le=366, description="how many days back")]
Limit = Annotated[int, Query(ge=1, le=1000, description="at most this many rows")]


def _iso_day(value: object) -> object:
    """Only ``YYYY-MM-DD``: pydantic would also read ``0`` or ``"0"`` as 1970-01-01."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_DAY.fullmatch(value):
        return value
    raise ValueError("write the day as YYYY-MM-DD, e.g. 2027-01-15")


_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
IsoDay = Annotated[date, BeforeValidator(_iso_day)]
"""A local day, written ``YYYY-MM-DD``."""


def _json_integer(value: object) -> object:
    """A JSON integer (``53``, or ``53.0`` as JSON Schema allows), never ``true`` or
    ``"53"``, which pydantic's lax mode would read as 1 and 53."""
    if isinstance(value, bool | str):
        raise ValueError("write a number here, not text or true/false")  # noqa: TRY004 - pydantic reports ValueError, not TypeError
    return value


JSON_INTEGER = BeforeValidator(_json_integer)
Integer = Annotated[int, JSON_INTEGER]
"""An integer in a request body. With bounds and ``| None``, write the bounds first:
``Annotated[int, Field(ge=1), JSON_INTEGER] | None`` (pydantic's schema for the other
order says ``ge`` where JSON Schema says ``minimum``)."""

QueryId = Annotated[int, Query(ge=1, le=MAX_ROW_ID)]
"""A row's id in a query string."""

BodyId = Annotated[int, Field(ge=1, le=MAX_ROW_ID), JSON_INTEGER]
"""A row's id in a request body (``true`` is not 1)."""

Epoch = Annotated[int, Field(ge=0, le=253_402_300_799), JSON_INTEGER]
"""UTC epoch seconds, up to the end of year 9999 (what a datetime can hold)."""
