"""The agent's side of a firmware update, sans-IO: which request to send next, and whether
the answer lets the update go on.

One :class:`FirmwareUpdater` per device and image (:func:`lock_updater`,
:func:`display_updater`). It asks the device's version first (an update to the version a
device already runs is done at once, so a rollout can be repeated safely), then sends
``UPDATE_BEGIN``, the chunks in order, ``UPDATE_COMMIT``, and asks the version again to
see the device run it::

    updater = lock_updater(image)
    while (request := updater.next_request()) is not None:
        reply = await channel_answer(request.type, request.payload)   # the caller's I/O
        updater.receive(reply)
    updater.result  # UpdateResult(version="1.4.2", installed=True, ...)

The caller seals, sends, matches replies and retries on silence (every update request is
safe to repeat, :mod:`protocol.firmware_transfer`). A NACK becomes :class:`UpdateRefusedError`
with the device's code and message; the device then still runs its old version.
:func:`run_update` is the loop above for a caller with an ``exchange`` coroutine.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Generic, Protocol, TypeVar

from protocol import display_wire as dw
from protocol import lock_wire as lw
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.firmware_image import DeviceKind, FirmwareImage
from protocol.firmware_transfer import (
    MAX_CHUNK,
    decode_progress,
    encode_chunk,
    encode_commit,
)

T = TypeVar("T", bound=IntEnum)
T_co = TypeVar("T_co", bound=IntEnum, covariant=True)


class UpdateStep(Enum):
    QUERY = "query"  # what does the device run now?
    BEGIN = "begin"
    CHUNK = "chunk"
    COMMIT = "commit"
    VERIFY = "verify"  # does it run the new version after its reboot?


class UpdateRefusedError(RemoteProtocolError):
    """The device answered a step with a NACK: it keeps running its old version."""

    def __init__(self, step: UpdateStep, code: int, message: str) -> None:
        super().__init__(f"{step.value} refused ({code}): {message}")
        self.step = step
        self.code = code
        self.message = message


class UpdateNotAppliedError(RemoteProtocolError):
    """The device took the image but reports another version after its reboot."""


class Reply(Protocol[T_co]):
    """What the updater reads of a device's answer (a LockFrame or a DisplayFrame)."""

    @property
    def type(self) -> T_co: ...
    @property
    def payload(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class DeviceProfile(Generic[T]):
    """One device protocol's frame types and decoders for an update."""

    kind: DeviceKind
    query: T
    info: T
    begin: T
    chunk: T
    commit: T
    ack: T
    nack: T
    firmware_of: Callable[[bytes], str]  # the query's answer → the firmware it reports
    decode_nack: Callable[[bytes], tuple[int, str]]


LOCK = DeviceProfile(
    DeviceKind.LOCK,
    lw.FrameType.GET_INFO,
    lw.FrameType.INFO,
    lw.FrameType.UPDATE_BEGIN,
    lw.FrameType.UPDATE_CHUNK,
    lw.FrameType.UPDATE_COMMIT,
    lw.FrameType.UPDATE_ACK,
    lw.FrameType.NACK,
    lambda payload: lw.LockInfo.decode(payload).firmware,
    lw.decode_nack,
)

DISPLAY = DeviceProfile(
    DeviceKind.DISPLAY,
    dw.DisplayFrameType.GET_STATUS,
    dw.DisplayFrameType.STATUS,
    dw.DisplayFrameType.UPDATE_BEGIN,
    dw.DisplayFrameType.UPDATE_CHUNK,
    dw.DisplayFrameType.UPDATE_COMMIT,
    dw.DisplayFrameType.UPDATE_ACK,
    dw.DisplayFrameType.NACK,
    lambda payload: dw.DisplayStatus.decode(payload).firmware,
    dw.decode_nack,
)


@dataclass(frozen=True, slots=True)
class UpdateRequest(Generic[T]):
    """One request to send: its frame type and payload, and the answer that means success."""

    step: UpdateStep
    type: T
    payload: bytes
    expect: T


@dataclass(frozen=True, slots=True)
class UpdateResult:
    version: str  # what the device runs now: the image's version
    installed: bool  # False when it ran that version already
    previous: str  # what it reported before
    payload_bytes_sent: int


class FirmwareUpdater(Generic[T]):
    """Sends one image to one device, step by step; see the module docstring."""

    def __init__(
        self, profile: DeviceProfile[T], image: FirmwareImage, *, chunk_size: int = MAX_CHUNK
    ) -> None:
        if image.header.kind is not profile.kind:
            raise LocalProtocolError(
                f"a {image.header.kind.name.lower()} image cannot go to a "
                f"{profile.kind.name.lower()}"
            )
        if not 1 <= chunk_size <= MAX_CHUNK:
            raise LocalProtocolError(f"chunk_size must be 1..{MAX_CHUNK}")
        self.profile = profile
        self.image = image
        self.chunk_size = chunk_size
        self.step: UpdateStep | None = UpdateStep.QUERY  # None once done
        self.offset = 0  # the next payload byte to send
        self.sent = 0  # payload bytes sent, repeats included
        self.previous: str | None = None
        self.result: UpdateResult | None = None

    @property
    def version(self) -> str:
        return str(self.image.header.version)

    @property
    def done(self) -> bool:
        return self.step is None

    def next_request(self) -> UpdateRequest[T] | None:
        """The request to send now; ``None`` when the update is over (see :attr:`result`)."""
        p, step = self.profile, self.step
        if step is None:
            return None
        if step in (UpdateStep.QUERY, UpdateStep.VERIFY):
            return UpdateRequest(step, p.query, b"", p.info)
        if step is UpdateStep.BEGIN:
            return UpdateRequest(step, p.begin, self.image.head, p.ack)
        if step is UpdateStep.CHUNK:
            data = self.image.payload[self.offset : self.offset + self.chunk_size]
            return UpdateRequest(step, p.chunk, encode_chunk(self.offset, data), p.ack)
        return UpdateRequest(step, p.commit, encode_commit(self.image.header.sha256), p.ack)

    def receive(self, reply: Reply[T]) -> None:
        """Take the answer to the last request; raises UpdateRefusedError on a NACK."""
        step, p = self.step, self.profile
        if step is None:
            raise LocalProtocolError("the update is over: no request is waiting for an answer")
        if reply.type == p.nack:
            raise UpdateRefusedError(step, *p.decode_nack(reply.payload))
        expect = p.info if step in (UpdateStep.QUERY, UpdateStep.VERIFY) else p.ack
        if reply.type != expect:
            raise RemoteProtocolError(f"device answered {step.value} with {reply.type.name}")
        if step is UpdateStep.QUERY:
            self.previous = p.firmware_of(reply.payload)
            if self.previous == self.version:
                self._finish(installed=False)
            else:
                self.step = UpdateStep.BEGIN
        elif step is UpdateStep.VERIFY:
            running = p.firmware_of(reply.payload)
            if running != self.version:
                raise UpdateNotAppliedError(
                    f"device runs {running[:40]!r} after the update, not {self.version}"
                )
            self._finish(installed=True)
        else:
            self._on_progress(step, *decode_progress(reply.payload))

    def _on_progress(self, step: UpdateStep, received: int, total: int) -> None:
        size = self.image.header.payload_len
        if total != size:
            raise RemoteProtocolError(f"device expects {total} payload bytes, the image has {size}")
        if step is UpdateStep.COMMIT:
            self.step = UpdateStep.VERIFY
            return
        if step is UpdateStep.CHUNK:
            if received < self.offset:
                raise RemoteProtocolError(f"device went back from byte {self.offset} to {received}")
            self.sent += min(self.chunk_size, size - self.offset)
        # the device's count says where to go on (it may hold more after a repeated chunk)
        self.offset = received
        self.step = UpdateStep.COMMIT if received == size else UpdateStep.CHUNK

    def _finish(self, *, installed: bool) -> None:
        self.step = None
        self.result = UpdateResult(self.version, installed, self.previous or "", self.sent)


def lock_updater(
    image: FirmwareImage, *, chunk_size: int = MAX_CHUNK
) -> FirmwareUpdater[lw.FrameType]:
    """An updater that speaks :mod:`protocol.lock_wire`."""
    return FirmwareUpdater(LOCK, image, chunk_size=chunk_size)


def display_updater(
    image: FirmwareImage, *, chunk_size: int = MAX_CHUNK
) -> FirmwareUpdater[dw.DisplayFrameType]:
    """An updater that speaks :mod:`protocol.display_wire`."""
    return FirmwareUpdater(DISPLAY, image, chunk_size=chunk_size)


async def run_update(
    updater: FirmwareUpdater[T], exchange: Callable[[UpdateRequest[T]], Awaitable[Reply[T]]]
) -> UpdateResult:
    """Drive ``updater`` to the end; ``exchange`` sends one request and returns its answer."""
    while (request := updater.next_request()) is not None:
        updater.receive(await exchange(request))
    if updater.result is None:  # next_request() is None only once a result is set
        raise LocalProtocolError("the updater stopped without a result")
    return updater.result
