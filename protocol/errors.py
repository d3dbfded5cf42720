"""The error root of Denen's shared contracts.

Each error also inherits the stdlib category it belongs to, so a caller that only knows
``ValueError`` still catches a malformed frame.
"""

from __future__ import annotations


class DenenError(Exception):
    """Root of every error raised by Denen code."""


class ProtocolError(DenenError, ValueError):
    """Bytes or a message that do not follow the contract."""


class LocalProtocolError(ProtocolError):
    """We were about to send something that breaks the contract (a bug on our side)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something that breaks the contract."""


class FrameError(RemoteProtocolError):
    """A lock frame that cannot be decoded."""


class TopicError(ProtocolError):
    """An MQTT topic that is not part of the Denen topic tree."""


class MessageError(RemoteProtocolError):
    """An MQTT payload that is not a valid Denen message."""
