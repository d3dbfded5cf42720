"""The gym's whole lifecycle, booking to door, on one shared ManualClock: the cloud app,
a real Mosquitto, the real agent and the simulated keypad lock, over serial (pty) and over
BLE (bumble, LE Secure Connections). See :mod:`tests.support.gym_site` for the harness.

Each test asserts what a citizen at the door or a facility manager would notice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from protocol.messages import SyncReason
from protocol.offline_pin import OFFLINE_PIN_LEN
from tests.support.confirm_mail import confirm_by_mail
from tests.support.gym_site import (
    DAY,
    HOUR,
    TRANSPORTS,
    Booking,
    GymSite,
    at,
    eventually,
    gym_site,
)
from tests.support.mosquitto import Mosquitto


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def site(tmp_path: Path, mosquitto: Mosquitto, transport: str) -> AsyncIterator[GymSite]:
    """The gym at 08:00, its lock paired and synced at 08:00: next full sync at 20:00."""
    async with gym_site(tmp_path, mosquitto, transport, start=at(8)) as gym:
        yield gym


async def test_booked_at_18_for_19_the_pin_works_at_19(site: GymSite) -> None:
    assert site.next_sync_at() == pytest.approx(at(20), abs=2)
    syncs = site.coordinator.sync_count
    await site.advance_to(at(18))

    booking = await site.book_and_approve("sato", at(19), at(20))
    await site.settle()
    # loaded at 18:00, at once: not at the 20:00 sync, which would miss the door by an hour
    assert booking.pin is not None
    assert site.coordinator.sync_count == syncs + 1
    last = site.coordinator.last_sync
    assert last is not None
    assert (last.reason, last.at) == (SyncReason.CHANGE, at(18))
    assert len(site.lock_holds()) == 1, site.coordinator.last_decision
    assert site.next_sync_at() == pytest.approx(at(20), abs=2)
    # and the manager sees it: "PIN on the lock since 18:00"
    access = await site.pin_status_until(booking, "on_lock")
    assert access["since"] == at(18)
    assert "18:00" in access["text"]

    await site.advance_to(at(19))
    assert site.coordinator.sync_count == syncs + 1  # nothing else touched the lock
    view = await site.type_pin(booking.pin)
    assert view.display == "OPEN"
    assert not view.locked
    unlocks = await site.audit_until(
        "the unlock", lambda rows: any(e["kind"] == "unlocked" for e in rows)
    )
    assert [e["who"] for e in unlocks if e["kind"] == "unlocked"] == ["sato"]


async def test_approved_while_the_gateway_is_offline_the_offline_pin_opens_the_door(
    site: GymSite,
) -> None:
    await site.stop_gateway()  # the Pi is off: the cloud cannot reach the lock
    await eventually(
        "the cloud seeing the gateway offline", lambda: site.gateway_state() == "offline"
    )
    await site.advance_to(at(9))

    booking = await site.book_and_approve("suzuki", at(19), at(20))
    assert booking.pin is not None
    assert len(booking.pin) == OFFLINE_PIN_LEN, "the citizen gets an offline PIN"
    assert site.lock_holds() == set()  # nothing reached the lock, nothing needs to
    assert (await site.pin_status(booking))["state"] == "offline_pin"

    await site.advance_to(at(17.5))
    early = await site.type_pin(booking.pin)
    assert early.display == "DENIED"  # hour-granular window from 18:00 (5 min grace): not yet
    await site.advance_to(at(19))
    view = await site.type_pin(booking.pin)
    assert view.display == "OPEN"
    assert not view.locked
    await site.advance(10)
    assert site.door.view().locked  # relocked by itself

    # the gateway comes back: the door's story reaches the manager
    await site.start_gateway()
    await site.settle()
    rows = await site.audit_until(
        "the unlock", lambda rows: any(e["kind"] == "unlocked" for e in rows)
    )
    unlocks = [e for e in rows if e["kind"] == "unlocked"]
    assert len(unlocks) == 1
    assert unlocks[0]["who"] == "suzuki"
    assert [e["kind"] for e in rows if e["kind"].startswith("denied")] == ["denied_outside_window"]


async def test_a_72_hour_outage_pins_keep_their_windows_and_every_event_arrives_once(
    site: GymSite,
) -> None:
    bookings = [
        await site.book_and_approve(name, at(start), at(end))
        for name, start, end in (
            ("ito", 10, 12),  # this morning
            ("kato", 24 + 19, 24 + 21),  # tomorrow evening
            ("mori", 48 + 9, 48 + 10),  # the day after, in the morning
            ("ueda", 72 + 6, 72 + 7),  # the last morning of the outage
        )
    ]
    await site.settle()
    # each PIN is tried half an hour before its window, inside it, and half an hour after
    tries: list[tuple[int, Booking, bool]] = []
    for b in bookings:
        assert b.window is not None
        start, end = b.window
        tries += [(start - 1800, b, False), ((start + end) // 2, b, True), (end + 1800, b, False)]
    tries.sort(key=lambda t: t[0])
    outage_start, outage_end = at(8), at(8 + 72)
    assert outage_start < tries[0][0]
    assert tries[-1][0] < outage_end
    before = max(e["seq"] for e in await site.audit())

    await site.cut_internet()
    expected: list[tuple[str, str | None]] = []  # (kind, who) in the order the lock saw them
    for when, b, opens in tries:
        await site.advance_to(when, step=HOUR)
        assert b.pin is not None
        view = await site.type_pin(b.pin)
        assert (view.display, view.locked) == (("OPEN", False) if opens else ("DENIED", True)), (
            b.name,
            (when - DAY) / HOUR,
        )
        if opens:
            expected.append(("unlocked", b.name))
            await site.advance(10)  # it relocks by itself
            assert site.door.view().locked
            expected.append(("relocked", None))
        else:
            expected.append(("denied_outside_window", b.name))
    await site.advance_to(outage_end, step=HOUR)
    assert site.agent is not None
    assert site.agent.outbox.depth() >= len(expected)  # all of it waits on the Pi
    assert max(e["seq"] for e in await site.audit()) == before  # none reached the cloud

    await site.restore_internet()
    await site.settle()
    rows = await site.audit_until(
        "every event of the outage",
        lambda rows: len([e for e in rows if e["seq"] > before]) >= len(expected),
    )
    during = [e for e in rows if e["seq"] > before]
    assert [e["seq"] for e in during] == list(range(before + 1, before + 1 + len(expected)))
    assert [(e["kind"], e["who"]) for e in during] == expected
    assert all(outage_start <= e["lock_ts"] <= outage_end for e in during)


async def test_cancelled_at_1830_for_19_the_pin_is_refused_at_19(site: GymSite) -> None:
    await site.advance_to(at(10))
    booking = await site.book_and_approve("tanaka", at(19), at(20))
    other = await site.book_and_approve("yamada", at(20), at(21))
    await site.settle()
    # both open before the 20:00 sync: loaded at once
    assert len(site.lock_holds()) == 2, site.coordinator.last_decision

    await site.advance_to(at(18.5))
    await site.cancel(booking, "our team cannot come tonight")
    await site.settle()
    # taken off the lock at once, not at 20:00
    assert len(site.lock_holds()) == 1, site.coordinator.last_decision
    status = await site.status(booking)
    assert status["status"] == "cancelled"
    assert status["pin"] is None

    await site.advance_to(at(19))
    assert booking.pin is not None
    view = await site.type_pin(booking.pin)
    assert (view.display, view.locked) == ("DENIED", True)
    await site.advance_to(at(20))
    assert other.pin is not None
    assert (await site.type_pin(other.pin)).display == "OPEN"  # the other booking is untouched

    rows = await site.audit_until(
        "the refusal and the unlock", lambda rows: any(e["kind"] == "unlocked" for e in rows)
    )
    assert [
        (e["kind"], e["who"]) for e in rows if e["kind"] in ("unlocked", "denied_wrong_pin")
    ] == [
        ("denied_wrong_pin", None),
        ("unlocked", "yamada"),
    ]


async def test_two_citizens_race_for_the_same_slot_one_books_one_is_told_why_not(
    site: GymSite,
) -> None:
    await site.advance_to(at(9))
    first, second = await asyncio.gather(
        site.book("ito", at(19), at(21)), site.book("kato", at(19), at(21))
    )
    assert sorted([first.status_code, second.status_code]) == [201, 409]
    won, lost = (first, second) if first.status_code == 201 else (second, first)
    detail = lost.json()["detail"]
    assert "overlaps" in detail
    assert "pick another time" in detail

    booked = [r for r in await site.reservations() if r["start"] == at(19)]
    assert len(booked) == 1
    body = won.json()
    winner = Booking(body["id"], body["access_token"], booked[0]["name"], at(19), at(21))
    await confirm_by_mail(site.http, site.app.state.sessions, f"{winner.name}@example.jp")
    await site.approve(winner)
    await site.settle()
    assert len(site.lock_holds()) == 1, site.coordinator.last_decision

    await site.advance_to(at(19))
    assert winner.pin is not None
    assert (await site.type_pin(winner.pin)).display == "OPEN"
