"""A lock hosted on a real pty, driven through pyserial-asyncio-fast like an agent would."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from protocol.lock_wire import (
    FrameParser,
    FrameType,
    LockFrame,
    LockInfo,
    NackCode,
    decode_nack,
    decode_u32,
    encode_u32,
)
from protocol.messages import LockEventKind as K
from tests.integration.test_lock_pty_support import (
    GRANT,
    T0,
    hosted_lock,
    serial_client,
)


async def test_pin_typed_at_the_keypad_reaches_the_agent_as_an_unlock_event() -> None:
    async with hosted_lock() as (host, _), serial_client(host.path) as client:
        await client.load_pin("482913")
        await client.events()  # drain the clock_set event ...
        client.wakes.clear()  # ... and the WAKE it caused

        view = host.press("482913#")

        assert view.display == "OPEN"
        wake = await client.wait_wake()
        assert wake.seq == 0
        (unlock,) = [e for e in await client.events() if e.kind is K.UNLOCKED]
        assert (unlock.slot, unlock.grant_id, unlock.ts) == (0, GRANT, T0)
        assert decode_u32(wake.payload, "WAKE") == unlock.seq


async def test_acknowledged_events_are_not_sent_again() -> None:
    async with hosted_lock() as (host, _), serial_client(host.path) as client:
        host.press("1111#")
        head = max(e.seq for e in await client.events())
        assert (await client.request(FrameType.ACK_EVENTS, head.to_bytes(4, "big"))).type is (
            FrameType.ACK
        )
        assert await client.events() == []


async def test_garbage_between_frames_is_skipped_and_counted() -> None:
    async with hosted_lock() as (host, _), serial_client(host.path) as client:
        garbage = b"\x00\x01hello\xd5noise"
        client.writer.write(
            garbage
            + bytes(LockFrame(FrameType.GET_INFO, 41))
            + garbage
            + bytes(LockFrame(FrameType.GET_INFO, 42))
        )
        first, second = await client.next_frame(), await client.next_frame()
        assert [first.seq, second.seq] == [41, 42]
        assert LockInfo.decode(first.payload).model == "denen-sim-lock"
        assert host.dropped_bytes == 2 * len(garbage)


async def test_a_frame_split_across_writes_is_answered() -> None:
    async with hosted_lock() as (host, _), serial_client(host.path) as client:
        raw = bytes(client.link.seal(LockFrame(FrameType.GET_SLOTS, 9)))
        client.writer.write(raw[:5])
        await client.writer.drain()
        await asyncio.sleep(0.05)
        client.writer.write(raw[5:])
        reply = await client.next_frame()
        assert (reply.type, reply.seq) == (FrameType.SLOTS, 9)


async def test_the_tick_relocks_and_wakes_the_agent() -> None:
    async with hosted_lock() as (host, clock), serial_client(host.path) as client:
        await client.load_pin("482913")
        host.press("482913#")
        await client.events()
        client.wakes.clear()

        clock.advance(5)
        await client.wait_wake()  # sent by the periodic tick, with nobody asking

        assert host.view().locked
        assert K.RELOCKED in [e.kind for e in await client.events()]


async def test_link_names_the_pty_and_goes_away_on_stop(tmp_path: Path) -> None:
    link = tmp_path / "dev" / "lock-gym-a"
    async with hosted_lock(link=link) as (host, _):
        assert os.readlink(link) == host.path
        async with serial_client(str(link)) as client:
            reply = await client.request(FrameType.GET_INFO)
            assert reply.type is FrameType.INFO
    assert not link.exists()
    assert not link.is_symlink()


async def test_a_stale_link_from_an_earlier_run_is_replaced(tmp_path: Path) -> None:
    link = tmp_path / "lock-1"
    link.symlink_to("/dev/pts/does-not-exist")
    async with hosted_lock(link=link) as (host, _):
        assert os.readlink(link) == host.path


async def test_agent_reconnecting_finds_the_lock_still_answering() -> None:
    async with hosted_lock() as (host, _):
        async with serial_client(host.path) as client:
            await client.load_pin("482913")
        async with serial_client(host.path, link=client.link) as again:
            reply = await again.request(FrameType.GET_INFO)
            assert LockInfo.decode(reply.payload).clock == T0
        # an agent that forgot its counter is refused: that is why the agent persists it
        async with serial_client(host.path) as forgetful:
            reply = await forgetful.request(FrameType.GET_INFO)
            assert decode_nack(reply.payload)[0] == NackCode.AUTH_FAILED


# ------------------------------------------------------------------ who may command the lock


async def test_an_attacker_without_the_key_cannot_command_the_lock_but_the_agent_can() -> None:
    async with hosted_lock() as (host, _), serial_client(host.path) as agent:
        await agent.load_pin("482913")
        attacker = [
            LockFrame(FrameType.CLEAR_SLOT, 100, b"\xff"),  # no key at all
            LockFrame(FrameType.CLEAR_SLOT, 101, b"\xff", key_id=1, counter=10**6),  # made-up MAC
            LockFrame(FrameType.SET_TIME, 102, encode_u32(T0 + 86400)),
        ]
        for frame in attacker:
            code, _ = decode_nack((await agent.send(frame)).payload)
            assert code == NackCode.AUTH_FAILED
        assert host.view().slots_used == 1
        assert host.view().lock_time == T0
        assert host.view().auth_failures == len(attacker)
        # the agent, with the key, still can
        assert (await agent.request(FrameType.CLEAR_SLOT, b"\xff")).type is FrameType.ACK
        assert host.view().slots_used == 0


async def test_a_captured_agent_frame_replayed_on_the_line_is_refused() -> None:
    async with hosted_lock() as (host, _), serial_client(host.path) as agent:
        await agent.load_pin("482913")
        set_slot_bytes = agent.sent[-1]  # the SET_SLOT just sent, as an eavesdropper saw it
        assert (await agent.request(FrameType.CLEAR_SLOT, b"\x00")).type is FrameType.ACK
        (captured,) = FrameParser().feed(set_slot_bytes)
        reply = await agent.send_raw(set_slot_bytes, captured.seq)
        code, message = decode_nack(reply.payload)
        assert code == NackCode.AUTH_FAILED
        assert "replay" in message
        assert host.view().slots_used == 0
        assert host.view().auth_failures == 1
        assert host.press("482913#").display == "DENIED"
