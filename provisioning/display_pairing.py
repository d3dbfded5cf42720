"""``denen provision display pair``: give a call-number display its own link key, over its
serial line, the way a lock is paired (:mod:`provisioning.pairing`).

Steps: read the display (GET_STATUS, unsealed), make a random link key, wait for the
technician to press the display's pairing button while offering PAIR (key and time) every
second, check that the display's answer is sealed with the new key, then read the status
again over the sealed link (paired, clock set). When someone else paired the display in
the same window, the display answers ``CONFIRM_CODE`` and shows a 6-digit code: the
technician is told so and types it. The key goes to the agent's key store
(:mod:`edge.display_keys`); from then on the agent sends the display sealed frames only.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import secrets
from dataclasses import dataclass
from pathlib import Path

from edge.devices.display_coordinator import DisplayLine, DisplayUnreachable, open_display
from edge.display_keys import DisplayKeyStore
from edge.errors import EdgeError
from edge.lock_keys import AgentLink, LockKeyRecord
from edge.transports.spec import TransportKind, parse_spec
from protocol.clock import Clock, is_trusted_time
from protocol.display_auth import KEY_ID_LINK, KEY_LEN, AuthError, DisplayPairRequest
from protocol.display_wire import (
    DisplayFrame,
    DisplayFrameParser,
    DisplayFrameType,
    DisplayNackCode,
    DisplayStatus,
    decode_nack,
)
from protocol.errors import ProtocolError
from provisioning.pairing import CLOCK_TOLERANCE_S, PairingError, PairingOptions, ask_code

Ftype = DisplayFrameType


@dataclass(frozen=True, slots=True)
class DisplayPairingResult:
    display_id: str
    status: DisplayStatus
    key_path: Path


async def ask_display_code() -> int:
    """Ask the technician for the confirm code the display shows after a second PAIR."""
    return await ask_code("display", "the confirm code")


class _Line:
    """Request and answer by ``seq`` on an open display line; answers checked by ``link``."""

    def __init__(self, line: DisplayLine, timeout_s: float) -> None:
        self.line = line
        self.timeout_s = timeout_s
        self.link: AgentLink[DisplayFrame] | None = None
        self._parser = DisplayFrameParser()
        self._seq = 0

    async def request(
        self, ftype: DisplayFrameType, payload: bytes = b"", *, sealed: bool = True
    ) -> DisplayFrame:
        """The answer to one request; ``DisplayUnreachable`` when none comes."""
        self._seq = self._seq % 0xFFFF + 1
        frame = DisplayFrame(ftype, self._seq, payload)
        if sealed:
            assert self.link is not None, "a sealed request needs the link"
            frame = self.link.seal(frame)
        await self.line.send(bytes(frame))
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    for reply in self._parser.feed(await self.line.receive()):
                        if reply.seq == frame.seq and self._authentic(reply, frame.counter):
                            return reply
        except TimeoutError:
            raise DisplayUnreachable(
                self.line.display_id, self.line.address, f"no answer to {ftype.name}"
            ) from None

    def _authentic(self, reply: DisplayFrame, bound: int) -> bool:
        if reply.key_id != KEY_ID_LINK:
            return bound == 0  # an unsealed request's answer (GET_STATUS, a refused PAIR)
        if self.link is None:
            return False
        with contextlib.suppress(AuthError):
            self.link.check(reply, bound=bound)
            return True
        return False


async def pair_display(
    display_id: str,
    spec: str,
    *,
    state_dir: Path,
    clock: Clock,
    options: PairingOptions,
) -> DisplayPairingResult:
    """Pair the display on ``spec`` (``serial:/dev/ttyUSB1``) as ``display_id``."""
    now = clock.now()
    if not is_trusted_time(now):
        when = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        raise PairingError(
            f"this Pi's clock says {when}: not a trusted time, and pairing sets the display's "
            "clock; get network time, check with `denen provision doctor`, then pair again"
        )
    try:
        where = parse_spec(spec)
        if where.kind not in (TransportKind.SERIAL, TransportKind.PTY):
            raise PairingError(f"a display is paired over its serial line, not {spec}")
        line = await open_display(where, display_id=display_id)
    except (EdgeError, ValueError) as exc:
        raise PairingError(str(exc)) from exc
    try:
        channel = _Line(line, options.request_timeout_s)
        return await _pair(display_id, channel, state_dir, clock, options)
    except (EdgeError, ProtocolError) as exc:
        raise PairingError(str(exc)) from exc
    finally:
        await line.close()


async def _pair(
    display_id: str, line: _Line, state_dir: Path, clock: Clock, o: PairingOptions
) -> DisplayPairingResult:
    reply = await line.request(Ftype.GET_STATUS, sealed=False)
    status = DisplayStatus.decode(reply.payload)
    state = "already paired: pairing again replaces its key" if status.provisioned else "not paired"
    o.say(f"display: {status.model}, firmware {status.firmware}, {state}")
    store = DisplayKeyStore(state_dir)
    key = secrets.token_bytes(KEY_LEN)
    record = LockKeyRecord(display_id, key, 0, int(clock.now()), status.model, status.firmware)
    line.link = store.display_link(record)
    await _offer_pair(line, key, clock, o)
    o.say("paired: the display answered under the new key")

    reply = await line.request(Ftype.GET_STATUS)
    status = DisplayStatus.decode(reply.payload)
    if not status.provisioned or abs(status.clock - clock.now()) > CLOCK_TOLERANCE_S:
        raise PairingError(
            "the display did not keep the key or the time: power-cycle it, pair again"
        )
    return DisplayPairingResult(display_id, status, store.path(display_id))


async def _offer_pair(line: _Line, key: bytes, clock: Clock, o: PairingOptions) -> None:
    """Offer PAIR every second until the display takes it or the wait is over."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + o.button_wait_s
    next_prompt = loop.time()
    confirm: int | None = None
    while True:
        payload = DisplayPairRequest(key, int(clock.now()), confirm).encode()
        with contextlib.suppress(DisplayUnreachable):  # pressed meanwhile: offer again
            reply = await line.request(Ftype.PAIR, payload, sealed=False)
            if reply.type is Ftype.ACK and reply.key_id == KEY_ID_LINK:
                if confirm is not None:
                    o.say("the confirm code was right: our key replaced the other pairing")
                return
            if reply.type is not Ftype.NACK:
                raise PairingError(f"the display answered PAIR with {reply.type.name}")
            code, message = decode_nack(reply.payload)
            if code == DisplayNackCode.CONFIRM_CODE and confirm is None:
                o.say(
                    "WARNING: this display was already paired in this pairing window, by "
                    "someone else or an earlier run of this command. Our pairing replaces "
                    "theirs once you confirm: the display shows a 6-digit code"
                )
                confirm = await o.confirm_code()
                continue
            if code != DisplayNackCode.NOT_PAIRING:
                raise PairingError(f"the display refused PAIR: {message}")
            if confirm is not None:
                raise PairingError(
                    "the display refused the confirm code and closed its pairing window: "
                    "press its pairing button again and run this command again"
                )
        left = deadline - loop.time()
        if left <= 0:
            raise PairingError(
                f"the display did not accept pairing within {o.button_wait_s:.0f} s: "
                "press the pairing button on the display, then run this command again"
            )
        if loop.time() >= next_prompt:
            o.say(f"press the pairing button on the display ... ({left:.0f} s left)")
            next_prompt = loop.time() + 10
        await asyncio.sleep(min(1.0, left))
