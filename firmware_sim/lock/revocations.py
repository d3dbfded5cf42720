"""The lock's list of cancelled offline PINs, loaded whole by REVOKE_OFFLINE at each sync.

Bounded: a lock holds ``capacity`` live entries (64 by default, 6 bytes each in flash).
An entry lives until its code's window and clock grace are over
(:attr:`~protocol.offline_pin.OfflinePinId.expires_at`); after that no lock accepts the
code anyway, so the entry is dropped. A list with more live entries than fit is not
half-applied: the lock keeps what it had and *suspends* offline PINs (refuses every one)
until a list that fits arrives, because a lock that cannot hold every revocation cannot
tell a cancelled code from a good one. Slot PINs are unaffected.

The simulator keeps the list in memory, like its slots; a real lock keeps it in flash.
"""

from __future__ import annotations

from protocol.offline_pin import OfflinePinId

DEFAULT_CAPACITY = 64


class OfflineRevocations:
    """Cancelled offline PINs (by id) and whether offline PINs are suspended."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self.suspended = False
        self._revoked: set[OfflinePinId] = set()

    def replace(self, revoked: list[OfflinePinId], now: int | None) -> bool:
        """Install ``revoked`` (minus entries expired at ``now``, when the clock is set).

        Returns False, keeps the old list and suspends offline PINs when the live entries
        exceed :attr:`capacity`; a list that fits lifts the suspension.
        """
        live = {r for r in revoked if now is None or r.expires_at > now}
        if len(live) > self.capacity:
            self.suspended = True
            return False
        self._revoked = live
        self.suspended = False
        return True

    def prune(self, now: int) -> None:
        """Forget entries whose codes no lock accepts any more."""
        if any(r.expires_at <= now for r in self._revoked):
            self._revoked = {r for r in self._revoked if r.expires_at > now}

    def refuses(self, pid: OfflinePinId) -> bool:
        """True when the code ``pid`` must not open: revoked, or offline PINs suspended."""
        return self.suspended or pid in self._revoked

    def clear(self) -> None:
        """Forget everything (re-pairing: a new secret makes every old code invalid)."""
        self._revoked.clear()
        self.suspended = False

    def __len__(self) -> int:
        return len(self._revoked)

    def __contains__(self, pid: object) -> bool:
        return pid in self._revoked
