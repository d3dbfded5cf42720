"""How many anonymous bookings one client address, and one facility, take per hour.

Booking needs no login, so without a limit one script fills a gym's month with
unconfirmed bookings (each holds its slot for the confirmation time) and mails a
confirmation request to any address it likes. Each booking takes a place in the last
hour's window of its client address and of its facility; a full window answers 429 with
the minutes until its oldest place frees.

Memory is bounded: an address keeps at most its limit's timestamps, and only the
``booking_limit_addresses`` most recently seen addresses are remembered (the oldest is
forgotten first); facilities are the city's own, few. The windows are per cloud worker:
with several workers an address gets up to that many times the limit.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque

from cloud.errors import TooManyAttemptsError
from cloud.settings import CloudSettings

WINDOW_S = 3600


class BookingLimits:
    """Sliding one-hour windows per client address and per facility."""

    def __init__(self, settings: CloudSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()  # sync routes run in a thread pool
        self._addresses: OrderedDict[str, deque[float]] = OrderedDict()
        self._facilities: dict[int, deque[float]] = {}

    def take(self, client: str, facility_id: int, now: float) -> None:
        """Count one booking from ``client`` at ``facility_id``, or raise
        :class:`TooManyAttemptsError` (nothing counted) when either window is full."""
        s = self._settings
        with self._lock:
            by_address = self._addresses.get(client)
            if by_address is None:
                by_address = deque(maxlen=s.booking_limit_per_address)
            by_facility = self._facilities.setdefault(
                facility_id, deque(maxlen=s.booking_limit_per_facility)
            )
            for window, limit, whose in (
                (by_address, s.booking_limit_per_address, ("このアドレス", "from your address")),
                (by_facility, s.booking_limit_per_facility, ("この施設", "for this facility")),
            ):
                while window and window[0] <= now - WINDOW_S:
                    window.popleft()
                if len(window) >= limit:
                    minutes = max(1, math.ceil((window[0] + WINDOW_S - now) / 60))
                    raise TooManyAttemptsError(
                        f"{whose[0]}からの予約が多すぎます。{minutes} 分後にもう一度お試し"
                        f"ください。 / Too many bookings {whose[1]} in the last hour; try "
                        f"again in {minutes} minutes."
                    )
            by_address.append(now)
            by_facility.append(now)
            self._addresses[client] = by_address
            self._addresses.move_to_end(client)
            while len(self._addresses) > s.booking_limit_addresses:
                self._addresses.popitem(last=False)

    def give_back(self, client: str, facility_id: int, at: float) -> None:
        """Undo :meth:`take` of a booking that was refused (a form error is no booking)."""
        with self._lock:
            for window in (self._addresses.get(client), self._facilities.get(facility_id)):
                if window is not None and at in window:
                    window.remove(at)
