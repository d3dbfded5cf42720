"""City operations' pages of the fleet: every site at a glance, a site with its gateways,
config twin, devices and commands, a device with its history charts, the alerts inbox,
the fleet audit log and the rollouts. Routes parse, call a fleet service
(:mod:`cloud.fleet`), render; the live parts are polled by the page and swapped in when
their content changed (as on the clinic's staff page).

    GET  /fleet                                   sites at a glance (?department=&status=)
    GET  /fleet/live                              its live part
    GET  /fleet/sites/{site}                      gateways, twin, devices, alerts, commands
    GET  /fleet/sites/{site}/live                 its live part
    POST /fleet/sites/{site}/commands             send a command to one of its gateways
    GET  /fleet/sites/{site}/devices/{device}     health, history charts (?days=), alerts
    GET  /fleet/alerts                            the inbox (?state=&site=&kind=&severity=)
    GET  /fleet/alerts/live                       its live part
    POST /fleet/alerts/{alert_id}/ack             acknowledge, back to where it was pressed
    GET  /fleet/audit                             the audit log (?q=&site=&action=&from=&to=)
    GET  /fleet/audit.csv                         the same search as CSV
    GET  /fleet/rollouts                          rollouts with their rings
    POST /fleet/rollouts/{rollout_id}/{move}      pause, resume, advance

Who sees and does what follows the JSON API (:mod:`cloud.api.fleet`): ops everything;
technicians read every site, acknowledge and send commands but for the emergency unlock
and firmware; a facility manager reads the sites of its departments only (another
department's site is a 404 and is in no list); clinic staff none of it. Rollouts are
for ops and technicians (ops move them), the audit log for ops.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ValidationError

from cloud.api.clinic import clinic_services
from cloud.api.deps import services
from cloud.api.fleet import fleet_services
from cloud.core.auth import AuthError
from cloud.core.models import Role
from cloud.core.spreadsheet import csv_document
from cloud.core.views import UserView
from cloud.dashboard.fleet_charts import LineChart, day_ticks, line_chart, sync_gaps
from cloud.dashboard.i18n import N_, Lang, gettext, request_lang, tr, when
from cloud.dashboard.routes import render, require, settings_of
from cloud.errors import CloudError, InvalidRequestError
from cloud.fleet.alerts import ALERT_STATES
from cloud.fleet.commands import CommandRequest, roles_for
from cloud.fleet.kinds import AlertKind, CommandState, Severity
from cloud.fleet.services import FleetServices
from cloud.fleet.views import (
    AlertView,
    CommandView,
    GatewayDetail,
    RolloutView,
    SampleView,
    SiteSummary,
    TwinView,
)
from protocol.clock import Clock
from protocol.messages import (
    CommandVerb,
    FirmwareUpdateResult,
    ForceSyncResult,
    LogsResult,
    RestartResult,
    RevokePinResult,
    UnlockResult,
)

router = APIRouter(include_in_schema=False)
FormStr = Annotated[str, Form()]

READERS = (Role.OPS, Role.TECHNICIAN, Role.MANAGER)
ACTORS = (Role.OPS, Role.TECHNICIAN)
ROLLOUT_READERS = (Role.OPS, Role.TECHNICIAN)
LIVE_VERSION_HEADER = "X-Live-Version"
REFRESH_MS = 4000
INBOX_LIMIT = 500
AUDIT_PAGE_LIMIT = 200
AUDIT_CSV_LIMIT = 10_000
COMMANDS_SHOWN = 10
CHART_DAYS = (1, 7, 30)
DAY_S = 86400

# what each state looks like on the pages (keys are the services' values)
SITE_STATUS: dict[str, str] = {
    "ok": N_("online"),
    "warning": N_("warning"),
    "critical": N_("critical"),
    "offline": N_("offline"),
    "unknown": N_("no gateway yet"),
}
# the sites page lists those in trouble first, a page at a time (a city has thousands)
STATUS_ORDER = {key: rank for rank, key in enumerate(("offline", "critical", "warning", "unknown"))}
SITES_PER_PAGE = 100
HEALTH: dict[str, str] = {
    "ok": N_("ok"),
    "warning": N_("warning"),
    "critical": N_("critical"),
    "offline": N_("offline"),
}
DEVICE_KINDS: dict[str, str] = {
    "lock": N_("lock"),
    "display": N_("display"),
    "reader": N_("card reader"),
    "gateway": N_("gateway"),
}
COMMAND_STATUS: dict[str, str] = {
    CommandState.PENDING: N_("pending"),
    CommandState.SENT: N_("sent, waiting for the reply"),
    CommandState.OK: N_("replied"),
    CommandState.ERROR: N_("replied with an error"),
    CommandState.EXPIRED: N_("expired, no reply"),
    CommandState.REJECTED: N_("refused by the agent"),
}
VERBS: dict[str, str] = {
    CommandVerb.FORCE_SYNC: N_("Force sync"),
    CommandVerb.RESTART: N_("Restart agent"),
    CommandVerb.LOGS: N_("Fetch logs"),
    CommandVerb.REVOKE_PIN: N_("Revoke PIN"),
    CommandVerb.UNLOCK: N_("Emergency unlock"),
    CommandVerb.FIRMWARE_UPDATE: N_("Firmware update"),
}
# the command forms of the site page, in this order; firmware goes by rollouts
FORM_VERBS = (
    CommandVerb.FORCE_SYNC,
    CommandVerb.LOGS,
    CommandVerb.RESTART,
    CommandVerb.REVOKE_PIN,
    CommandVerb.UNLOCK,
)
ALERT_KINDS: dict[str, str] = {
    AlertKind.GATEWAY_OFFLINE: N_("Gateway offline"),
    AlertKind.MISSED_SYNC: N_("Missed sync"),
    AlertKind.BATTERY_LOW: N_("Battery low"),
    AlertKind.BATTERY_CRITICAL: N_("Battery critical"),
    AlertKind.BATTERY_FORECAST: N_("Battery empty within 14 days"),
    AlertKind.LOCKOUT: N_("Keypad lockout"),
    AlertKind.DOOR_HELD_OPEN: N_("Door held open"),
    AlertKind.JAM: N_("Jam"),
    AlertKind.CLOCK_DRIFT: N_("Clock drift"),
    AlertKind.OUTBOX_BACKLOG: N_("Outbox backlog"),
    AlertKind.SEQ_BACKWARDS: N_("Event numbers went back"),
    AlertKind.KEYPAD_GUESSING: N_("PIN guessing at the keypad"),
    AlertKind.TAMPER: N_("Tampering: refused commands"),
}
SEVERITIES: dict[str, str] = {Severity.CRITICAL: N_("critical"), Severity.WARNING: N_("warning")}
INBOX_STATES: dict[str, str] = {
    "open": N_("Open"),
    "unacknowledged": N_("Unacknowledged"),
    "acknowledged": N_("Acknowledged"),
    "resolved": N_("Resolved"),
    "all": N_("All"),
}
ROLLOUT_STATES: dict[str, str] = {
    "running": N_("running"),
    "paused": N_("paused"),
    "halted": N_("halted"),
    "completed": N_("completed"),
}
RING_PHASES: dict[str, str] = {
    "sending": N_("sending"),
    "soaking": N_("soaking"),
    "passed": N_("passed its gate"),
}
ROLLOUT_MOVES: dict[str, str] = {
    "pause": N_("Rollout #{id} paused"),
    "resume": N_("Rollout #{id} resumed"),
    "advance": N_("Rollout #{id} moved to its next ring"),
}
FLASH_SENT = N_("{verb} sent to {gateway}; its status and reply show under Commands")
FLASH_ACK = N_("Alert #{id} acknowledged")


def _fleet(request: Request) -> FleetServices:
    return fleet_services(request)


def _now(request: Request) -> float:
    clock: Clock = request.app.state.clock
    return clock.now()


def ago(lang: Lang, seconds: float) -> str:
    """How long ago, to the minute: ``just now``, ``5 min ago``, ``3 h ago``, ``2 d ago``."""
    if seconds < 60:
        return gettext(lang, N_("just now"))
    if seconds < 3600:
        return gettext(lang, N_("{n} min ago"), n=int(seconds // 60))
    if seconds < 2 * DAY_S:
        return gettext(lang, N_("{n} h ago"), n=int(seconds // 3600))
    return gettext(lang, N_("{n} d ago"), n=int(seconds // DAY_S))


class _Times:
    """Epoch seconds as the pages write them, in the request's language and zone."""

    def __init__(self, request: Request) -> None:
        self.lang = request_lang(request)
        self.zone = settings_of(request).zone
        self.now = _now(request)

    def at(self, ts: float | None) -> str:
        return "" if ts is None else when(self.lang, ts, self.zone)

    def ago(self, ts: float | None) -> str:
        return "" if ts is None else ago(self.lang, max(self.now - ts, 0))

    def both(self, ts: float | None) -> dict[str, str] | None:
        return None if ts is None else {"at": self.at(ts), "ago": self.ago(ts)}


def _redirect(target: str, *, flash: str = "", error: str = "", anchor: str = "") -> Response:
    """Back to ``target`` (a path of ours) with a one-time message."""
    parts = urlsplit(target)
    path = parts.path if parts.path.startswith("/fleet") else "/fleet"
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("flash", "error")]
    query += [(k, v) for k, v in (("flash", flash), ("error", error)) if v]
    url = urlunsplit(("", "", path, urlencode(query), anchor))
    return RedirectResponse(url, status_code=303)


def _live(request: Request, name: str, context: dict[str, Any]) -> Response:
    """A live part, with its version (a digest of its content) in a header."""
    response = render(request, name, **context)
    response.headers[LIVE_VERSION_HEADER] = _digest(response.body)
    response.headers["Cache-Control"] = "no-store"
    return response


def _digest(body: bytes | memoryview) -> str:
    return hashlib.sha256(bytes(body)).hexdigest()[:16]


def _page(
    request: Request, name: str, live_name: str, live_url: str, context: dict[str, Any]
) -> HTMLResponse:
    """A page with a live part: the part's version is known from the start, so the first
    poll swaps nothing unless something changed."""
    version = _digest(render(request, live_name, **context).body)
    return render(
        request, name, version=version, live_url=live_url, refresh_ms=REFRESH_MS, **context
    )


def _query(**params: str) -> str:
    kept = {k: v for k, v in params.items() if v}
    return f"?{urlencode(kept)}" if kept else ""


# ----------------------------------------------------------------- links elsewhere


def _figures(
    request: Request, user: UserView, sites: Collection[str]
) -> dict[str, list[dict[str, str]]]:
    """The figure pages of the gym and clinic at each of ``sites``, for the roles that may
    open them (a facility's: managers and ops; a clinic's: ops, and clinic staff
    elsewhere)."""
    links: dict[str, list[dict[str, str]]] = {}
    if not sites:
        return links
    if user.role in (Role.MANAGER, Role.OPS):
        for f in services(request).facilities.facilities(sites):
            links.setdefault(f.site, []).append(
                {"kind": "gym", "name": f.name, "url": f"/manage/facilities/{f.id}/figures"}
            )
    if user.role is Role.OPS:
        for c in clinic_services(request).sites.all(sites):
            links.setdefault(c.site, []).append(
                {"kind": "clinic", "name": c.name, "url": f"/clinic/{quote(c.site)}/figures"}
            )
    return links


def _lock_pages(request: Request, user: UserView, site: str) -> frozenset[str]:
    """The locks of ``site`` whose own page (sync status, events) this user may open."""
    if user.role not in (Role.MANAGER, Role.OPS):
        return frozenset()
    return frozenset(
        lock.lock_id for f in services(request).facilities.facilities([site]) for lock in f.locks
    )


# ------------------------------------------------------------------ sites at a glance


def _site_row(s: SiteSummary, t: _Times, departments: Mapping[str, str]) -> dict[str, Any]:
    return {
        "summary": s,
        "status_label": SITE_STATUS.get(s.status, s.status),
        "department_name": departments.get(s.department or "", s.department or ""),
        "last_seen": t.both(s.last_seen),
    }


def _sites_context(
    request: Request, user: UserView, *, department: str, status: str, q: str, page: int
) -> dict[str, Any]:
    fleet = _fleet(request)
    t = _Times(request)
    everything = fleet.sites.overview(fleet.sites.scope(user))
    departments = {d.slug: d.name for d in fleet.sites.departments()}
    mine = sorted({s.department for s in everything if s.department})
    needle = q.strip().casefold()
    shown = sorted(
        (
            s
            for s in everything
            if (not department or s.department == department)
            and (not status or s.status == status)
            and (not needle or needle in s.site.casefold() or needle in s.name.casefold())
        ),
        key=lambda s: (STATUS_ORDER.get(s.status, len(STATUS_ORDER)), s.name, s.site),
    )
    pages = max(1, -(-len(shown) // SITES_PER_PAGE))
    page = min(max(page, 1), pages)
    first = (page - 1) * SITES_PER_PAGE
    on_page = shown[first : first + SITES_PER_PAGE]
    counts = {key: sum(1 for s in everything if s.status == key) for key in SITE_STATUS}
    kept = {"department": department, "status": status, "q": q.strip()}

    def page_url(number: int) -> str:
        return "/fleet" + _query(**kept, page=str(number) if number > 1 else "")

    return {
        "user": user,
        "rows": [_site_row(s, t, departments) for s in on_page],
        "total": len(everything),
        "matching": len(shown),
        "first": first + 1,
        "last": first + len(on_page),
        "page": page,
        "pages": pages,
        "previous_url": page_url(page - 1) if page > 1 else "",
        "next_url": page_url(page + 1) if page < pages else "",
        "counts": counts,
        "statuses": SITE_STATUS,
        "departments": [(slug, departments.get(slug, slug)) for slug in mine],
        "filter": {**kept, "page": page},
        "figures": _figures(request, user, [s.site for s in on_page]),
    }


@router.get("/fleet")
def sites_page(
    request: Request, department: str = "", status: str = "", q: str = "", page: int = 1
) -> HTMLResponse:
    """Every site the user may see, those in trouble first: status, gateways, devices by
    health, open alerts, last seen; searched, filtered by department and status, a page
    of :data:`SITES_PER_PAGE` at a time; it updates itself."""
    user = require(request, *READERS)
    context = _sites_context(request, user, department=department, status=status, q=q, page=page)
    live_url = "/fleet/live" + _query(
        department=department, status=status, q=q.strip(), page=str(context["page"])
    )
    return _page(request, "fleet_sites.html", "fleet_sites_live.html", live_url, context)


@router.get("/fleet/live")
def sites_live(
    request: Request, department: str = "", status: str = "", q: str = "", page: int = 1
) -> Response:
    """The live part of the sites page."""
    user = require(request, *READERS)
    return _live(
        request,
        "fleet_sites_live.html",
        _sites_context(request, user, department=department, status=status, q=q, page=page),
    )


# ------------------------------------------------------------------------ a site


def _flat(doc: Mapping[str, Any] | None, prefix: str = "") -> list[tuple[str, str]]:
    """A config document as ``section.field = value`` lines, unset fields left out."""
    out: list[tuple[str, str]] = []
    for key, value in sorted((doc or {}).items()):
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out += _flat(value, f"{name}.")
        elif value is not None:
            out.append((name, json.dumps(value, ensure_ascii=False)))
    return out


def _twin(twin: TwinView | None, t: _Times) -> dict[str, Any] | None:
    if twin is None:
        return None
    return {
        "view": twin,
        "desired": _flat(twin.desired),
        "reported": _flat(twin.reported),
        "desired_at": t.both(twin.desired_at),
        "reported_at": t.both(twin.reported_at),
        "diverged": t.both(twin.diverged_since),
    }


def _result(model: type[BaseModel], data: dict[str, Any] | None) -> Any:
    if data is None:
        return None
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


def _reply(c: CommandView, t: _Times) -> dict[str, Any]:
    """What a command's reply says, by verb (None parts: no such reply (yet))."""
    shown: dict[str, Any] = {"raw": None}
    if c.reply is None:
        return shown
    if c.verb == CommandVerb.FORCE_SYNC:
        shown["sync"] = _result(ForceSyncResult, c.reply)
    elif c.verb == CommandVerb.LOGS:
        shown["logs"] = _result(LogsResult, c.reply)
    elif c.verb == CommandVerb.REVOKE_PIN:
        shown["revoke"] = _result(RevokePinResult, c.reply)
    elif c.verb == CommandVerb.UNLOCK:
        unlock = _result(UnlockResult, c.reply)
        shown["unlock"] = unlock
        shown["unlocked_at"] = None if unlock is None else t.at(unlock.unlocked_at)
    elif c.verb == CommandVerb.RESTART:
        shown["restart"] = _result(RestartResult, c.reply)
    elif c.verb == CommandVerb.FIRMWARE_UPDATE:
        shown["firmware"] = _result(FirmwareUpdateResult, c.reply)
    if len(shown) == 1 or all(v is None for k, v in shown.items() if k != "raw"):
        shown["raw"] = json.dumps(c.reply, ensure_ascii=False, sort_keys=True)
    return shown


def _command(c: CommandView, t: _Times) -> dict[str, Any]:
    return {
        "view": c,
        "verb_label": VERBS.get(c.verb, c.verb),
        "status_label": COMMAND_STATUS.get(c.status, c.status),
        "created": t.both(c.created_at),
        "sent": t.both(c.sent_at),
        "replied": t.both(c.replied_at),
        "expires": t.at(c.expires_at),
        "reply": _reply(c, t),
        "args": {k: v for k, v in c.data.items() if k not in ("requested_by", "reason")},
    }


def _alert(a: AlertView, t: _Times) -> dict[str, Any]:
    return {
        "view": a,
        "kind_label": ALERT_KINDS.get(a.kind, a.kind),
        "severity_label": SEVERITIES.get(a.severity, a.severity),
        "subject_label": DEVICE_KINDS.get(a.subject_kind, a.subject_kind),
        "opened": t.both(a.opened_at),
        "acknowledged": t.both(a.acknowledged_at),
        "resolved": t.both(a.resolved_at),
    }


def _gateway(g: GatewayDetail, t: _Times) -> dict[str, Any]:
    gw = g.gateway
    return {
        "view": gw,
        "since": t.both(gw.available_since),
        "last_seen": t.both(gw.last_seen),
        "telemetry": t.both(gw.telemetry_at),
        "twin": _twin(g.twin, t),
        "commands": [_command(c, t) for c in g.recent_commands[:COMMANDS_SHOWN]],
        "locks": [d.device_id for d in g.devices if d.kind == "lock"],
    }


def _site_context(request: Request, user: UserView, site: str) -> dict[str, Any]:
    fleet = _fleet(request)
    t = _Times(request)
    scope = fleet.sites.scope(user)
    detail = fleet.sites.site(site, scope)  # 404 outside the user's sites
    gateways = [fleet.sites.gateway(site, g.gateway, scope, days=1) for g in detail.gateways]
    departments = {d.slug: d.name for d in fleet.sites.departments()}
    lock_pages = _lock_pages(request, user, site)
    devices = [
        {
            "view": d,
            "kind_label": DEVICE_KINDS.get(d.kind, d.kind),
            "health_label": HEALTH.get(d.health, d.health),
            "last_sync": t.both(d.last_sync_at),
            "lock_page": d.kind == "lock" and d.device_id in lock_pages,
        }
        for d in detail.devices
    ]
    return {
        "user": user,
        "site": site,
        "row": _site_row(detail.summary, t, departments),
        "gateways": [_gateway(g, t) for g in gateways],
        "devices": devices,
        "alerts": [_alert(a, t) for a in detail.open_alerts],
        "can_ack": user.role in ACTORS,
        "verbs": [(v.value, VERBS[v]) for v in FORM_VERBS if user.role in roles_for(v)],
        "figures": _figures(request, user, [site]).get(site, []),
    }


@router.get("/fleet/sites/{site}")
def site_page(request: Request, site: str, flash: str = "", error: str = "") -> HTMLResponse:
    """A site: its gateways (availability, outbox, config twin), devices, open alerts and
    recent commands with their replies, and the command buttons the user's role allows."""
    user = require(request, *READERS)
    context = _site_context(request, user, site)
    live_url = f"/fleet/sites/{quote(site)}/live"
    return _page(
        request,
        "fleet_site.html",
        "fleet_site_live.html",
        live_url,
        {**context, "flash": flash, "error": error},
    )


@router.get("/fleet/sites/{site}/live")
def site_live(request: Request, site: str) -> Response:
    """The live part of the site page."""
    user = require(request, *READERS)
    return _live(request, "fleet_site_live.html", _site_context(request, user, site))


def _command_data(verb: str, lock_id: str, grant_id: str, lines: str) -> dict[str, Any]:
    """The verb's arguments from the form's fields (the service checks them)."""
    data: dict[str, Any] = {}
    if lock_id and verb in (CommandVerb.FORCE_SYNC, CommandVerb.UNLOCK, CommandVerb.REVOKE_PIN):
        data["lock_id"] = lock_id
    if verb == CommandVerb.REVOKE_PIN:
        data["grant_id"] = grant_id.strip()
    if verb == CommandVerb.LOGS and lines.strip():
        try:
            data["lines"] = int(lines)
        except ValueError:
            raise InvalidRequestError("the number of log lines is a whole number") from None
    return data


@router.post("/fleet/sites/{site}/commands")
def send_command(
    request: Request,
    site: str,
    *,
    gateway: FormStr,
    verb: FormStr,
    lock_id: FormStr = "",
    grant_id: FormStr = "",
    reason: FormStr = "",
    lines: FormStr = "",
) -> Response:
    """Send one command to a gateway of the site; back to the site page, where its
    status (pending, sent, replied or expired) and reply show as they come. A verb the
    role may not send is refused (403), as by the API."""
    user = require(request, *ACTORS)
    fleet = _fleet(request)
    back = f"/fleet/sites/{quote(site)}"
    fleet.sites.site(site, fleet.sites.scope(user))
    try:
        view = fleet.commands.create(
            CommandRequest(
                site=site,
                gateway=gateway,
                verb=verb,
                data=_command_data(verb, lock_id, grant_id, lines),
                reason=reason or None,
            ),
            user,
        )
    except AuthError:
        raise
    except CloudError as exc:
        return _redirect(back, error=str(exc), anchor="commands")
    flash = tr(
        request, FLASH_SENT, verb=tr(request, VERBS.get(view.verb, view.verb)), gateway=gateway
    )
    return _redirect(back, flash=flash, anchor=f"command-{view.transaction}")


# ---------------------------------------------------------------------- a device


def _chart_title(t: _Times, unit: str, digits: int) -> Any:
    def title(at: float, value: float) -> str:
        return f"{t.at(at)}: {value:.{digits}f}{unit}"

    return title


def _charts(
    history: Sequence[SampleView], last_sync: int | None, t: _Times, days: int
) -> dict[str, LineChart]:
    end = t.now
    start = end - days * DAY_S
    lang = t.lang

    def label(moment: datetime) -> str:
        if days < 2:
            return moment.strftime("%H:%M")
        return f"{moment.month}/{moment.day}" if lang == "ja" else moment.strftime("%m-%d")

    ticks = day_ticks(start, end, t.zone, label)
    battery = [(s.at, float(s.battery_pct)) for s in history if s.battery_pct is not None]
    offsets = [(s.at, s.clock_offset_s) for s in history if s.clock_offset_s is not None]
    syncs = [s.last_sync_at for s in history if s.last_sync_at is not None]
    if last_sync is not None:
        syncs.append(last_sync)
    return {
        "battery": line_chart(
            battery,
            start=start,
            end=end,
            low=0,
            high=100,
            unit=" %",
            x_ticks=ticks,
            guides=[(20, "20 %"), (10, "10 %")],
            title=_chart_title(t, " %", 0),
        ),
        "clock": line_chart(
            offsets,
            start=start,
            end=end,
            low=-30,
            high=30,
            unit=" s",
            x_ticks=ticks,
            guides=[(30, "+30 s"), (-30, "-30 s")],
            title=_chart_title(t, " s", 1),
        ),
        "sync": line_chart(
            sync_gaps(syncs),
            start=start,
            end=end,
            low=0,
            high=12,
            unit=" h",
            x_ticks=ticks,
            guides=[(12, "12 h")],
            title=_chart_title(t, " h", 1),
        ),
    }


@router.get("/fleet/sites/{site}/devices/{device_id}")
def device_page(request: Request, site: str, device_id: str, days: int = 7) -> HTMLResponse:
    """A device: model, firmware, health, battery forecast, its history as charts
    (battery, clock offset, time between syncs), its firmware twin and open alerts; a
    lock links to its own page for its events."""
    user = require(request, *READERS)
    days = days if days in CHART_DAYS else 7
    fleet = _fleet(request)
    detail = fleet.sites.device(site, device_id, fleet.sites.scope(user), days=days)
    t = _Times(request)
    d = detail.device
    return render(
        request,
        "fleet_device.html",
        user=user,
        site=site,
        device=d,
        kind_label=DEVICE_KINDS.get(d.kind, d.kind),
        health_label=HEALTH.get(d.health, d.health),
        times={
            "last_sync": t.both(d.last_sync_at),
            "next_sync": t.both(d.next_sync_at),
            "sync_due": t.at(d.sync_due_at),
            "telemetry": t.both(d.telemetry_at),
        },
        twin=_twin(detail.twin, t),
        alerts=[_alert(a, t) for a in detail.open_alerts],
        charts=_charts(detail.history, d.last_sync_at, t, days),
        samples=len(detail.history),
        days=days,
        chart_days=CHART_DAYS,
        lock_page=d.kind == "lock" and d.device_id in _lock_pages(request, user, site),
        can_ack=user.role in ACTORS,
    )


# --------------------------------------------------------------------- the inbox


def _inbox_context(
    request: Request, user: UserView, *, state: str, site: str, kind: str, severity: str
) -> dict[str, Any]:
    fleet = _fleet(request)
    t = _Times(request)
    if state not in INBOX_STATES:
        state = "open"
    wanted = "open" if state == "acknowledged" else state
    assert wanted in ALERT_STATES
    scope = fleet.sites.scope(user)
    alerts = fleet.alerts.alerts(
        scope,
        state=wanted,
        site=site or None,
        kind=kind if kind in ALERT_KINDS else None,
        severity=severity if severity in SEVERITIES else None,
        limit=INBOX_LIMIT,
    )
    if state == "acknowledged":
        alerts = [a for a in alerts if a.acknowledged_at is not None]
    here = "/fleet/alerts" + _query(state=state, site=site, kind=kind, severity=severity)
    return {
        "user": user,
        "alerts": [_alert(a, t) for a in alerts],
        "limited": len(alerts) >= INBOX_LIMIT,
        "limit": INBOX_LIMIT,
        "filter": {"state": state, "site": site, "kind": kind, "severity": severity},
        "states": INBOX_STATES,
        "kinds": ALERT_KINDS,
        "severities": SEVERITIES,
        "sites": fleet.sites.slugs(scope),
        "can_ack": user.role in ACTORS,
        "here": here,
    }


@router.get("/fleet/alerts")
def alerts_page(
    request: Request,
    *,
    state: str = "open",
    site: str = "",
    kind: str = "",
    severity: str = "",
    flash: str = "",
    error: str = "",
) -> HTMLResponse:
    """The alerts inbox, newest first: open, unacknowledged, acknowledged, resolved or
    all; by site, kind and severity; acknowledge (ops, technicians); it updates itself."""
    user = require(request, *READERS)
    context = _inbox_context(request, user, state=state, site=site, kind=kind, severity=severity)
    live_url = "/fleet/alerts/live" + _query(
        state=context["filter"]["state"], site=site, kind=kind, severity=severity
    )
    return _page(
        request,
        "fleet_alerts.html",
        "fleet_alerts_live.html",
        live_url,
        {**context, "flash": flash, "error": error},
    )


@router.get("/fleet/alerts/live")
def alerts_live(
    request: Request, *, state: str = "open", site: str = "", kind: str = "", severity: str = ""
) -> Response:
    """The live part of the inbox."""
    user = require(request, *READERS)
    context = _inbox_context(request, user, state=state, site=site, kind=kind, severity=severity)
    return _live(request, "fleet_alerts_live.html", context)


@router.post("/fleet/alerts/{alert_id}/ack")
def acknowledge(request: Request, alert_id: int, back: FormStr = "/fleet/alerts") -> Response:
    """Someone is on it: remember who and when; back to the inbox (or site) it came from."""
    user = require(request, *ACTORS)
    fleet = _fleet(request)
    try:
        fleet.alerts.acknowledge(alert_id, user, fleet.sites.scope(user))
    except AuthError:
        raise
    except CloudError as exc:
        return _redirect(back, error=str(exc))
    return _redirect(back, flash=tr(request, FLASH_ACK, id=alert_id), anchor=f"alert-{alert_id}")


# --------------------------------------------------------------------- the audit log


def _day(value: str, what: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidRequestError(f"{what} {value[:20]!r} is not a date; use YYYY-MM-DD") from None


def _audit_rows(
    request: Request, *, q: str, site: str, action: str, first: str, last: str, limit: int
) -> list[dict[str, Any]]:
    zone = settings_of(request).zone
    since_day, until_day = _day(first, "from"), _day(last, "to")
    since = None if since_day is None else datetime.combine(since_day, time(), zone).timestamp()
    until = (
        None
        if until_day is None
        else datetime.combine(until_day + timedelta(days=1), time(), zone).timestamp()
    )
    entries = _fleet(request).audit.search(
        None,
        text=q or None,
        site=site or None,
        action=action or None,
        since=None if since is None else int(since),
        until=None if until is None else int(until),
        limit=limit,
    )
    return [
        {
            "view": e,
            "time": datetime.fromtimestamp(e.at, zone).strftime("%Y-%m-%d %H:%M:%S"),
            "detail": json.dumps(e.detail, ensure_ascii=False, sort_keys=True),
        }
        for e in entries
    ]


def _families(actions: Iterable[str]) -> list[str]:
    """Each action and the family before its dot (``command`` for ``command.unlock``)."""
    found = set(actions)
    return sorted(found | {a.split(".", 1)[0] for a in found if "." in a})


@router.get("/fleet/audit")
def audit_page(
    request: Request,
    *,
    q: str = "",
    site: str = "",
    action: str = "",
    from_day: Annotated[str, Query(alias="from")] = "",
    to_day: Annotated[str, Query(alias="to")] = "",
) -> HTMLResponse:
    """Who did what to the fleet, newest first: search by text (actor, subject, a
    reason…), site, action and days; the same search as CSV (ops)."""
    user = require(request, Role.OPS)
    fleet = _fleet(request)
    params = {"q": q, "site": site, "action": action, "from": from_day, "to": to_day}
    error = ""
    try:
        rows = _audit_rows(
            request,
            q=q,
            site=site,
            action=action,
            first=from_day,
            last=to_day,
            limit=AUDIT_PAGE_LIMIT,
        )
    except InvalidRequestError as exc:
        rows, error = [], str(exc)
    return render(
        request,
        "fleet_audit.html",
        user=user,
        rows=rows,
        limited=len(rows) >= AUDIT_PAGE_LIMIT,
        limit=AUDIT_PAGE_LIMIT,
        filter=params,
        actions=_families(fleet.audit.actions()),
        sites=fleet.sites.slugs(None),
        csv_url="/fleet/audit.csv" + _query(**params),
        error=error,
    )


@router.get("/fleet/audit.csv")
def audit_csv(
    request: Request,
    *,
    q: str = "",
    site: str = "",
    action: str = "",
    from_day: Annotated[str, Query(alias="from")] = "",
    to_day: Annotated[str, Query(alias="to")] = "",
) -> Response:
    """The audit search as CSV (newest first, at most 10,000 rows; times in the
    facilities' zone, and as epoch seconds)."""
    require(request, Role.OPS)
    rows = _audit_rows(
        request, q=q, site=site, action=action, first=from_day, last=to_day, limit=AUDIT_CSV_LIMIT
    )
    columns = ("id", "time", "at", "actor", "action", "site", "subject", "detail")
    cells = []
    for r in rows:
        e = r["view"]
        cells.append([e.id, r["time"], e.at, e.actor, e.action, e.site, e.subject, r["detail"]])
    return Response(
        csv_document(columns, cells),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="fleet-audit.csv"'},
    )


# ----------------------------------------------------------------------- rollouts


def _rollout(r: RolloutView, t: _Times) -> dict[str, Any]:
    rings = []
    for ring in r.rings:
        total = sum(ring.counts.values())
        done = ring.counts.get("succeeded", 0)
        rings.append(
            {
                "view": ring,
                "total": total,
                "done": done,
                "failed": ring.counts.get("failed", 0),
                "percent": 0 if total == 0 else round(100 * done / total),
                "current": ring.ring == r.current_ring,
            }
        )
    return {
        "view": r,
        "state_label": ROLLOUT_STATES.get(r.state, r.state),
        "phase_label": RING_PHASES.get(r.phase, r.phase),
        "created": t.both(r.created_at),
        "halted": t.both(r.halted_at),
        "rings": rings,
        "can_pause": r.state == "running",
        "can_resume": r.state == "paused",
        "can_advance": r.state == "running" and r.phase == "passed",
    }


@router.get("/fleet/rollouts")
def rollouts_page(request: Request, flash: str = "", error: str = "") -> HTMLResponse:
    """Rollouts, newest first, with each ring's progress and state; pause, resume and
    advance for ops. Creating one is the API's (``POST /api/fleet/rollouts``)."""
    user = require(request, *ROLLOUT_READERS)
    t = _Times(request)
    rollouts = [_rollout(r, t) for r in _fleet(request).rollouts.rollouts()]
    return render(
        request,
        "fleet_rollouts.html",
        user=user,
        rollouts=rollouts,
        can_move=user.role is Role.OPS,
        flash=flash,
        error=error,
    )


@router.post("/fleet/rollouts/{rollout_id}/{move}")
def move_rollout(request: Request, rollout_id: int, move: str) -> Response:
    """Pause, resume or advance a rollout (ops); back to the list with what happened."""
    user = require(request, Role.OPS)
    rollouts = _fleet(request).rollouts
    actions = {"pause": rollouts.pause, "resume": rollouts.resume, "advance": rollouts.advance}
    if move not in actions:
        return _redirect("/fleet/rollouts", error=f"{move!r} is not pause, resume or advance")
    try:
        actions[move](rollout_id, user)
    except AuthError:
        raise
    except CloudError as exc:
        return _redirect("/fleet/rollouts", error=str(exc))
    flash = tr(request, ROLLOUT_MOVES[move], id=rollout_id)
    return _redirect("/fleet/rollouts", flash=flash, anchor=f"rollout-{rollout_id}")
