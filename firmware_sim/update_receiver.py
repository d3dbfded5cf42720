"""The device side of a firmware update, shared by the lock and the display (sans-IO).

A real device writes the chunks into its second flash slot while it keeps running from the
first, checks the whole image, and only then swaps slots and reboots; power lost half-way
leaves the old slot running. :class:`UpdateReceiver` is that second slot: it takes
``UPDATE_BEGIN`` / ``UPDATE_CHUNK`` / ``UPDATE_COMMIT`` payloads
(:mod:`protocol.firmware_transfer`) and says what to install; the device decides when it
may reboot (a lock not while its door is in use) and what survives the reboot.

Refusals raise :class:`~protocol.firmware_image.ImageError` (the image is wrong: the
transfer is discarded) or :class:`TransferError` (a request out of order: the transfer is
kept, so the agent can go on or send BEGIN again).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from firmware_sim.errors import SimulatorError
from protocol.firmware_image import (
    DeviceKind,
    ImageError,
    ImageHeader,
    TrustedKeys,
    check_header,
    check_payload,
    parse_head,
    running_version,
)
from protocol.firmware_transfer import decode_chunk, decode_commit

# a lock's or display's second flash slot
DEFAULT_CAPACITY = 512 * 1024


class TransferError(SimulatorError, ValueError):
    """An update request the transfer cannot take now (no BEGIN, a gap, COMMIT too early)."""


@dataclass
class UpdateReceiver:
    """One device's update slot: the image being received and the one last installed."""

    kind: DeviceKind
    model: str
    trusted: TrustedKeys
    capacity: int = DEFAULT_CAPACITY
    installed: ImageHeader | None = None
    _header: ImageHeader | None = None
    _signature: bytes = field(default=b"", repr=False)
    _received: bytearray = field(default_factory=bytearray, repr=False)

    @property
    def in_progress(self) -> bool:
        return self._header is not None

    @property
    def progress(self) -> tuple[int, int]:
        """Payload bytes held, of how many (0, 0 when no transfer is in progress)."""
        if self._header is None:
            return 0, 0
        return len(self._received), self._header.payload_len

    def begin(self, head: bytes, running: str) -> tuple[int, int]:
        """Start (or restart) a transfer from the image's header and signature."""
        self.abandon()
        header, signature = parse_head(head)
        check_header(
            header,
            self.trusted,
            kind=self.kind,
            model=self.model,
            running=running,
            max_payload=self.capacity,
        )
        self._header, self._signature = header, signature
        return self.progress

    def chunk(self, payload: bytes) -> tuple[int, int]:
        """Store one chunk; repeated bytes are taken again when they are the same."""
        if self._header is None:
            raise TransferError("no update in progress: send UPDATE_BEGIN first")
        offset, data = decode_chunk(payload)
        have, total = self.progress
        if offset > have:
            raise TransferError(f"chunk at {offset} leaves a gap: the next byte expected is {have}")
        end = offset + len(data)
        if end > total:
            raise TransferError(f"chunk ends at {end}, past the {total}-byte payload")
        overlap = min(end, have) - offset
        if self._received[offset : offset + overlap] != data[:overlap]:
            raise TransferError(
                f"chunk at {offset} differs from the bytes already received: "
                "send UPDATE_BEGIN to restart"
            )
        self._received += data[overlap:]
        return self.progress

    def commit(self, payload: bytes, running: str) -> ImageHeader | None:
        """Check the image COMMIT names; the header to install, ``None`` when it already runs.

        Raises ImageError (transfer discarded) for a wrong hash or signature, TransferError
        (kept) for a COMMIT of another image or before the last byte.
        """
        digest = decode_commit(payload)
        header = self._header
        if header is None:
            done = self.installed
            if done is not None and done.sha256 == digest and self._runs(done, running):
                return None  # a repeated COMMIT whose ACK was lost: already installed
            raise TransferError("no update in progress: send UPDATE_BEGIN first")
        if digest != header.sha256:
            raise TransferError("COMMIT names another image than the one being received")
        have, total = self.progress
        if have < total:
            raise TransferError(f"{have} of {total} payload bytes received: send the rest")
        try:
            check_payload(header, bytes(self._received), self._signature, self.trusted)
        except ImageError:
            self.abandon()
            raise
        return header

    def installed_now(self) -> ImageHeader:
        """The device rebooted into the committed image: forget the transfer, remember it."""
        if self._header is None:
            raise TransferError("nothing was committed")
        self.installed = self._header
        self.abandon()
        return self.installed

    def abandon(self) -> None:
        """Drop the transfer in progress (a new BEGIN, a refused image, a power cut)."""
        self._header, self._signature = None, b""
        self._received = bytearray()

    @staticmethod
    def _runs(header: ImageHeader, running: str) -> bool:
        try:
            return running_version(running) == header.version
        except ValueError:
            return False
