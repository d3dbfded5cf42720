"""Attack: someone at the door types PIN after PIN. Counted "in a row", one valid code
(the guesser's own booking) started the count again and a PIN of another hour was not
counted at all: 20,000 guesses gave no lockout. Now the lock counts wrong entries per 10
minutes and per day, whatever comes between, and a day of guessing gets exactly the
guesses ``docs/offline-pins.md`` says, from which it works out the odds.

The lock simulator on its serial host: the agent's side loads the PINs over the pty, the
guesser presses keys at the door, every part on one ManualClock."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from firmware_sim.lock import LockFirmware
from firmware_sim.lock.pairing import PairingRecord
from firmware_sim.lock.pty_host import LockPtyHost
from firmware_sim.lock.wrong_entries import KEYPAD_LIMITS, guesses_per_day
from protocol.clock import ManualClock
from protocol.lock_wire import FrameType, SlotEntry, encode_u32
from protocol.messages import LockEventKind
from protocol.pin import pin_tag
from tests.integration.test_lock_pty_support import (
    GRANT,
    PIN_KEY,
    SECRETS,
    T0,
    SerialClient,
    serial_client,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "offline-pins.md"
DAY = 86_400
PIN = "482913"  # a citizen's booking, in its window all along
OWN_PIN = "705126"  # the guesser's own booking
LATER_PIN = "619384"  # a citizen's booking of the evening


class Door:
    """The lock on its pty, with a large event log so a day of guessing stays in it."""

    def __init__(self, host: LockPtyHost, clock: ManualClock, agent: SerialClient) -> None:
        self.host, self.clock, self.agent = host, clock, agent

    async def load(self, slot: int, pin: str, start: int, end: int) -> None:
        entry = SlotEntry(slot, start, end, GRANT, pin_tag(PIN_KEY, pin))
        assert (await self.agent.request(FrameType.SET_SLOT, entry.encode_set())).type is (
            FrameType.ACK
        )

    def kinds(self) -> list[LockEventKind]:
        return [e.kind for e in self.host.firmware.events.oldest(100_000)]


@pytest.fixture
async def door() -> AsyncIterator[Door]:
    clock = ManualClock(T0)
    firmware = LockFirmware(clock, PairingRecord(SECRETS), event_buffer=100_000)
    async with LockPtyHost("gym-a-1", firmware) as host, serial_client(host.path) as agent:
        assert (await agent.request(FrameType.SET_TIME, encode_u32(T0))).type is FrameType.ACK
        d = Door(host, clock, agent)
        await d.load(0, PIN, T0 - 3600, T0 + 7 * DAY)
        yield d


def guesses() -> list[str]:
    """Six-digit guesses in a fixed scrambled order (never the real PINs)."""
    out = [f"{(i * 7_919 + 13) % 10**6:06d}" for i in range(12_000)]
    return [g for g in out if g not in (PIN, OWN_PIN, LATER_PIN)]


async def test_a_day_of_guessing_gets_the_guesses_the_doc_works_the_odds_from(door: Door) -> None:
    """A guess every 30 s, for three days: the lock checks what the doc says, no more."""
    tries = iter(guesses())
    checked_per_day = []
    start = door.clock.now()
    for day in range(3):
        checked = 0
        while door.clock.now() < start + (day + 1) * DAY:
            if not door.host.view().locked_out:  # the guesser sees whether it takes a code
                checked += 1
            door.host.press(next(tries) + "#")
            door.clock.advance(30)
        checked_per_day.append(checked)
    assert LockEventKind.UNLOCKED not in door.kinds()
    wrong = door.kinds().count(LockEventKind.DENIED_WRONG_PIN)
    assert wrong == sum(checked_per_day)

    per_day = guesses_per_day(KEYPAD_LIMITS)
    assert checked_per_day == [per_day] * 3
    doc = DOC.read_text()
    stated = re.search(r"\*\*G = (\d+) guesses a day\*\*", doc)
    assert stated is not None, "docs/offline-pins.md states G"
    assert int(stated.group(1)) == per_day
    # one 6-digit PIN live: G / 10^6 a day, as the doc's table says
    odds = re.search(r"\| 6 digits, 1 PIN live \| 1 in ([\d,]+) \|", doc)
    assert odds is not None, "docs/offline-pins.md gives the odds for one 6-digit PIN"
    assert int(odds.group(1).replace(",", "")) == 10**6 // per_day


async def test_a_valid_code_between_guesses_does_not_start_the_count_again(door: Door) -> None:
    await door.load(1, OWN_PIN, T0 - 3600, T0 + DAY)
    tries = iter(guesses())
    for _ in range(4):
        door.host.press(next(tries) + "#")
    assert door.host.press(OWN_PIN + "#").display == "OPEN"
    door.clock.advance(60)
    door.host.press(next(tries) + "#")
    assert door.host.view().locked_out, "the fifth wrong PIN in ten minutes locks out"
    assert door.host.press(PIN + "#").display.startswith("LOCKED OUT")
    assert door.kinds()[-2:] == [LockEventKind.LOCKOUT_STARTED, LockEventKind.DENIED_LOCKED_OUT]


async def test_another_hours_pin_counts_as_a_guess_and_the_door_only_says_denied(
    door: Door,
) -> None:
    await door.load(2, LATER_PIN, T0 + 10 * 3600, T0 + 12 * 3600)
    tries = iter(guesses())
    wrong = door.host.press(next(tries) + "#").display
    later = door.host.press(LATER_PIN + "#").display
    assert wrong == later == "DENIED", "a guesser cannot tell a PIN of another hour"
    for _ in range(3):
        door.host.press(LATER_PIN + "#")
    assert door.host.view().locked_out
    kinds = door.kinds()
    assert kinds.count(LockEventKind.DENIED_OUTSIDE_WINDOW) == 4  # the audit still says so
    assert kinds[-1] is LockEventKind.LOCKOUT_STARTED
