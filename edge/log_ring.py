"""The agent's recent log lines in memory, for the ``logs`` fleet command.

:class:`LogRing` is a logging handler on the root logger that keeps the last ``capacity``
records as JSON lines (:class:`protocol.tracing.JsonFormatter`, with the trace id). A log
line never holds a PIN or a card number (DESIGN.md, Principles 5); as a second guard, any
run of 12 or more digits standing alone (an offline PIN, a card number) is masked before it
is kept.
"""

from __future__ import annotations

import logging
import re
from collections import deque

from protocol.tracing import JsonFormatter

DEFAULT_CAPACITY = 1000
# not inside an id: a UUID's last group may be twelve digits by chance
_LONG_DIGITS = re.compile(r"(?<![0-9A-Za-z-])[0-9]{12,}(?![0-9A-Za-z-])")


class LogRing(logging.Handler):
    """Keeps the newest ``capacity`` log lines; :meth:`install` on the root logger."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, *, service: str = "agent") -> None:
        super().__init__()
        self.setFormatter(JsonFormatter(service))
        self._lines: deque[str] = deque(maxlen=capacity)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # logging must never raise into the caller (stdlib pattern)
            self.handleError(record)
            return
        self._lines.append(_LONG_DIGITS.sub(lambda m: "#" * len(m.group()), line))

    def tail(self, n: int) -> list[str]:
        """The newest ``n`` lines, oldest first."""
        if n <= 0:
            return []
        return list(self._lines)[-n:]

    def install(self) -> None:
        """Start keeping what the root logger passes on."""
        root = logging.getLogger()
        if self not in root.handlers:
            root.addHandler(self)

    def uninstall(self) -> None:
        logging.getLogger().removeHandler(self)
