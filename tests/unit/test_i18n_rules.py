"""Pure parts of the dashboard's languages: which language a browser gets, Japanese dates,
and service sentences said in Japanese (or left alone)."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pytest

from cloud.dashboard.i18n import (
    choose_lang,
    day_text,
    duration,
    from_accept_language,
    gettext,
    service_text,
    span,
    when,
)
from cloud.dashboard.labels import event_label
from cloud.localtime import format_local_ja, format_span_ja
from tests.support.clinic import at

TOKYO = ZoneInfo("Asia/Tokyo")


@pytest.mark.parametrize(
    ("header", "lang"),
    [
        ("ja-JP,ja;q=0.9,en-US;q=0.8,en;q=0.7", "ja"),
        ("en-US,en;q=0.9,ja;q=0.8", "en"),
        ("ko-KR,ko;q=0.9,en-US;q=0.8", "en"),
        ("en;q=0.5, ja;q=0.6", "ja"),
        ("ja;q=0, en", "en"),  # q=0: not acceptable
        ("JA", "ja"),
        ("en, ja", "en"),  # same q: the first
        ("zh-CN,zh;q=0.9", None),
        ("*", None),
        ("", None),
        (None, None),
        ("ja;q=abc, en;q=0.1", "en"),  # a broken q counts as 0
    ],
)
def test_the_browser_language_is_the_better_ranked_of_ja_and_en(
    header: str | None, lang: str | None
) -> None:
    assert from_accept_language(header) == lang


def test_the_cookie_wins_then_the_browser_then_japanese() -> None:
    assert choose_lang("en", "ja") == "en"
    assert choose_lang("ja", "en-US") == "ja"
    assert choose_lang("fr", "en-US") == "en"  # an unknown cookie is ignored
    assert choose_lang(None, None) == "ja"
    assert choose_lang(None, "zh-TW") == "ja"


def test_japanese_dates_name_the_weekday() -> None:
    friday = at("2027-01-15 09:00")
    assert format_local_ja(friday, TOKYO) == "2027年1月15日(金) 09:00"
    assert when("ja", friday, TOKYO) == "2027年1月15日(金) 09:00"
    assert when("en", friday, TOKYO) == "2027-01-15 09:00"
    assert format_span_ja(friday, friday + 3600, TOKYO) == "2027年1月15日(金) 09:00〜10:00"
    assert format_span_ja(friday, friday + 86400, TOKYO) == (
        "2027年1月15日(金) 09:00〜2027年1月16日(土) 09:00"
    )
    assert span("en", friday, friday + 3600, TOKYO) == "2027-01-15 09:00 \u2013 2027-01-15 10:00"
    assert day_text("ja", date(2027, 1, 17)) == "2027年1月17日(日)"
    assert day_text("ja", "2027-01-17") == "2027年1月17日(日)"
    assert day_text("ja", "not a day") == "not a day"
    assert (duration("ja", 90), duration("ja", 120), duration("ja", 30)) == (
        "1時間30分",
        "2時間",
        "30分",
    )
    assert duration("en", 90) == "1 hour 30 minutes"


def test_texts_and_labels_in_both_languages() -> None:
    assert gettext("ja", "Called {number} to room {room}", number="A-001", room="1") == (
        "A-001を診察室1へ呼び出しました"
    )
    assert gettext("en", "Called {number} to room {room}", number="A-001", room="1") == (
        "Called A-001 to room 1"
    )
    assert gettext("ja", "a text nobody translated") == "a text nobody translated"
    assert event_label("unlocked", lang="ja") == "暗証番号で解錠"
    assert event_label("unlocked", offline=True, lang="ja") == "オフライン暗証番号で解錠"
    assert event_label("unlocked") == "Unlocked with PIN"
    assert event_label("a_kind_from_the_future", lang="ja") == "a_kind_from_the_future"


def test_a_service_sentence_is_said_in_japanese_or_left_as_it_is() -> None:
    taken = (
        "the slot 10:00\u201311:00 on 2027-01-15 overlaps an approved booking of Dojo "
        "(10:30\u201311:30 on 2027-01-15); pick another time"
    )
    assert service_text("ja", taken) == (
        "2027年1月15日(金) 10:00〜11:00は、Dojoの別の予約 "
        "(2027年1月15日(金) 10:30〜11:30、承認済み) と重なっています。別の時間を選んでください。"
    )
    assert service_text("en", taken) == taken
    unknown = "the flux capacitor is offline; try again at 88 mph"
    assert service_text("ja", unknown) == unknown
    # a date the person mistyped is quoted back as typed, not as a crash
    assert service_text("ja", "'2027-13-01' is not a date; use YYYY-MM-DD").startswith(
        "'2027-13-01'は日付ではありません"
    )
    # a closed day's reason a manager typed is never taken for a service sentence
    assert service_text("ja", "open day for the neighbourhood") == (
        "open day for the neighbourhood"
    )
