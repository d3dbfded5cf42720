"""Displays the way a technician leaves them: paired with the agent's key store through
``denen provision display pair``'s own code (:func:`pair_display`), over the real pty."""

from __future__ import annotations

from pathlib import Path

from firmware_sim.display.pty_host import DisplayPtyHost
from protocol.clock import Clock, SystemClock
from provisioning.display_pairing import DisplayPairingResult, pair_display
from provisioning.pairing import PairingOptions


async def pair_hosted_display(
    host: DisplayPtyHost, state_dir: Path, clock: Clock | None = None
) -> DisplayPairingResult:
    """Press the display's pairing button and pair it: its key goes to ``state_dir``."""
    host.pair_button()
    return await pair_display(
        host.display_id,
        f"pty:{host.path}",
        state_dir=state_dir,
        clock=clock or SystemClock(),
        options=PairingOptions(say=lambda _: None, button_wait_s=5),
    )
