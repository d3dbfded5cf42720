"""Attack: make the lock's flash fail (a full or worn-out store), then send a frame the
lock will act on: if the lock acts first and stores its counter after, every frame it
acts on can be replayed after a reboot. Now a lock that cannot store the counter refuses
the frame (``BUSY``, saying what happened and what to do) and does nothing; once the
store works again the next request goes through as usual.

The lock simulator on its serial host; its state file is its flash, made unwritable by a
directory where the lock writes its new copy (root ignores file modes, not that).
"""

from __future__ import annotations

from pathlib import Path

from firmware_sim.lock import LockFirmware
from firmware_sim.lock.pairing import PairingRecord
from firmware_sim.lock.pty_host import LockPtyHost
from firmware_sim.lock.state_file import load_pairing, save_pairing
from protocol.clock import ManualClock
from protocol.lock_wire import FrameType, LockFrame, NackCode, decode_nack
from protocol.messages import LockEventKind
from tests.integration.test_lock_pty_support import SECRETS, T0, serial_client


async def test_a_lock_that_cannot_store_its_counter_does_not_unlock(tmp_path: Path) -> None:
    flash = tmp_path / "gym-a-1.json"
    save_pairing(flash, PairingRecord(SECRETS))
    before = load_pairing(flash)
    lock = LockFirmware(ManualClock(T0), before)
    host = LockPtyHost("gym-a-1", lock, state_file=flash)
    async with host, serial_client(host.path) as agent:
        broken = flash.with_name(flash.name + ".tmp")
        broken.mkdir()  # every write of the state file fails from now on
        reply = await agent.send(agent.link.seal(LockFrame(FrameType.UNLOCK, 41)))
        code, message = decode_nack(reply.payload)
        assert code == NackCode.BUSY
        assert "nothing done" in message
        assert "could not store its counter" in message
        assert host.view().locked, "the lock did not act on a frame it could not record"
        assert LockEventKind.REMOTE_UNLOCKED not in [e.kind for e in lock.events.oldest(10)]
        assert load_pairing(flash) == before

        broken.rmdir()  # the store works again: the agent's next try goes through
        assert (await agent.request(FrameType.UNLOCK)).type is FrameType.ACK
        assert not host.view().locked
        stored = load_pairing(flash)
        assert stored is not None
        assert stored.recv_counter == agent.link.send_counter
