"""Request and answer over one open lock transport: ``seq`` matching, retries, and frame
authentication (:mod:`protocol.lock_auth`).

An authenticated request is sealed with the lock's link key; its answer counts only if its
MAC checks, its counter is new and it is bound to that request. Anything else on the line
(garbage, a late answer, a forged or replayed frame) is dropped and counted in
:class:`LinkStats`. The one unsealed answer taken is a NACK saying the lock refused our
key: a lock that lost its keys cannot seal, and at worst a forger makes us reconnect.

Unauthenticated requests (``authenticated=False``) exist for pairing only: GET_INFO on a
lock we have no key for, and PAIR itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from edge.errors import LockRejected, LockUnreachable
from edge.lock_keys import AgentLink
from edge.transports.base import LockTransport
from protocol.errors import FrameError
from protocol.lock_auth import KEY_ID_NONE, AuthError
from protocol.lock_wire import FrameParser, FrameType, LockFrame, NackCode, decode_nack

log = logging.getLogger(__name__)


@dataclass
class LinkStats:
    """What went wrong on the line, summed over every connection to this lock."""

    dropped_bytes: int = 0
    bad_frames: int = 0
    unmatched_frames: int = 0
    timeouts: int = 0
    auth_failures: int = 0  # frames that failed the MAC or counter check: forged or replayed

    @property
    def frames_dropped(self) -> int:
        return self.bad_frames + self.unmatched_frames + self.auth_failures


def is_auth_refusal(frame: LockFrame) -> bool:
    """An unauthenticated NACK saying the lock does not accept our key (or has none)."""
    if frame.key_id != KEY_ID_NONE or frame.type is not FrameType.NACK:
        return False
    try:
        code, _ = decode_nack(frame.payload)
    except FrameError:
        return False
    return code in (NackCode.AUTH_FAILED, NackCode.NOT_PAIRED)


class LockChannel:
    """One connection's request/answer machinery; ``run_reader()`` must run alongside."""

    def __init__(
        self,
        lock_id: str,
        transport: LockTransport,
        *,
        link: AgentLink[LockFrame] | None,
        stats: LinkStats,
        timeout_s: float,
        retries: int,
        on_wake: Callable[[], None] | None = None,
    ) -> None:
        self.lock_id = lock_id
        self.transport = transport
        self.link = link
        self.stats = stats
        self.timeout_s = timeout_s
        self.retries = retries
        self.on_wake = on_wake
        self._pending: dict[int, tuple[int, asyncio.Future[LockFrame]]] = {}
        self._seq = 0

    async def run_reader(self) -> None:
        """Read frames and hand each to its waiting request, until cancelled."""
        parser = FrameParser()
        dropped, bad = 0, 0
        while True:
            data = await self.transport.receive()
            frames = parser.feed(data)
            if parser.dropped_bytes != dropped or parser.bad_frames != bad:
                self.stats.dropped_bytes += parser.dropped_bytes - dropped
                self.stats.bad_frames += parser.bad_frames - bad
                dropped, bad = parser.dropped_bytes, parser.bad_frames
                log.warning(
                    "lock %s: skipped garbage on the line (%d bytes, %d bad frames so far)",
                    self.lock_id,
                    self.stats.dropped_bytes,
                    self.stats.bad_frames,
                )
            for frame in frames:
                self._dispatch(frame)

    def fail_pending(self) -> None:
        """Fail every request still waiting with :class:`LockUnreachable` (the line is gone).

        Not ``cancel()``: a scheduled sync running in its own task would see a
        ``CancelledError`` it did not ask for.
        """
        for _, fut in self._pending.values():
            if not fut.done():
                fut.set_exception(
                    LockUnreachable(self.lock_id, self.transport.address, "connection lost")
                )
        self._pending.clear()

    def _dispatch(self, frame: LockFrame) -> None:
        if frame.type is FrameType.WAKE:
            if self._authentic(frame, 0) and self.on_wake is not None:
                self.on_wake()
            return
        pending = self._pending.get(frame.seq)
        if pending is None or pending[1].done():
            # a late answer to a request we already gave up on, or a confused peer
            self.stats.unmatched_frames += 1
            log.debug("lock %s: unmatched %s seq %d", self.lock_id, frame.type.name, frame.seq)
            return
        counter, fut = pending
        if is_auth_refusal(frame) or self._authentic(frame, counter):
            fut.set_result(frame)

    def _authentic(self, frame: LockFrame, bound: int) -> bool:
        if self.link is None:
            return frame.key_id == KEY_ID_NONE  # before pairing nothing can be checked
        if frame.key_id == KEY_ID_NONE and bound == 0 and frame.type is not FrameType.WAKE:
            return True  # the answer to an unauthenticated request (GET_INFO, PAIR)
        try:
            self.link.check(frame, bound=bound)
        except AuthError as exc:
            self.stats.auth_failures += 1
            log.warning(
                "lock %s: dropped a %s frame that is not authentic (%s); %d so far",
                self.lock_id,
                frame.type.name,
                exc.reason,
                self.stats.auth_failures,
            )
            return False
        return True

    def _next_seq(self) -> int:
        self._seq = self._seq % 0xFFFF + 1  # 1..65535; 0 is left to unsolicited frames
        return self._seq

    async def request(
        self,
        ftype: FrameType,
        payload: bytes,
        expect: FrameType,
        *,
        authenticated: bool = True,
        retries: int | None = None,
    ) -> LockFrame:
        """Send a request and wait for the answer with its ``seq``, retrying on silence.

        Every request is idempotent, so a retry after a lost answer is safe; each try takes
        a fresh ``seq`` (and counter) so a late answer cannot answer the wrong question.
        Raises :class:`LockRejected` on a NACK, :class:`LockUnreachable` on silence.
        """
        loop = asyncio.get_running_loop()
        tries = self.retries if retries is None else retries
        for _ in range(tries):
            frame = LockFrame(ftype, self._next_seq(), payload)
            if authenticated:
                if self.link is None:
                    raise AuthError("no link key for this lock: pair it first")
                frame = self.link.seal(frame)
            fut: asyncio.Future[LockFrame] = loop.create_future()
            self._pending[frame.seq] = (frame.counter, fut)
            try:
                await self.transport.send(bytes(frame))
                async with asyncio.timeout(self.timeout_s):
                    reply = await fut
            except TimeoutError:
                self.stats.timeouts += 1
                continue
            finally:
                self._pending.pop(frame.seq, None)
            if reply.type is FrameType.NACK:
                code, message = decode_nack(reply.payload)
                if code == NackCode.BUSY:
                    continue
                raise LockRejected(self.lock_id, ftype.name, code, message)
            if reply.type is not expect:
                raise FrameError(f"lock answered {ftype.name} with {reply.type.name}")
            return reply
        raise LockUnreachable(
            self.lock_id, self.transport.address, f"no answer to {ftype.name} after {tries} tries"
        )
