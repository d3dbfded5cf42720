"""Attack: capture the agent's UNLOCK on the lock's serial line, wait for the lock to lose
power (or cut it) while it acts on that frame, and replay the frame after the reboot. The
lock wrote its receive counter to flash only after acting, so a power cut at the bolt left
flash without it and the replay opened the door again. Now the counter is in flash before
the lock acts: the replay is refused (and reported).

The lock simulator on its serial host, its state file as its flash; the power cut is
modelled exactly: the flash as it was at the instant the bolt moved is all that survives.
"""

from __future__ import annotations

from pathlib import Path

from firmware_sim.lock import LockFirmware
from firmware_sim.lock.pairing import PairingRecord
from firmware_sim.lock.pty_host import LockPtyHost
from firmware_sim.lock.state_file import load_pairing, save_pairing
from protocol.clock import ManualClock
from protocol.lock_wire import FrameParser, FrameType, NackCode, decode_nack
from protocol.messages import LockEventKind
from tests.integration.test_lock_pty_support import SECRETS, T0, serial_client


class PowerCutAsTheBoltMoves(LockFirmware):
    """A lock whose power goes the instant it acts on an UNLOCK: of its flash, only what
    was written before that instant survives (kept in ``flash_at_the_cut``)."""

    flash: Path
    flash_at_the_cut: bytes = b""

    def remote_unlock(self) -> int:
        self.flash_at_the_cut = self.flash.read_bytes()
        return super().remote_unlock()


async def test_an_unlock_replayed_after_a_power_cut_is_refused(tmp_path: Path) -> None:
    flash = tmp_path / "gym-a-1.json"
    save_pairing(flash, PairingRecord(SECRETS))  # as the technician paired it
    clock = ManualClock(T0)
    lock = PowerCutAsTheBoltMoves(clock, load_pairing(flash))
    lock.flash = flash
    async with LockPtyHost("gym-a-1", lock, state_file=flash) as host:
        async with serial_client(host.path) as agent:
            assert (await agent.request(FrameType.UNLOCK)).type is FrameType.ACK
            captured = agent.sent[-1]  # what an eavesdropper on the line saw
        assert not host.view().locked
    flash.write_bytes(lock.flash_at_the_cut)  # the power cut: the rest never reached flash

    clock.advance(120)  # back on; the bolt relocked long ago
    rebooted = LockFirmware(clock, load_pairing(flash))
    async with LockPtyHost("gym-a-1", rebooted, state_file=flash) as host:
        async with serial_client(host.path) as attacker:
            (frame,) = FrameParser().feed(captured)
            reply = await attacker.send_raw(captured, frame.seq)
        code, message = decode_nack(reply.payload)
        assert (code, "replay" in message) == (NackCode.AUTH_FAILED, True)
        assert host.view().locked, "the replayed UNLOCK did not open the door"
        kinds = [e.kind for e in rebooted.events.oldest(10)]
        assert LockEventKind.REMOTE_UNLOCKED not in kinds
        assert LockEventKind.FRAMES_REFUSED in kinds
