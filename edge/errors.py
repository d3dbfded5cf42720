"""The error root of the edge agent.

Each error also inherits the stdlib category it belongs to, so a caller that only knows
``OSError`` or ``ValueError`` still catches it. Third-party exceptions (pyserial, sqlite3,
aiomqtt) are translated at the boundary and chained.
"""

from __future__ import annotations

from protocol.errors import DenenError
from protocol.lock_wire import NackCode


class EdgeError(DenenError):
    """Root of every error raised by the edge agent."""


class ConfigError(EdgeError, ValueError):
    """The site config file is missing, unreadable or invalid; the message says where."""


class UnsupportedTransport(EdgeError, ValueError):  # noqa: N818 - domain names from the design
    """A transport spec names a transport this agent cannot drive (yet)."""


class LockUnreachable(EdgeError, ConnectionError):  # noqa: N818 - domain names from the design
    """A lock did not answer: not ready, retry later."""

    def __init__(
        self,
        lock_id: str,
        address: str,
        reason: str = "",
        *,
        hint: str = "check the cable and `denen provision doctor`",
    ) -> None:
        self.lock_id = lock_id
        self.address = address
        detail = f" ({reason})" if reason else ""
        super().__init__(f"lock {lock_id} did not answer on {address}{detail}: {hint}")


class LockNotPaired(EdgeError, LookupError):  # noqa: N818 - domain names from the design
    """No key for this lock in the agent's key store: it is not driven until it is paired."""

    def __init__(self, lock_id: str, address: str) -> None:
        self.lock_id = lock_id
        # a BLE lock's address is AA:BB:CC:DD:EE:FF, a serial one a device path
        where = f"--serial {address}" if address.startswith("/") else f"--ble {address}"
        super().__init__(
            f"lock {lock_id} is not paired: run "
            f"`denen provision lock pair {where} --id {lock_id}` at the door"
        )


class LockRejected(EdgeError):  # noqa: N818 - domain names from the design
    """The lock answered a request with NACK (the lock says *we* sent something wrong)."""

    def __init__(self, lock_id: str, request: str, code: int, message: str) -> None:
        self.lock_id = lock_id
        self.request = request
        self.code = code
        self.detail = message  # the lock's own words, without our hint
        hint = ""
        if code in (NackCode.AUTH_FAILED, NackCode.NOT_PAIRED):
            hint = (
                ": the lock does not know our key (reset, or paired elsewhere); pair it again "
                f"with `denen provision lock pair --serial … --id {lock_id}`"
            )
        super().__init__(f"lock {lock_id} refused {request}: code {code}: {message}{hint}")


class KeyStoreError(EdgeError, OSError):
    """A lock key file that cannot be read or written, or is not safe to use."""


class LockSyncMismatch(EdgeError):  # noqa: N818 - domain names from the design
    """After loading slots the lock reports something other than what was loaded."""


class OutboxError(EdgeError, OSError):
    """The outbox could not store or delete a row (disk full, I/O error).

    Nothing is lost: the failed transaction is rolled back and the caller keeps its data
    (a lock keeps unacknowledged events; a row not deleted is published again).
    """


class StoreError(EdgeError, OSError):
    """The local state store could not read or write."""
