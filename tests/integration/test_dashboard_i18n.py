"""The pages in Japanese and English through the ASGI app (MQTT off): the language a
citizen, a manager and clinic staff get (cookie, else Accept-Language, else Japanese), the
header's switch, Japanese dates, the services' refusals said in Japanese on the booking
form and at the desk, the patient's ticket page; and the catalogue's completeness, so a
new label without Japanese fails CI."""

from __future__ import annotations

import ast
import html
import re
import string
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from jinja2 import Environment, nodes

from cloud.app import create_app
from cloud.bootstrap import ClinicSeed, DemoSeed, seed_clinic, seed_demo
from cloud.core.models import Role
from cloud.dashboard import i18n
from cloud.gym.views import OpeningHoursView
from cloud.settings import CloudSettings
from protocol.clock import ManualClock
from tests.support.clinic import NINE, card_qr
from tests.support.cloud import Authenticator, log_in
from tests.support.confirm_mail import confirm_by_mail

DASHBOARD = Path(i18n.__file__).parent
JA = {"Accept-Language": "ja-JP,ja;q=0.9,en-US;q=0.8,en;q=0.7"}  # Chrome on a Japanese PC
EN = {"Accept-Language": "en-US,en;q=0.9"}
DAY = "2027-01-15"  # a Friday; the clocks stand at 09:00 Tokyo


@dataclass
class Site:
    """The gym and the clinic in one cloud, and fresh browsers (each its own cookies)."""

    app: FastAPI
    gym: DemoSeed
    clinic: ClinicSeed
    clients: list[httpx.AsyncClient]
    phones: dict[str, Authenticator] = field(default_factory=dict)  # each person's app

    def browser(self, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://cloud", headers=headers
        )
        self.clients.append(client)
        return client

    async def staff(self, username: str, headers: dict[str, str]) -> httpx.AsyncClient:
        client = self.browser(headers)
        users = {**self.gym.users, **self.clinic.users}
        phone = self.phones.get(username)
        clock = self.app.state.clock
        password = users[username].password
        self.phones[username] = await log_in(client, clock, username, password, phone)
        return client

    def card(self, name: str) -> str:
        return next(p.card for p in self.clinic.patients if p.name == name)


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    settings = CloudSettings(
        database_url=f"sqlite:///{tmp_path}/i18n.db",
        secret_key="s" * 40,
        metrics_token="m" * 32,
        mqtt_enabled=False,
    )
    clock = ManualClock(NINE)
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        with app.state.sessions.begin() as session:
            gym = seed_demo(session)
            clinic = seed_clinic(session, users={"clinic": Role.CLINIC}, clock=clock)
        # the gym opens 09:00-21:00 every day (the demo's is open round the clock)
        hours = [OpeningHoursView(d, 9 * 60, 21 * 60) for d in range(7)]
        app.state.services.facility_rules.set_hours(gym.facility_id, hours)
        world = Site(app, gym, clinic, [])
        try:
            yield world
        finally:
            for client in world.clients:
                await client.aclose()


def by_testid(page: str, testid: str) -> str:
    """The text inside the first element with ``data-testid=testid`` (tags stripped)."""
    found = re.search(rf'<(\w+)[^>]*data-testid="{re.escape(testid)}"[^>]*>(.*?)</\1>', page, re.S)
    assert found, f"no {testid} on the page"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", found.group(2))).split())


def html_lang(page: str) -> str:
    found = re.search(r'<html lang="([^"]+)">', page)
    assert found, "no <html lang>"
    return found.group(1)


def booking_form(site: Site, **values: str) -> dict[str, str]:
    return {
        "room_id": str(site.gym.room_id),
        "name": "Yamada Hanako",
        "email": "hanako@example.jp",
        "group_size": "6",
        "purpose": "バレーボール",
        "day": DAY,
        "start": "13:00",
        "hours": "2",
        **values,
    }


# ------------------------------------------------------------------ choosing the language


async def test_a_citizen_with_a_japanese_browser_gets_the_booking_page_in_japanese(
    site: Site,
) -> None:
    citizen = site.browser(JA)
    r = await citizen.get("/book", params={"room_id": site.gym.room_id, "date": DAY})
    assert r.status_code == 200
    assert html_lang(r.text) == "ja"
    assert r.headers["content-language"] == "ja"
    assert "<h1>施設の予約</h1>" in r.text
    assert "開始時刻 (Asia/Tokyo)" in r.text
    assert "料金: 1時間あたり¥600" in by_testid(r.text, "rules")
    assert "金曜日 09:00〜21:00" in by_testid(r.text, "rules")
    assert "2027年1月15日(金)の" in r.text  # the day's heading
    assert "Book a facility" not in r.text
    # the switch: Japanese is the current one, English links back to this room and day
    assert 'aria-current="true" data-testid="lang-ja">日本語' in r.text
    link = re.search(r'href="([^"]+)"[^>]*data-testid="lang-en"', r.text)
    assert link is not None
    assert html.unescape(link.group(1)) == (
        f"/lang/en?next=/book%3Froom_id%3D{site.gym.room_id}%26date%3D{DAY}"
    )


async def test_no_language_stated_is_japanese_and_an_english_browser_gets_english(
    site: Site,
) -> None:
    assert html_lang((await site.browser().get("/book")).text) == "ja"
    page = (await site.browser(EN).get("/book")).text
    assert html_lang(page) == "en"
    assert "<h1>Book a facility</h1>" in page
    # a browser that ranks English above Japanese gets English; one naming neither, Japanese
    ranked = await site.browser({"Accept-Language": "ko-KR,en;q=0.8,ja;q=0.5"}).get("/book")
    assert html_lang(ranked.text) == "en"
    other = await site.browser({"Accept-Language": "zh-CN,zh;q=0.9"}).get("/book")
    assert html_lang(other.text) == "ja"


async def test_the_switch_sets_the_cookie_and_comes_back_to_the_same_page(site: Site) -> None:
    citizen = site.browser(JA)
    target = f"/book?room_id={site.gym.room_id}&date={DAY}"
    r = await citizen.get("/lang/en", params={"next": target})
    assert r.status_code == 303
    assert r.headers["location"] == target
    assert "lang=en" in r.headers["set-cookie"]
    page = (await citizen.get(r.headers["location"])).text
    assert html_lang(page) == "en"  # the cookie beats the Japanese browser
    assert "<h1>Book a facility</h1>" in page
    assert "Opening hours: Monday 09:00\u201321:00, Tuesday" in by_testid(page, "rules")
    back = await citizen.get("/lang/ja", params={"next": "/book"})
    assert html_lang((await citizen.get(back.headers["location"])).text) == "ja"
    # the switch goes only to pages of this site, and drops a one-time message
    for elsewhere in ("//evil.example/", "https://evil.example/", "/\\evil.example/"):
        r = await citizen.get("/lang/en", params={"next": elsewhere})
        assert r.headers["location"] == "/"
    flashed = await citizen.get("/book", params={"flash": "Your booking is cancelled."})
    assert "next=/book" in html.unescape(flashed.text)
    switch = re.search(r'href="(/lang/[^"]+)"', flashed.text)
    assert switch is not None
    assert "flash" not in switch.group(1)


# ---------------------------------------------------------------------- the citizen's pages


async def test_the_booking_form_says_the_services_refusals_in_japanese(site: Site) -> None:
    citizen = site.browser(JA)
    booked = await citizen.post("/book", data=booking_form(site, idempotency_key="first-key-1"))
    assert booked.status_code == 303
    await confirm_by_mail(citizen, site.app.state.sessions, "hanako@example.jp")

    # the slot is taken (by someone else)
    taken = await citizen.post(
        "/book",
        data=booking_form(
            site, email="other@example.jp", start="14:00", idempotency_key="second-key-2"
        ),
    )
    assert taken.status_code == 400
    assert by_testid(taken.text, "error") == (
        "2027年1月15日(金) 14:00〜16:00は、Main hallの別の予約 "
        "(2027年1月15日(金) 13:00〜15:00、承認待ち) と重なっています。別の時間を選んでください。"
    )
    assert 'value="other@example.jp"' in taken.text  # the form is kept

    # outside the opening hours, and a form that is not filled in
    early = await citizen.post(
        "/book",
        data=booking_form(site, day="2027-01-16", start="07:00", idempotency_key="k3k3k3k3"),
    )
    assert by_testid(early.text, "error") == (
        "2027年1月16日(土) 07:00〜09:00は開館時間外です "
        "(Yonago Gym A: 2027年1月16日(土) 09:00〜21:00開館)。開館時間内で選んでください。"
    )
    empty = await citizen.post(
        "/book", data=booking_form(site, hours="two", idempotency_key="k4k4k4k4")
    )
    assert by_testid(empty.text, "error").startswith("部屋、日付、開始時刻")
    # in English the same refusal reads as the service wrote it
    english = await site.browser(EN).post(
        "/book",
        data=booking_form(site, day="2027-01-16", start="07:00", idempotency_key="k5k5k5k5"),
    )
    assert "is outside the opening hours" in by_testid(english.text, "error")


async def test_the_status_page_shows_japanese_dates_and_the_payment_in_japanese(
    site: Site,
) -> None:
    citizen = site.browser(JA)
    r = await citizen.post("/book", data=booking_form(site, idempotency_key="status-key-1"))
    page = (await citizen.get(r.headers["location"])).text
    assert by_testid(page, "status") == "メール確認待ち"
    assert by_testid(page, "check-mail").startswith(
        "メールをご確認ください。hanako@example.jp 宛てにリンクをお送りしました。30 分以内に"
    )
    confirmed = await confirm_by_mail(citizen, site.app.state.sessions, "hanako@example.jp")
    assert by_testid(confirmed.text, "confirmed").startswith("予約が確定しました。")
    page = (await citizen.get(r.headers["location"])).text
    assert html_lang(page) == "ja"
    assert by_testid(page, "booking") == (
        "Yonago Gym A Main hall、2027年1月15日(金) 13:00〜15:00 (Asia/Tokyo)、Yamada Hanako様"
    )
    assert by_testid(page, "status") == "承認待ち"
    assert by_testid(page, "waiting").startswith("承認をお待ちください。")
    payment = by_testid(page, "payment")
    assert payment.startswith("料金: ¥1,200 · お支払い: 未払い ")
    assert "Yonago Gym Aの窓口で¥1,200をお支払いください。" in payment

    refused = await citizen.post(
        f"{r.headers['location'].split('?')[0]}/cancel",
        data={"token": r.headers["location"].split("token=")[1], "reason": " "},
    )
    assert by_testid(refused.text, "error") == "取消の理由を入力してください。"
    gone = await citizen.get("/r/nope", params={"token": "x"})
    assert gone.status_code == 404
    assert "このリンクに当てはまるご予約はありません。" in gone.text


# ------------------------------------------------------------------------- staff pages


async def test_the_manage_page_in_both_languages(site: Site) -> None:
    citizen = site.browser(JA)
    await citizen.post("/book", data=booking_form(site, idempotency_key="manage-key-1"))
    await confirm_by_mail(citizen, site.app.state.sessions, "hanako@example.jp")

    ja = await site.staff("manager", JA)
    page = (await ja.get("/manage")).text
    assert html_lang(page) == "ja"
    assert "<h1>承認待ちの予約</h1>" in page
    assert "2027年1月15日(金) 13:00〜15:00" in page
    assert ">承認</button>" in page
    assert "manager (施設管理者)" in by_testid(page, "user")
    rid = re.search(r'data-testid="pending-row" data-reservation-id="([^"]+)"', page)
    assert rid is not None
    r = await ja.post(f"/manage/{rid.group(1)}/approve")
    approved = (await ja.get(r.headers["location"])).text
    assert by_testid(approved, "flash") == "承認しました: Yamada Hanako様に暗証番号を送信しました"
    assert "錠の次回同期待ち" in by_testid(approved, f"sync-{rid.group(1)}")

    en = await site.staff("manager", EN)
    page = (await en.get("/manage")).text
    assert html_lang(page) == "en"
    assert "<h1>Pending bookings</h1>" in page
    assert "2027-01-15 13:00 \u2013 2027-01-15 15:00" in page
    assert "waiting for the lock" in by_testid(page, f"sync-{rid.group(1)}")


async def test_the_clinic_staff_page_in_both_languages(site: Site) -> None:
    ja = await site.staff("clinic", JA)
    staff_page = "/clinic/clinic-a/staff?department=internal&room=1"
    page = (await ja.get(staff_page)).text
    assert html_lang(page) == "ja"
    assert by_testid(page, "call-next") == "次の方を診察室1へ呼び出す"
    assert "<legend>受付で患者を受け付ける</legend>" in page
    # the desk: an unknown card and a card that is no card, said in Japanese
    form = {"department": "internal", "room": "1", "to_department": ""}
    r = await ja.post("/clinic/clinic-a/staff/checkin", data={**form, "card": "1234567890123452"})
    refused = by_testid((await ja.get(r.headers["location"])).text, "error")
    assert refused in (
        "この診察券は登録されていません。受付にお越しください。",
        "診察券の番号ではありません (チェックディジットの誤り)。"
        "16桁を確かめて、もう一度お試しください。",
    )
    r = await ja.post("/clinic/clinic-a/staff/checkin", data={**form, "card": "12"})
    assert by_testid((await ja.get(r.headers["location"])).text, "error").startswith(
        "診察券の番号ではありません"
    )
    r = await ja.post(
        "/clinic/clinic-a/staff/checkin", data={**form, "card": site.card("Tanaka Yuki")}
    )
    done = (await ja.get(r.headers["location"])).text
    assert by_testid(done, "flash").startswith("受付しました: A-001、Internal medicine、")
    r = await ja.post(
        "/clinic/clinic-a/staff/call-next", data={"department": "internal", "room": "1"}
    )
    called = (await ja.get(r.headers["location"])).text
    assert by_testid(called, "flash") == "A-001を診察室1へ呼び出しました"
    assert by_testid(called, "current-state") == "呼び出し中 (未入室)"

    en = await site.staff("clinic", EN)
    page = (await en.get(staff_page)).text
    assert html_lang(page) == "en"
    assert by_testid(page, "call-next") == "Call next to room 1"
    assert by_testid(page, "current-state") == "called, not yet in"


async def test_the_patients_ticket_page_is_japanese(site: Site) -> None:
    patient = site.browser(JA)
    r = await patient.post(
        "/api/clinic/checkin",
        json={
            "qr": card_qr(site.app.state.settings, "clinic-a", site.card("Tanaka Yuki")),
            "site": "clinic-a",
        },
    )
    assert r.status_code in (200, 201), r.text
    ticket = httpx.URL(r.json()["page_url"]).path
    page = (await patient.get(ticket)).text
    assert html_lang(page) == "ja"
    assert "<title>受付番号 A-001 · Denen</title>" in page
    assert "<p>あなたの受付番号</p>" in page
    assert by_testid(page, "ticket-ahead") == "次にお呼びします。"
    assert by_testid(page, "ticket-wait").startswith("待ち時間の目安: ")
    assert "開いたままにしてください" in page
    live = (await patient.get(f"{ticket}/live")).text
    assert "あなたの受付番号" in live
    gone = await patient.get("/ticket/not-a-token")
    assert gone.status_code == 404
    assert "この受付番号は見つかりません。" in gone.text


# ---------------------------------------------------------------- the catalogue itself


def _template_texts() -> Iterator[tuple[str, str]]:
    """``_("text")`` and ``_("text", context="c")`` in every template (``_(label)``: the
    label is marked where Python defines it)."""
    env = Environment(autoescape=True)
    for path in sorted((DASHBOARD / "templates").glob("*.html")):
        for call in env.parse(path.read_text(encoding="utf-8")).find_all(nodes.Call):
            if not (isinstance(call.node, nodes.Name) and call.node.name == "_" and call.args):
                continue
            text = call.args[0]
            if isinstance(text, nodes.Const) and isinstance(text.value, str):
                contexts = [kw.value for kw in call.kwargs if kw.key == "context"]
                context = next((str(c.value) for c in contexts if isinstance(c, nodes.Const)), "")
                yield i18n.catalogue_key(text.value, context), f"{path.name}:{call.lineno}"


# where Python marks a text: N_(text), tr(request, text, ...), gettext(lang, text, ...)
_MARKERS = {"N_": 0, "tr": 1, "gettext": 1}


def _python_texts() -> Iterator[tuple[str, str]]:
    for path in sorted(DASHBOARD.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            index = _MARKERS.get(node.func.id)
            if index is None or len(node.args) <= index:
                continue
            arg = node.args[index]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                contexts = [kw.value for kw in node.keywords if kw.arg == "context"]
                context = next((str(c.value) for c in contexts if isinstance(c, ast.Constant)), "")
                yield i18n.catalogue_key(arg.value, context), f"{path.name}:{node.lineno}"


def marked_texts() -> dict[str, str]:
    """Every text the dashboard marks for translation, with where it is marked first."""
    found: dict[str, str] = {}
    for text, where in (*_template_texts(), *_python_texts()):
        found.setdefault(text, where)
    return found


def _fields(text: str) -> set[str]:
    english = text.partition("|")[2] if re.match(r"^\w+\|", text) else text
    return {name for _, name, _, _ in string.Formatter().parse(english) if name is not None}


def _tags(text: str) -> list[str]:
    return sorted(re.findall(r"<[^>]+>", text))


def test_every_marked_text_has_japanese_and_every_entry_is_used() -> None:
    marked = marked_texts()
    catalogue = i18n.load_catalogue()
    assert len(marked) > 300, "the extraction found too little: is it still looking?"
    missing = [
        f"{where}: {text!r}" for text, where in marked.items() if text not in catalogue.messages
    ]
    assert missing == [], (
        "no Japanese for these (add them to cloud/dashboard/ja*.toml):\n" + "\n".join(missing)
    )
    unused = sorted(set(catalogue.messages) - set(marked))
    assert unused == [], f"entries no page marks any more (edited English?): {unused}"
    assert catalogue.clashes == ()


def test_each_translation_keeps_its_fields_and_markup() -> None:
    for english, japanese in i18n.load_catalogue().messages.items():
        assert _fields(japanese) == _fields(english), f"fields differ: {english!r}"
        assert _tags(japanese) == _tags(english), f"markup differs: {english!r}"
        assert japanese.strip(), f"empty translation: {english!r}"


def test_each_service_sentence_matches_its_example_and_says_it_in_japanese() -> None:
    for sentence in i18n.load_catalogue().service:
        m = sentence.pattern.fullmatch(sentence.example)
        assert m is not None, f"{sentence.pattern.pattern!r} does not match its example"
        assert _fields(sentence.ja) <= set(m.groupdict()), f"unknown field in {sentence.ja!r}"
        said = i18n.service_text("ja", sentence.example)
        assert said != sentence.example
        assert not re.search(r"[A-Za-z]{4,} [a-z]{3,} [a-z]{3,}", said), f"English left: {said!r}"
        assert i18n.service_text("en", sentence.example) == sentence.example
