"""The edge agent drives a call-number display: real Mosquitto, the real simulated display
on a pty (:class:`DisplayPtyHost`), the agent as ``edge.main.build_agent`` builds it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edge.config import SiteConfig, parse_config
from edge.main import build_agent
from firmware_sim.display.pty_host import DisplayPtyHost
from protocol import messages, topics
from protocol.clock import SystemClock
from protocol.messages import (
    DisplayAnnouncement,
    DisplayContent,
    DisplayRoomCall,
    DisplayStateData,
    MessageType,
)
from tests.integration.test_display_pty_support import hosted_display
from tests.integration.test_edge_agent import GW, SITE, client, eventually, running
from tests.support.displays import pair_hosted_display
from tests.support.mosquitto import Mosquitto

DISPLAY = "clinic-a-disp-1"
TOPIC = topics.gateway_topic(SITE, GW, topics.Channel.DISPLAY)


def display_config(tmp_path: Path, broker: Mosquitto, path: str) -> SiteConfig:
    return parse_config(
        {
            "site": SITE,
            "gateway": GW,
            "state_dir": str(tmp_path / "state"),
            "mqtt": {
                "host": broker.host,
                "port": broker.port,
                "reconnect_base_s": 0.05,
                "reconnect_cap_s": 0.3,
            },
            "displays": [{"id": DISPLAY, "transport": f"pty:{path}"}],
            "display_link": {"reconnect_base_s": 0.05, "reconnect_cap_s": 0.3},
        }
    )


def state(version: int, *calls: tuple[str, str, int], next_numbers: list[str]) -> bytes:
    content = DisplayContent(
        display_id=DISPLAY,
        rooms=[DisplayRoomCall(room=r, number=n, call_seq=s) for r, n, s in calls],
        next_numbers=next_numbers,
        announcement=DisplayAnnouncement(text="番号でお呼びします"),
        brightness=80,
    )
    data = DisplayStateData(version=version, displays=[content])
    return messages.make(MessageType.DISPLAY_STATE, data, ts=time.time())


def rooms(host: DisplayPtyHost) -> list[tuple[str, str]]:
    return [(r.room, r.number) for r in host.view().rooms]


@pytest.fixture
async def display(tmp_path: Path) -> AsyncIterator[DisplayPtyHost]:
    """The display, paired with the agent of :func:`display_config` (its state dir)."""
    async with hosted_display(DISPLAY) as (host, _):
        await pair_hosted_display(host, tmp_path / "state")
        yield host


async def test_the_retained_state_is_shown_and_a_new_call_chimes_once(
    tmp_path: Path, mosquitto: Mosquitto, display: DisplayPtyHost
) -> None:
    async with client(mosquitto, "cloud") as cloud:
        await cloud.publish(
            TOPIC,
            state(1, ("1", "A-021", 1), ("3", "A-023", 1), next_numbers=["A-024"]),
            qos=1,
            retain=True,
        )
        agent = build_agent(display_config(tmp_path, mosquitto, display.path), SystemClock())
        async with running(agent):
            await eventually("the retained state on the display", lambda: rooms(display) != [])
            view = display.view()
            assert rooms(display) == [("1", "A-021"), ("3", "A-023")]
            assert view.next_numbers == ("A-024",)
            assert (view.announcement, view.set_brightness, view.state_version) == (
                "番号でお呼びします",
                80,
                1,
            )
            assert view.clock_set  # SET_TIME (or the state's time) set the display's clock
            chimes = view.chime_count

            await cloud.publish(
                TOPIC,
                state(2, ("1", "A-024", 2), ("3", "A-023", 1), next_numbers=["A-025"]),
                qos=1,
                retain=True,
            )
            await eventually("the new call", lambda: display.view().state_version == 2)
            assert rooms(display) == [("1", "A-024"), ("3", "A-023")]
            assert display.view().next_numbers == ("A-025",)
            assert [r.fresh for r in display.view().rooms] == [True, False]
            await asyncio.sleep(0.3)  # nothing sent twice chimes twice
            assert display.view().chime_count == chimes + 1


async def test_a_power_cycled_display_shows_the_state_again_within_two_seconds(
    tmp_path: Path, mosquitto: Mosquitto, display: DisplayPtyHost
) -> None:
    async with client(mosquitto, "cloud") as cloud:
        await cloud.publish(
            TOPIC, state(7, ("2", "B-101", 3), next_numbers=["B-102"]), qos=1, retain=True
        )
        agent = build_agent(display_config(tmp_path, mosquitto, display.path), SystemClock())
        async with running(agent):
            await eventually("the state on the display", lambda: display.view().has_state)
            boots = display.view().boot_count

            started = time.monotonic()
            blank = display.power_cycle()
            assert (blank.has_state, blank.rooms, blank.boot_count) == (False, (), boots + 1)
            await eventually(
                "the restored state", lambda: rooms(display) == [("2", "B-101")], limit_s=2
            )
            assert time.monotonic() - started < 2
            view = display.view()
            assert (view.state_version, view.next_numbers) == (7, ("B-102",))
            assert view.announcement == "番号でお呼びします"


async def test_a_malformed_display_state_is_ignored_and_logged_without_its_payload(
    tmp_path: Path,
    mosquitto: Mosquitto,
    display: DisplayPtyHost,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with client(mosquitto, "cloud") as cloud:
        await cloud.publish(TOPIC, state(1, ("1", "A-001", 1), next_numbers=[]), qos=1, retain=True)
        agent = build_agent(display_config(tmp_path, mosquitto, display.path), SystemClock())
        async with running(agent):
            await eventually("the state on the display", lambda: display.view().has_state)
            # a name where a ticket number belongs: refused, and never written to the log
            bad = state(5, ("1", "A-002", 2), next_numbers=[]).replace(b"A-002", b"Yamada Taro")
            await cloud.publish(TOPIC, bad, qos=1, retain=True)
            await cloud.publish(TOPIC, b"{not json Yamada Taro", qos=1, retain=True)
            await cloud.publish(TOPIC, state(2, ("1", "A-003", 2), next_numbers=[]), qos=1)
            await eventually("the next good state", lambda: display.view().state_version == 2)
            assert rooms(display) == [("1", "A-003")]
    malformed = [r for r in caplog.records if "malformed display state" in r.getMessage()]
    assert len(malformed) == 2
    assert "Yamada" not in caplog.text


async def test_an_unpaired_display_gets_nothing_and_the_log_says_how_to_pair_it(
    tmp_path: Path, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with hosted_display(DISPLAY) as (fresh, _), client(mosquitto, "cloud") as cloud:
        await cloud.publish(TOPIC, state(1, ("1", "A-001", 1), next_numbers=[]), qos=1, retain=True)
        agent = build_agent(display_config(tmp_path, mosquitto, fresh.path), SystemClock())
        async with running(agent):
            await eventually(
                "the agent saying the display is not paired",
                lambda: "is not paired with this Pi" in caplog.text,
            )
            await asyncio.sleep(0.3)
            view = fresh.view()
            # no frame, sealed or not, reached it: no state, not even the time
            assert (view.has_state, view.clock_set, view.auth_failures) == (False, False, 0)
    assert "denen provision display pair --serial PORT --id clinic-a-disp-1" in caplog.text
