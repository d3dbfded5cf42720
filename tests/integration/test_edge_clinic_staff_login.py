"""The staff names and PINs in front of the clinic agent's staff page and staff API, over real HTTP:
the pages as the agent serves them (:class:`ClinicPages` on uvicorn, a free port, https
with a certificate from a CA of the test's that the clients trust), on a
desk running today's queues by itself (no broker: the internet is down), its real SQLite
stores and outbox, and the session secret in a real state dir. Time is a
:class:`ManualClock` at 09:00 in Tokyo; the kiosk stays open to anyone throughout."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from edge.clinic import staff_cli
from edge.clinic.day_store import DayStore
from edge.clinic.desk import ClinicDesk
from edge.clinic.staff_access import KEY_FILE, PinHash, sign_session
from edge.clinic.web import SESSION_COOKIE, ClinicPages
from edge.config import load_config, parse_config
from edge.outbox import Outbox
from edge.store import Store
from protocol.clock import ManualClock
from tests.integration.test_edge_agent import within
from tests.support.pages_tls import PagesCa
from tests.unit.test_edge_clinic_desk import KIOSK, T0, clinic_state

NAME = "tanaka"
PIN = "918273"
PIN_HASH = str(PinHash.make(PIN))
STAFF_PINS = {NAME: PIN_HASH}
STAFF = "/staff?department=internal&room=1"
CALL_NEXT = {"department": "internal", "room": "1", "action": "call_next"}


@dataclass
class Desk:
    clock: ManualClock
    desk: ClinicDesk
    outbox: Outbox
    pages: ClinicPages
    url: str
    state_dir: Path
    tls: PagesCa | None

    def client(self, address: str = "127.0.0.1", **kw: Any) -> httpx.AsyncClient:
        """A browser of its own: its own cookies, calling from ``address`` (any 127.x.y.z:
        a machine of its own on the clinic network), trusting the city's CA."""
        verify = True if self.tls is None else self.tls.trust()
        transport = httpx.AsyncHTTPTransport(local_address=address, verify=verify)
        return httpx.AsyncClient(base_url=self.url, transport=transport, **kw)

    def room_1(self) -> list[str]:
        view = self.desk.queue_view("internal")
        assert view is not None
        return [t.number for t in view.in_rooms if t.room == "1"]


@contextlib.asynccontextmanager
async def staff_desk(
    tmp_path: Path, *, https: bool = True, listen: bool = True, **clinic: Any
) -> AsyncIterator[Desk]:
    """The agent's desk with today's queue (A-001 waiting) and its pages listening (or,
    with ``listen`` False, started without waiting for them), over https unless ``https``
    is False."""
    state_dir = tmp_path / "state"
    tls = PagesCa.make(tmp_path / "tls") if https else None
    if tls is not None:
        clinic = {"tls_cert": str(tls.cert), "tls_key": str(tls.key), **clinic}
    config = parse_config(
        {
            "site": "clinic-a",
            "gateway": "gw-1",
            "state_dir": str(state_dir),
            "mqtt": {"host": "127.0.0.1"},
            "card_readers": [
                {"id": KIOSK, "transport": "serial:/dev/null", "walk_in_department": "internal"}
            ],
            "clinic": {"host": "127.0.0.1", "port": 0, **clinic},
        }
    )
    assert config.clinic is not None
    state_dir.mkdir(parents=True)
    clock = ManualClock(T0)
    outbox = Outbox(state_dir / "outbox.sqlite3")
    store = Store(state_dir / "state.sqlite3")
    outbox.open()
    store.open()
    desk = ClinicDesk(
        config,
        store=DayStore(state_dir / "clinic.sqlite3"),
        outbox=outbox,
        display_store=store,
        clock=clock,
    )
    desk.open()
    desk.clinic_state_arrived(clinic_state())
    pages = ClinicPages(desk, config.clinic)
    task = asyncio.create_task(pages.run(), name="clinic-pages-under-test")
    try:
        if listen:
            await within("the clinic pages listen", pages.listening.wait())
        scheme = "http" if tls is None else "https"
        url = f"{scheme}://127.0.0.1:{pages.port}"
        yield Desk(clock, desk, outbox, pages, url, state_dir, tls)
    finally:
        pages.stop()
        await within("the pages stop", task)
        desk.close()
        outbox.close()
        store.close()


async def log_in(
    http: httpx.AsyncClient, pin: str = PIN, target: str = STAFF, name: str = NAME
) -> httpx.Response:
    return await http.post("/staff/login", data={"name": name, "pin": pin, "next": target})


async def kiosk_is_open(http: httpx.AsyncClient) -> None:
    assert (await http.get(f"/kiosk/{KIOSK}")).status_code == 200
    assert (await http.get(f"/api/kiosks/{KIOSK}")).json()["kind"] == "ready"
    assert (await http.get("/api/status")).json()["running"] == "agent"
    assert (await http.get("/")).status_code == 200


def no_secrets(text: str, state_dir: Path) -> None:
    """Neither the PIN nor its hash in ``text`` (the log) or in the agent's state files."""
    salt = PIN_HASH.split("$")[3]
    for secret in (PIN, PIN_HASH, salt):
        assert secret not in text
    for path in state_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert PIN_HASH.encode() not in data, path.name
            assert salt.encode() not in data, path.name


# ------------------------------------------------------------------ tests


async def test_a_stranger_is_sent_to_the_login_and_the_staff_api_answers_401(
    tmp_path: Path,
) -> None:
    async with staff_desk(tmp_path, staff=STAFF_PINS) as d, d.client() as http:
        page = await http.get(STAFF)
        assert page.status_code == 303
        assert page.headers["location"] == f"/staff/login?next={quote(STAFF, safe='')}"
        button = await http.post("/staff", data=CALL_NEXT)
        assert button.status_code == 303
        assert button.headers["location"].startswith("/staff/login")

        for method, path, body in (
            ("POST", "/api/actions", {"action": "call_next", "department": "internal"}),
            ("GET", "/api/queues/internal", None),
        ):
            answer = await http.request(method, path, json=body)
            assert answer.status_code == 401, path
            assert "log in at /staff/login" in answer.json()["detail"]
            assert answer.headers["www-authenticate"].startswith("Basic")
        assert d.room_1() == []  # nobody was called
        assert d.outbox.depth() == 0
        await kiosk_is_open(http)


async def test_a_wrong_pin_says_so_and_the_right_one_opens_the_staff_page(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with staff_desk(tmp_path, staff=STAFF_PINS) as d, d.client() as http:
        form = (await http.get(f"/staff/login?next={quote(STAFF)}")).text
        assert form.index("スタッフ ログイン") < form.index("Staff login")  # Japanese first
        assert 'name="name"' in form
        assert 'name="pin"' in form

        wrong = await log_in(http, "1111")
        assert wrong.status_code == 401
        assert "名前またはPINが違います" in wrong.text
        assert "Wrong name or PIN. 4 more wrong PINs" in wrong.text
        assert 'value="tanaka"' in wrong.text  # the name stays, only the PIN is typed again
        assert SESSION_COOKIE not in wrong.headers.get("set-cookie", "")

        in_the_name_field = await log_in(http, PIN, name=PIN)  # logged without the PIN
        assert in_the_name_field.status_code == 401
        right = await log_in(http)
        assert (right.status_code, right.headers["location"]) == (303, STAFF)
        cookie = right.headers["set-cookie"].lower()
        flags = ("httponly", "samesite=strict", "max-age=43200", "secure")
        assert all(flag in cookie for flag in flags)
        page = await http.get(STAFF)
        assert page.status_code == 200
        assert 'data-testid="waiting-A-001"' in page.text
        assert "logged in as tanaka" in page.text

        called = await http.post("/staff", data=CALL_NEXT, follow_redirects=True)
        assert called.status_code == 200
        assert 'data-testid="in-room-A-001"' in called.text
        assert d.room_1() == ["A-001"]
        queue = (await http.get("/api/queues/internal")).json()
        assert [t["number"] for t in queue["in_rooms"]] == ["A-001"]

        # logging out ends the session, also for a copy of the cookie kept elsewhere
        session = http.cookies[SESSION_COOKIE]
        out = await http.post("/staff/logout", follow_redirects=True)
        assert "ログアウトしました" in out.text
        assert "You are logged out." in out.text
        assert (await http.get(STAFF)).status_code == 303
        async with d.client(cookies={SESSION_COOKIE: session}) as kept:
            assert (await kept.get(STAFF)).status_code == 303
    no_secrets(caplog.text, d.state_dir)
    assert "wrong clinic staff name or PIN ('tanaka')" in caplog.text
    assert "wrong clinic staff name or PIN ('(a name nobody has)')" in caplog.text
    assert "clinic staff tanaka logged in from 127.0.0.1" in caplog.text
    assert "staff action call_next internal by tanaka: A-001" in caplog.text


async def test_a_forged_or_expired_session_cookie_is_refused(tmp_path: Path) -> None:
    async with staff_desk(tmp_path, staff=STAFF_PINS) as d:
        async with d.client() as http:
            assert (await log_in(http)).status_code == 303
            good = http.cookies[SESSION_COOKIE]
        name, expires, nonce, mac = good.split(".")
        assert name == NAME
        later = str(int(expires) + 3600)
        secret = (d.state_dir / KEY_FILE).read_bytes()
        forged = [
            f"{name}.{later}.{nonce}.{mac}",  # a longer session, the old signature
            f"{name}.{expires}.{nonce}.{'0' * len(mac)}",
            f"reception.{expires}.{nonce}.{mac}",  # tanaka's session, another name
            f"{name}." + sign_session(b"k" * 32, int(expires), nonce),  # another key
            f"{name}." + sign_session(secret, int(expires), nonce),  # the raw secret
            sign_session(secret, int(expires), nonce),  # no name
            "",
            "garbage",
        ]
        for value in forged:
            async with d.client(cookies={SESSION_COOKIE: value}) as http:
                assert (await http.get(STAFF)).status_code == 303, value
                assert (await http.post("/api/actions", json={})).status_code == 401

        async with d.client(cookies={SESSION_COOKIE: good}) as http:
            assert (await http.get(STAFF)).status_code == 200
            d.clock.advance(12 * 3600 - 1)  # 20:59:59: still today's session
            assert (await http.get(STAFF)).status_code == 200
            d.clock.advance(1)  # twelve hours after logging in
            assert (await http.get(STAFF)).status_code == 303

        # a session ends with the Tokyo day, before twelve hours are up
        d.clock.set(T0 + 14 * 3600)  # 23:00
        async with d.client() as http:
            assert (await log_in(http)).status_code == 303
            d.clock.advance(3599)
            assert (await http.get(STAFF)).status_code == 200
            d.clock.advance(1)  # midnight
            assert (await http.get(STAFF)).status_code == 303


async def test_wrong_pins_make_that_address_wait_longer_each_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with (
        staff_desk(tmp_path, staff=STAFF_PINS) as d,
        d.client("127.0.0.66") as stranger,
        d.client("127.0.0.66") as same_machine,
    ):
        for left in (4, 3, 2, 1):
            wrong = await log_in(stranger, "000000")
            assert wrong.status_code == 401
            assert f"Wrong name or PIN. {left} more wrong PIN" in wrong.text
        locked = await log_in(stranger, "000000")
        assert locked.status_code == 429
        assert "09:00" in locked.text  # says when to try again (in 30 seconds)
        assert "Too many wrong PINs from this device: its PINs are refused until" in locked.text
        # another name does not start it again: guesses are counted per address
        assert (await log_in(stranger, "000000", name="suzuki")).status_code == 429
        assert "この端末からPINが続けて間違えられたため" in locked.text

        # the address waits, whatever browser or PIN it uses, and is told why
        refused = await log_in(same_machine)
        assert refused.status_code == 429
        form = await same_machine.get("/staff/login")
        assert 'data-testid="locked"' in form.text
        bearer = await same_machine.get("/api/queues/internal", auth=(NAME, PIN))
        assert bearer.status_code == 429
        assert bearer.headers["retry-after"] == "30"

        d.clock.advance(30)
        assert (await log_in(stranger, "000000")).status_code == 429  # now 60 s
        d.clock.advance(59)
        assert (await log_in(same_machine)).status_code == 429
        d.clock.advance(1)
        assert (await log_in(same_machine)).status_code == 303
        assert (await same_machine.get(STAFF)).status_code == 200
        # a right PIN starts the address again
        assert "Wrong name or PIN. 4 more" in (await log_in(stranger, "000000")).text
    no_secrets(caplog.text, d.state_dir)
    assert "wrong clinic staff PIN from 127.0.0.66, 5 or more in a row" in caplog.text


async def test_the_staff_api_takes_a_name_and_pin_as_basic_auth(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with staff_desk(tmp_path, staff=STAFF_PINS) as d, d.client() as script:
        body = {"action": "call_next", "department": "internal", "room": "1"}
        wrong = await script.post("/api/actions", json=body, auth=(NAME, "1"))
        assert (wrong.status_code, wrong.json()["detail"]) == (401, "wrong staff name or PIN")
        for _ in range(2):  # the second time from the remembered PIN, same answer
            called = await script.post("/api/actions", json=body, auth=(NAME, PIN))
            body = {"action": "start", "department": "internal", "number": "A-001"}
            assert called.status_code == 200, called.text
        view = d.desk.queue_view("internal")
        assert view is not None
        assert [(t.number, t.state.value) for t in view.in_rooms] == [("A-001", "in_room")]
    assert "staff action start A-001 by tanaka" in caplog.text


async def test_a_staff_form_sent_from_another_site_is_refused(tmp_path: Path) -> None:
    async with staff_desk(tmp_path, staff=STAFF_PINS) as d, d.client() as http:
        assert (await log_in(http)).status_code == 303
        host = d.url.removeprefix("https://")
        for header in (
            {"Origin": "http://evil.example"},
            {"Origin": "null"},
            {"Referer": "http://evil.example/page"},
        ):
            button = await http.post("/staff", data=CALL_NEXT, headers=header)
            assert button.status_code == 403, header
            action = await http.post("/api/actions", json={**CALL_NEXT}, headers=header)
            assert action.status_code == 403, header
            login = await http.post("/staff/login", data={"name": NAME, "pin": PIN}, headers=header)
            assert login.status_code == 403, header
        assert d.room_1() == []
        ours = await http.post("/staff", data=CALL_NEXT, headers={"Origin": f"https://{host}"})
        assert ours.status_code == 303
        assert ours.headers["location"].startswith("/staff?")
        assert d.room_1() == ["A-001"]


async def test_with_no_pin_set_the_staff_side_is_closed_and_says_how_to_set_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with staff_desk(tmp_path) as d, d.client() as http:
        for path in (STAFF, "/staff/login"):
            page = await http.get(path)
            assert page.status_code == 403
            assert "スタッフ用PINが設定されていません" in page.text
            assert (
                "denen-agent clinic set-staff-pin NAME --config /etc/denen/site.toml" in page.text
            )
        assert (await http.post("/staff", data=CALL_NEXT)).status_code == 403
        assert (await log_in(http)).status_code == 403
        api = await http.post("/api/actions", json=CALL_NEXT, auth=(NAME, PIN))
        assert api.status_code == 403
        assert "set-staff-pin" in api.json()["detail"]
        assert d.room_1() == []
        await kiosk_is_open(http)
    assert "clinic staff page closed: no staff PIN set" in caplog.text


async def test_staff_pin_required_false_opens_the_staff_side_to_anyone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with staff_desk(tmp_path, staff_pin_required=False) as d, d.client() as http:
        page = await http.get(STAFF)
        assert page.status_code == 200
        assert 'data-testid="open-to-all"' in page.text
        called = await http.post("/api/actions", json=CALL_NEXT)
        assert called.status_code == 200
        assert d.room_1() == ["A-001"]
    assert "clinic staff page open to anyone on the clinic network" in caplog.text


SITE_TOML = """\
# the clinic's Pi
site = "clinic-a"
gateway = "gw-1"
state_dir = "{state}"

[mqtt]
host = "127.0.0.1"   # the broker

[[card_readers]]
id = "{kiosk}"
transport = "serial:/dev/null"

[clinic]
host = "127.0.0.1"
port = 0   # any free port

[metrics]
port = 0
"""


def agent_command(config: Path, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``denen-agent clinic …`` as the technician runs it on the Pi."""
    command = [sys.executable, "-m", "edge.main", "clinic", *argv, "--config", str(config)]
    return subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)


def set_pin_process(config: Path, name: str, pin: str) -> subprocess.CompletedProcess[str]:
    return agent_command(config, "set-staff-pin", name, "--pin-stdin", stdin=f"{pin}\n")


async def test_the_technicians_commands_set_each_staff_pin_and_the_agent_takes_them(
    tmp_path: Path,
) -> None:
    config = tmp_path / "site.toml"
    original = SITE_TOML.format(state=tmp_path / "state", kiosk=KIOSK)
    config.write_text(original)
    config.chmod(0o640)
    done = set_pin_process(config, "Tanaka", "135791")  # names are kept in lower case
    assert done.returncode == 0, done.stderr
    assert "Staff PIN of tanaka set" in done.stdout
    assert "Restart the agent" in done.stdout
    assert "135791" not in done.stdout + done.stderr
    assert set_pin_process(config, "s-0012", "864200").returncode == 0
    text = config.read_text()
    assert "135791" not in text
    assert text.startswith(original)  # the table appended, the rest as it was
    assert text.removeprefix(original).splitlines()[:2] == ["", "[clinic.staff]"]
    assert config.stat().st_mode & 0o777 == 0o640
    clinic = load_config(config).clinic
    assert clinic is not None
    assert sorted(clinic.staff_pins) == ["s-0012", "tanaka"]
    assert clinic.staff_pins["tanaka"].matches("135791")
    first = clinic.staff["tanaka"]

    # again: the line is replaced, not added twice
    assert set_pin_process(config, "tanaka", "246802").returncode == 0
    clinic = load_config(config).clinic
    assert clinic is not None
    assert clinic.staff["tanaka"] != first
    assert config.read_text().count("tanaka = ") == 1
    listed = agent_command(config, "list-staff")
    assert (listed.returncode, listed.stdout) == (0, "s-0012\ntanaka\n")
    assert "$scrypt$" not in listed.stdout

    # the pages of an agent with this config take the new PIN, and only it
    async with staff_desk(tmp_path / "agent", staff=clinic.staff) as d, d.client() as http:
        assert (await log_in(http, "135791", name="tanaka")).status_code == 401
        assert (await log_in(http, "246802", name="tanaka")).status_code == 303

    removed = agent_command(config, "remove-staff", "s-0012")
    assert removed.returncode == 0, removed.stderr
    clinic = load_config(config).clinic
    assert clinic is not None
    assert sorted(clinic.staff_pins) == ["tanaka"]
    again = agent_command(config, "remove-staff", "s-0012")
    assert again.returncode == staff_cli.EXIT_BAD_CONFIG
    assert "no staff member 's-0012'" in again.stderr


async def test_an_old_shared_pin_is_reception_until_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "site.toml"
    shared = str(PinHash.make("111222"))
    site = SITE_TOML.format(state=tmp_path / "state", kiosk=KIOSK)
    config.write_text(site.replace("[clinic]\n", f'[clinic]\nstaff_pin_hash = "{shared}"\n'))
    listed = agent_command(config, "list-staff")
    assert listed.stdout.startswith("reception (the old shared PIN: give each person")
    async with staff_desk(tmp_path / "agent", staff_pin_hash=shared) as d, d.client() as http:
        assert (await log_in(http, "111222", name="reception")).status_code == 303
        assert "logged in as reception" in (await http.get(STAFF)).text
    assert "the old shared staff PIN is in use as staff member 'reception'" in caplog.text
    assert "clinic remove-staff reception" in caplog.text

    # its own PIN for reception replaces the shared one
    assert set_pin_process(config, "reception", "333444").returncode == 0
    text = config.read_text()
    assert "staff_pin_hash" not in text
    clinic = load_config(config).clinic
    assert clinic is not None
    assert not clinic.shared_pin_left
    assert clinic.staff_pins["reception"].matches("333444")
    assert not clinic.staff_pins["reception"].matches("111222")
    # and remove-staff reception takes an old shared PIN out too
    config.write_text(site.replace("[clinic]\n", f'[clinic]\nstaff_pin_hash = "{shared}"\n'))
    assert agent_command(config, "remove-staff", "reception").returncode == 0
    clinic = load_config(config).clinic
    assert clinic is not None
    assert clinic.staff_pins == {}
    assert config.read_text() == site


def test_the_command_refuses_a_bad_pin_a_bad_name_two_different_pins_and_a_gym(
    tmp_path: Path,
) -> None:
    config = tmp_path / "site.toml"
    config.write_text(SITE_TOML.format(state=tmp_path / "state", kiosk=KIOSK))
    before = config.read_text()
    for pin in ("12345", "12345678901234", "12a456", ""):
        done = set_pin_process(config, "tanaka", pin)
        assert done.returncode == staff_cli.EXIT_BAD_PIN
        assert "6 to 12 digits" in done.stderr
    for name in ("田中", "a b", "_x", "x" * 33, "tanaka.1"):
        done = set_pin_process(config, name, "123456")
        assert done.returncode == staff_cli.EXIT_BAD_PIN
        assert "a staff name is 1 to 32 letters a-z, digits, - or _" in done.stderr
    missing = agent_command(config, "set-staff-pin", "--pin-stdin", stdin="123456\n")
    assert missing.returncode == 2  # argparse: the name is required
    assert "name" in missing.stderr
    args = staff_cli_args(config)
    answers = iter(["123456", "654321"])
    assert staff_cli.run(args, ask=lambda _: next(answers)) == staff_cli.EXIT_BAD_PIN
    assert config.read_text() == before

    answers = iter(["123456", "123456"])
    assert staff_cli.run(args, ask=lambda _: next(answers)) == 0
    assert "tanaka = " in config.read_text()

    gym = tmp_path / "gym.toml"
    gym.write_text('site = "gym-a"\ngateway = "gw-1"\nstate_dir = "/tmp/x"\n[mqtt]\nhost = "h"\n')
    done = set_pin_process(gym, "tanaka", "123456")
    assert done.returncode == staff_cli.EXIT_BAD_CONFIG
    assert "not a clinic's site file" in done.stderr
    assert "tanaka" not in gym.read_text()


def staff_cli_args(config: Path) -> argparse.Namespace:
    return argparse.Namespace(
        config=str(config), clinic_command="set-staff-pin", name="tanaka", pin_stdin=False
    )
