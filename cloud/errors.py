"""The error root of the cloud service. Routes turn these into 4xx JSON answers."""

from __future__ import annotations

from protocol.errors import DenenError


class CloudError(DenenError):
    """Root of every error the cloud raises on purpose."""


class NotFoundError(CloudError, LookupError):
    """The thing asked for does not exist (or the caller may not know it exists)."""


class InvalidRequestError(CloudError, ValueError):
    """The caller asked for something the rules do not allow; the message says why."""


class ConflictError(CloudError, ValueError):
    """The request clashes with the current state (an overlap, a second approval)."""


class IdempotencyKeyReusedError(ConflictError):
    """An Idempotency-Key came again with a different booking."""


class RefusedError(CloudError, PermissionError):
    """A one-time credential (an enrollment token) that is unknown, used or expired."""


class UnavailableError(CloudError, RuntimeError):
    """A feature this deployment has not configured; the message names the setting."""


class TooManyAttemptsError(CloudError, PermissionError):
    """Too many wrong passwords for one user name in a row: wait, then try again."""
