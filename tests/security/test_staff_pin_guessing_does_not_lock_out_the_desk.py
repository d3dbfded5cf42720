"""Someone on the clinic's Wi-Fi guesses the agent's staff PIN: five wrong PINs used to
refuse the PIN for everyone for five minutes, so a guesser could keep the reception desk
locked out all day. Now the guesser's address waits, longer each time, and the desk's
machine logs in and calls the next patient as usual; PINs are 6 digits or more."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.clinic.staff_access import PinHash, StaffAccessError
from tests.integration.test_edge_clinic_staff_login import (
    CALL_NEXT,
    STAFF,
    STAFF_PINS,
    log_in,
    staff_desk,
)


async def test_guessing_from_one_machine_leaves_the_desk_working(tmp_path: Path) -> None:
    async with (
        staff_desk(tmp_path, staff=STAFF_PINS) as d,
        d.client("127.0.0.66") as guesser,
        d.client("127.0.0.2") as desk,
    ):
        answers = [(await log_in(guesser, f"{n:06d}")).status_code for n in range(20)]
        assert answers == [401] * 4 + [429] * 16  # guessing stops at the fifth wrong PIN
        d.clock.advance(30)
        assert (await log_in(guesser, "000020")).status_code == 429  # then waits longer

        logged_in = await log_in(desk)
        assert logged_in.status_code == 303, logged_in.text
        assert logged_in.headers["location"] == STAFF
        called = await desk.post("/staff", data=CALL_NEXT, follow_redirects=True)
        assert 'data-testid="in-room-A-001"' in called.text
    assert d.room_1() == ["A-001"]


def test_a_staff_pin_shorter_than_six_digits_is_refused() -> None:
    with pytest.raises(StaffAccessError, match="6 to 12 digits"):
        PinHash.make("4721")
