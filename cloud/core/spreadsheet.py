"""CSV for the city's spreadsheets; every export the cloud serves is written here.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula, and
some skip a leading tab or carriage return first. A name typed into the cloud such as
``=HYPERLINK(...)`` would run on a city clerk's machine, so such a cell is written with a
leading single quote, which shows it as text (OWASP "CSV injection"). Numbers are written
as they are: only text can carry a formula.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value: object) -> object:
    """``value`` as a CSV cell: blank for None, text that could be a formula quoted."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_document(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A CSV document (CRLF line ends, a header line) with every cell made safe."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([spreadsheet_cell(value) for value in row])
    return out.getvalue()
