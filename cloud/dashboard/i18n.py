"""Japanese and English on the dashboard's pages.

**A catalogue keyed by the English text** (gettext's choice, not message ids). A template
marks a text with ``{{ _("Book a facility") }}``; Python marks one with
``tr(request, "Rules saved")``, or with ``N_("Relocked")`` where a constant is defined now
and translated when a page shows it. ``ja.toml`` next to this module (and a
``ja_<part>.toml`` per part, such as the fleet pages' ``ja_fleet.toml``) maps each English
text to its Japanese. English keys keep the templates readable, English needs no
catalogue at all, and a text without a Japanese entry shows in English rather than as an
id. The cost, that editing an English text orphans its translation, is paid by
``tests/integration/test_dashboard_i18n.py``: it fails on a marked text with no Japanese
entry and on an entry nothing marks any more.

Placeholders are ``str.format`` fields, so Japanese puts them in its own order:
``_("Called {number} to room {room}", number=n, room=r)``. In templates the text is
trusted markup and the values are escaped (``Markup.format``), so a sentence may keep its
``<strong>``. English plurals are separate texts ("1 no-show", "{n} no-shows"). Where one
English word needs two Japanese ones, ``context=`` tells them apart (gettext's
``pgettext``): ``_("Room", context="clinic")`` is ``"clinic|Room"`` in the catalogue.

**Sentences from services** (exception messages, slot reasons, payment instructions, a
PIN's sync status) are English and also reach the REST API and the logs. The
``[[service]]`` entries of ``ja.toml`` match the ones citizens, patients and desk staff
meet (slot taken, outside the opening hours, unknown card, …) by regular expression and
say them in Japanese; any other sentence stays English. :func:`render
<cloud.dashboard.routes.render>` passes every page's ``error`` through them.

**Which language.** The ``lang`` cookie, set by the 日本語 / English switch in every page's
header; else the browser's ``Accept-Language`` (whichever of ja and en it ranks higher);
else Japanese, on every page. Denen serves a Japanese city: a browser in Yonago (a
citizen's phone, a facility's or a clinic's PC) sends ``ja``, and one that states neither
language is far likelier to belong to someone there than to a visitor who reads English.
Staff pages get no English default of their own: a facility manager, desk staff and most
of city ops read Japanese, and one person's pages (a manager also books) must not change
language between ``/book`` and ``/manage``. Who prefers English says so once, with the
switch or the browser. Mails stay English (``cloud/services/notifications*.py``).

Dates keep the facilities' zone; Japanese pages write ``2027年1月15日(金) 09:00``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Final, Literal, cast
from zoneinfo import ZoneInfo

from jinja2 import Environment, pass_context
from jinja2.runtime import Context
from markupsafe import Markup
from starlette.requests import Request

from cloud.gym.rules import WEEKDAYS, format_minutes
from cloud.localtime import (
    EN_DASH,
    JA_WEEKDAYS,
    WAVE_DASH,
    format_date_ja,
    format_local,
    format_local_ja,
    format_span_ja,
)

Lang = Literal["ja", "en"]
LANGS: Final[tuple[Lang, ...]] = ("ja", "en")
DEFAULT_LANG: Final[Lang] = "ja"
LANG_COOKIE: Final = "lang"
LANG_COOKIE_MAX_AGE_S: Final = 365 * 24 * 3600
LANG_NAMES: Final[Mapping[Lang, str]] = {"ja": "日本語", "en": "English"}
# ja.toml, and any ja_<part>.toml beside it (one per part of the dashboard, so that people
# working on different pages do not edit one file)
CATALOGUE_DIR: Final = Path(__file__).parent


def N_(text: str) -> str:  # noqa: N802 - gettext's name for "mark now, translate later"
    """Mark ``text`` for the catalogue; it is translated where a page shows it."""
    return text


# enum values the pages show as they are in English (a booking's status, a role, …)
SHOWN_VALUES: Final = frozenset(
    {
        N_("unconfirmed"),
        N_("pending"),
        N_("approved"),
        N_("rejected"),
        N_("cancelled"),
        N_("unpaid"),
        N_("paid"),
        N_("refunded"),
        N_("queued"),
        N_("sent"),
        N_("failed"),
        N_("online"),
        N_("offline"),
        N_("info"),
        N_("urgent"),
        N_("ops"),
        N_("manager"),
        N_("clinic"),
        N_("technician"),
    }
)


@dataclass(frozen=True, slots=True)
class ServiceSentence:
    """One English sentence a service writes, as a pattern, and its Japanese."""

    pattern: re.Pattern[str]
    ja: str
    example: str


@dataclass(frozen=True, slots=True)
class Catalogue:
    """The ``ja*.toml`` files: page texts, service sentences and the phrases inside them;
    ``clashes`` names each text two files translate differently (the first file wins)."""

    messages: Mapping[str, str]
    service: tuple[ServiceSentence, ...]
    phrases: Mapping[str, str]
    clashes: tuple[str, ...] = ()


def _strings(table: Any, where: str) -> dict[str, str]:
    if not isinstance(table, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in table.items()
    ):
        raise TypeError(f"{where} maps texts to texts")
    return cast(dict[str, str], table)


def _merge(into: dict[str, str], table: dict[str, str], where: str, clashes: list[str]) -> None:
    for key, value in table.items():
        if into.setdefault(key, value) != value:
            clashes.append(f"{where}: {key!r}")


def catalogue_files(directory: Path = CATALOGUE_DIR) -> list[Path]:
    """``ja.toml`` first, then the ``ja_*.toml`` files by name."""
    return sorted(directory.glob("ja*.toml"), key=lambda p: (p.name != "ja.toml", p.name))


def load_catalogue(paths: list[Path] | None = None) -> Catalogue:
    """Read and merge the Japanese catalogue files."""
    messages: dict[str, str] = {}
    phrases: dict[str, str] = {}
    service: list[ServiceSentence] = []
    clashes: list[str] = []
    for path in catalogue_files() if paths is None else paths:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        for name, into in (("messages", messages), ("phrases", phrases)):
            table = _strings(data.get(name, {}), f"{path.name} [{name}]")
            _merge(into, table, path.name, clashes)
        service.extend(
            ServiceSentence(re.compile(entry["match"]), entry["ja"], entry["example"])
            for entry in data.get("service", [])
        )
    return Catalogue(messages, tuple(service), phrases, tuple(clashes))


CATALOGUE: Final = load_catalogue()


# ------------------------------------------------------------------------ translating


def catalogue_key(text: str, context: str = "") -> str:
    """The catalogue's key of ``text``: the text itself, or ``context|text`` where one
    English word needs two Japanese ones (a gym's "No-shows" and a clinic's)."""
    return f"{context}|{text}" if context else text


def _lookup(lang: Lang, text: str, context: str) -> str:
    if lang != "ja":
        return text
    return CATALOGUE.messages.get(catalogue_key(text, context), text)


def gettext(lang: Lang, text: str, /, *, context: str = "", **params: object) -> str:
    """``text`` in ``lang`` with its ``{fields}`` filled in."""
    text = _lookup(lang, text, context)
    return text.format(**params) if params else text


def markup_gettext(lang: Lang, text: str, /, *, context: str = "", **params: object) -> Markup:
    """:func:`gettext` for templates: the text is markup, the values are escaped."""
    text = _lookup(lang, text, context)
    return Markup(text).format(**params) if params else Markup(text)  # noqa: S704 - catalogue text is ours


def enum_text(lang: Lang, value: str) -> str:
    """An enum value as a page shows it (``pending`` → ``承認待ち``)."""
    return gettext(lang, value) if value in SHOWN_VALUES else value


_SPAN = re.compile(r"(\d{2}:\d{2})\u2013(\d{2}:\d{2}) on (\d{4}-\d{2}-\d{2})")
_TWO_DAYS = re.compile(r"(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2})\u2013(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2})")
_DAY_TIME = re.compile(r"(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2})")
_DAY = re.compile(r"\b(\d{4}-\d{2}-\d{2})\b")
_DURATION = re.compile(r"\b(?:(\d+) hours?(?: (\d+) minutes?)?|(\d+) minutes?)\b")
_CLOCK_RANGE = re.compile(r"(\d{2}:\d{2})\u2013(\d{2}:\d{2})")


def _day_ja(iso: str) -> str:
    try:
        return format_date_ja(date.fromisoformat(iso))
    except ValueError:  # a wrong date the person typed, quoted back: keep it as typed
        return iso


def _duration_ja(m: re.Match[str]) -> str:
    hours, minutes, only_minutes = m.groups()
    if only_minutes is not None:
        return f"{only_minutes}分"
    return f"{hours}時間" + (f"{minutes}分" if minutes else "")


def _times_ja(text: str) -> str:
    """English dates, spans and durations inside a service's value, in Japanese."""
    text = _SPAN.sub(lambda m: f"{_day_ja(m[3])} {m[1]}{WAVE_DASH}{m[2]}", text)
    text = _TWO_DAYS.sub(lambda m: f"{_day_ja(m[1])} {m[2]}{WAVE_DASH}{_day_ja(m[3])} {m[4]}", text)
    text = _DAY_TIME.sub(lambda m: f"{_day_ja(m[1])} {m[2]}", text)
    text = _DAY.sub(lambda m: _day_ja(m[1]), text)
    text = _CLOCK_RANGE.sub(lambda m: f"{m[1]}{WAVE_DASH}{m[2]}", text)
    return _DURATION.sub(_duration_ja, text)


def _value_ja(value: str) -> str:
    """A part of a service's sentence: a known phrase, a sentence of its own, or a value
    whose dates and durations are rewritten (a name stays as it is)."""
    if value in CATALOGUE.phrases:
        return CATALOGUE.phrases[value]
    whole = _sentence_ja(value)
    return whole if whole is not None else _times_ja(value)


def _sentence_ja(text: str) -> str | None:
    for sentence in CATALOGUE.service:
        m = sentence.pattern.fullmatch(text)
        if m is not None:
            values = {k: "" if v is None else _value_ja(v) for k, v in m.groupdict().items()}
            return sentence.ja.format(**values)
    return None


def service_text(lang: Lang, text: str) -> str:
    """A service's English sentence in ``lang``: Japanese when the catalogue knows it (a
    page's own message marked with :func:`N_`, or a ``[[service]]`` pattern), else as it
    is."""
    if lang != "ja" or not text:
        return text
    if text in CATALOGUE.messages:
        return CATALOGUE.messages[text]
    try:
        found = _sentence_ja(text)
    except (KeyError, IndexError, ValueError):  # a broken entry must not break the page
        return text
    return text if found is None else found


# ------------------------------------------------------------------- dates and numbers


def when(lang: Lang, ts: int | float, zone: ZoneInfo) -> str:
    """Epoch seconds as a local date and time: ``2027-01-15 09:00`` or
    ``2027年1月15日(金) 09:00``."""
    return format_local_ja(ts, zone) if lang == "ja" else format_local(ts, zone)


def span(lang: Lang, start: int | float, end: int | float, zone: ZoneInfo) -> str:
    """A stretch of local time: ``2027-01-15 10:00 \u2013 2027-01-15 11:00`` (as the staff
    and status pages always wrote it) or ``2027年1月15日(金) 10:00〜11:00``."""
    if lang == "ja":
        return format_span_ja(start, end, zone)
    return f"{format_local(start, zone)} {EN_DASH} {format_local(end, zone)}"


def day_text(lang: Lang, day: date | str) -> str:
    """A local day: ``2027-01-15`` or ``2027年1月15日(金)``."""
    if isinstance(day, str):
        try:
            return day_text(lang, date.fromisoformat(day))
        except ValueError:
            return day
    return format_date_ja(day) if lang == "ja" else day.isoformat()


def weekday_name(lang: Lang, weekday: int) -> str:
    """``Monday`` or ``月曜日`` (0 is Monday)."""
    return f"{JA_WEEKDAYS[weekday]}曜日" if lang == "ja" else WEEKDAYS[weekday]


def duration(lang: Lang, minutes: int) -> str:
    """``1 hour 30 minutes`` or ``1時間30分``."""
    if lang != "ja":
        return format_minutes(minutes)
    h, m = divmod(minutes, 60)
    return (f"{h}時間" if h else "") + (f"{m}分" if m or not h else "")


# ------------------------------------------------------------------ choosing the language


def from_accept_language(header: str | None) -> Lang | None:
    """The one of ja and en an ``Accept-Language`` header ranks higher (by ``q``, then by
    order), or None when it names neither."""
    best: tuple[float, int, Lang] | None = None
    for index, part in enumerate((header or "").split(",")):
        tag, _, params = part.partition(";")
        primary = tag.strip().lower().partition("-")[0]
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        if primary not in LANGS or q <= 0:
            continue
        candidate = (q, -index, primary)
        if best is None or candidate[:2] > best[:2]:
            best = candidate
    return None if best is None else best[2]


def choose_lang(cookie: str | None, accept_language: str | None) -> Lang:
    """The cookie's language, else the browser's, else Japanese (see the module's
    docstring for why)."""
    if cookie in LANGS:
        return cookie
    return from_accept_language(accept_language) or DEFAULT_LANG


def request_lang(request: Request) -> Lang:
    """The language of the pages ``request`` gets."""
    return choose_lang(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))


def tr(request: Request, text: str, /, *, context: str = "", **params: object) -> str:
    """:func:`gettext` in the language of ``request`` (for flash and error messages)."""
    return gettext(request_lang(request), text, context=context, **params)


# ------------------------------------------------------------------------- templates


def _lang_of(ctx: Context) -> Lang:
    lang = ctx.get("lang")
    return cast(Lang, lang) if lang in LANGS else DEFAULT_LANG


def _zone_of(ctx: Context) -> ZoneInfo:
    zone = ctx.get("zone")
    return zone if isinstance(zone, ZoneInfo) else ZoneInfo(str(ctx.get("timezone")))


def install(env: Environment) -> None:
    """Give ``env``'s templates ``_`` and the filters ``enum_text``, ``service_text``,
    ``when``, ``span`` and ``day``, all in the language of the context's ``lang``."""

    @pass_context
    def translate(ctx: Context, text: str, /, *, context: str = "", **params: object) -> Markup:
        return markup_gettext(_lang_of(ctx), text, context=context, **params)

    @pass_context
    def enum(ctx: Context, value: str) -> str:
        return enum_text(_lang_of(ctx), value)

    @pass_context
    def service(ctx: Context, text: str | None) -> str:
        return service_text(_lang_of(ctx), text or "")

    @pass_context
    def when_filter(ctx: Context, ts: int | float) -> str:
        return when(_lang_of(ctx), ts, _zone_of(ctx))

    @pass_context
    def span_filter(ctx: Context, start: int | float, end: int | float) -> str:
        return span(_lang_of(ctx), start, end, _zone_of(ctx))

    @pass_context
    def day_filter(ctx: Context, day: date | str) -> str:
        return day_text(_lang_of(ctx), day)

    env.globals["_"] = translate
    filters: dict[str, Callable[..., Any]] = {
        "enum_text": enum,
        "service_text": service,
        "when": when_filter,
        "span": span_filter,
        "day": day_filter,
    }
    env.filters.update(filters)
