"""The agent's pages on the clinic network: a kiosk screen per card reader, the staff page,
and the small JSON API behind them. Server-rendered, no build step and no outside assets,
so they work with the internet down.

    who    route
    open   GET  /                          links to every page
    open   GET  /kiosk/{kiosk}             the kiosk's screen (reloads itself)
    open   GET  /staff/login?next=         the staff login form: name and PIN (Japanese,
                                           then English)
    open   POST /staff/login               a name and its PIN: the session cookie, then
                                           ``next``
    staff  POST /staff/logout              ends the session, back to the PIN form
    staff  GET  /staff?department=&room=   the staff page: the queue, who runs it, buttons
    staff  POST /staff                     a button of the staff page (form), then back
    open   GET  /api/status                who runs the queues, link, events waiting
    open   GET  /api/kiosks/{kiosk}        the kiosk's screen as JSON
    open   GET  /api/departments           departments and rooms
    staff  GET  /api/queues/{department}   the queue in call order (urgent, appointments)
    staff  POST /api/actions               a staff action (JSON :class:`StaffRequest`)

**Staff** routes need a staff member's name and PIN (:mod:`edge.clinic.staff_access`). A
page without a session redirects (303) to ``/staff/login?next=…``; the API answers 401
JSON ``{"detail": …}`` unless the request carries the session cookie or
``Authorization: Basic <name:PIN>`` (for scripts, ``curl -u tanaka:PIN``; a wrong PIN
counts like one typed in the form). While the client's address waits after wrong PINs:
429 with ``Retry-After``; other addresses are not held up. With no staff set every staff
route answers 403 with how to set a PIN, unless ``[clinic] staff_pin_required = false``
opens them to anyone. Each staff action is logged with the name of who made it.

**TLS**: with ``[clinic] tls_cert`` and ``tls_key`` (a certificate from the city's CA for
the Pi's address) the pages are https only: a plain-http request on the port gets no
page, so no login form is ever shown, nor a PIN posted, in clear; the session cookie is
then also ``Secure``. Without them the pages are plain http and the agent warns at start.
The session cookie is signed, ``HttpOnly`` and ``SameSite=Strict``.

**Cross-site requests**: SameSite=Strict keeps the cookie off requests from other sites'
pages, and every staff POST (and a login) is also refused (403) when its ``Origin``
header, or without one its ``Referer``, names a host other than the request's ``Host``.
Browsers send ``Origin`` with every cross-site POST; a script that sends neither passes
this check and still needs the cookie or the PIN.

Routes are thin: they parse, call the desk, render. Served in-process by uvicorn
(:class:`ClinicPages`), which leaves the agent's signal handlers alone.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import math
import re
import socket
import ssl
from collections.abc import Generator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from edge.backoff import Backoff
from edge.clinic.desk import ClinicDesk, QueueView, StaffRequest
from edge.clinic.kiosk_screens import (
    ALREADY,
    CHECKING,
    MISREAD,
    NO_APPOINTMENT,
    NO_DAY,
    READY,
    SHORTLY,
)
from edge.clinic.outcome import ActionResult, Running
from edge.clinic.staff_access import (
    FIRST_WAIT_S,
    MAX_WRONG,
    SHARED_NAME,
    PinCheck,
    StaffAccessError,
    StaffGate,
    load_session_secret,
    staff_name,
)
from edge.config import ClinicConfig
from edge.errors import EdgeError, OutboxError, StoreError
from protocol.clock import Clock
from protocol.messages import ClinicAction
from protocol.queue_rules import TOKYO, QueueTicket

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
STOP_GRACE_S = 5.0
SESSION_COOKIE = "denen_clinic_staff"
SET_PIN_COMMAND = "sudo denen-agent clinic set-staff-pin NAME --config /etc/denen/site.toml"
NO_PIN = (
    "The staff side is closed: no staff PIN is set on this agent. A technician sets one "
    "per staff member "
    f"on the agent with `{SET_PIN_COMMAND}` and restarts it (`sudo systemctl restart "
    "denen-agent`)."
)
_BASIC = {"WWW-Authenticate": 'Basic realm="denen clinic staff", charset="UTF-8"'}


# What the kiosk says, in Japanese first (patients at a Yonago clinic read Japanese); the
# English stays underneath. A message without an entry (e.g. a reason the cloud sent) is
# shown in English only.
KIOSK_JA: dict[str, str] = {
    MISREAD: "カードを読み取れませんでした。もう一度かざしてください。",
    NO_DAY: "ただいま受付できません。受付窓口へお越しください。",
    NO_APPOINTMENT: "本日の予約がありません。受付窓口へお越しください。",
    SHORTLY: "受付しました。番号はまもなくここに表示されます。",
    READY: "診察券をかざしてください。",
    CHECKING: "受付中です…",
    ALREADY: "受付済みです。",
}
_APPOINTMENT_RE = re.compile(
    r"Your appointment is at (\d\d:\d\d)\. Please check in from (\d\d:\d\d)\."
)


def kiosk_japanese(message: str) -> str:
    """The Japanese line for a kiosk message; "" when there is none."""
    if message in KIOSK_JA:
        return KIOSK_JA[message]
    early = _APPOINTMENT_RE.fullmatch(message)
    if early is not None:
        return f"ご予約は {early[1]} です。{early[2]} から受付できます。"
    return ""


def _minutes_ja(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes = round(seconds / 60)
    return "まもなく" if minutes < 1 else f"約{minutes}分"


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes = round(seconds / 60)
    return "now" if minutes < 1 else f"about {minutes} min"


def _clock(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, TOKYO).strftime("%H:%M")


def _status_code(result: ActionResult) -> int:
    if result.pending:
        return 202
    return 200 if result.ok else 409


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=TEMPLATES)
    templates.env.filters["minutes"] = _minutes
    templates.env.filters["minutes_ja"] = _minutes_ja
    templates.env.filters["ja"] = kiosk_japanese
    templates.env.filters["clock"] = _clock
    templates.env.globals |= {"max_wrong": MAX_WRONG, "first_wait_s": round(FIRST_WAIT_S)}
    return templates


class StaffDoor:
    """The staff side's door in HTTP terms: who is logged in, what a refused page or API
    call answers, and the PIN checks logged (never the PIN)."""

    def __init__(
        self, gate: StaffGate, templates: Jinja2Templates, clock: Clock, *, https: bool
    ) -> None:
        self.gate = gate
        self.templates = templates
        self.clock = clock
        self.https = https  # the session cookie is Secure then

    def logged_in(self, request: Request) -> bool:
        return self.gate.is_open or self.who(request) is not None

    def who(self, request: Request) -> str | None:
        """The staff member whose session the request carries (or who sent their PIN)."""
        by_pin: str | None = getattr(request.state, "staff", None)
        return by_pin or self.gate.session_staff(request.cookies.get(SESSION_COOKIE))

    def locked_context(self, request: Request) -> dict[str, Any]:
        """What the login page says about the wait of the request's address
        (``locked_until`` None: it need not wait)."""
        until = self.gate.locked_until(_client(request))
        if until is None:
            return {"locked_until": None}
        minutes = max(1, math.ceil((until - self.clock.now()) / 60))
        return {"locked_until": until, "locked_minutes": minutes}

    def check_pin(self, request: Request, name: str, pin: str) -> PinCheck:
        """Check a name's PIN (form or API) and log the outcome, never the PIN."""
        who = _client(request)
        was_locked = self.gate.locked_until(who) is not None
        result = self.gate.check_pin(name, pin, who)
        # a name nobody has may be a PIN typed into the wrong field: never log it
        shown = _name_of(name)
        shown = shown if shown in self.gate.pins else "(a name nobody has)"
        if result is PinCheck.RIGHT:
            log.info("clinic staff %s logged in from %s", shown, who)
        elif result is PinCheck.WRONG:
            left = self.gate.wrong_left(who)
            log.warning(
                "wrong clinic staff name or PIN (%r) from %s (%d more before it waits)",
                shown,
                who,
                left,
            )
        elif not was_locked:
            log.warning(
                "wrong clinic staff PIN from %s, %d or more in a row: PINs from there are "
                "refused until %s",
                who,
                MAX_WRONG,
                _clock(self.gate.locked_until(who)),
            )
        return result

    def no_pin_page(self, request: Request) -> Response:
        context = {"command": SET_PIN_COMMAND}
        return self.templates.TemplateResponse(request, "staff_no_pin.html", context, 403)

    def refused_page(self, request: Request) -> Response | None:
        """Why a staff page is refused (no PIN set, another site's form, no session)."""
        if self.gate.is_unset:
            return self.no_pin_page(request)
        if request.method == "POST" and not _from_here(request):
            return HTMLResponse(_CROSS_SITE, status_code=403)
        if self.logged_in(request):
            return None
        target = "/staff"
        if request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/staff/login?{urlencode({'next': target})}", status_code=303)

    def api_staff(self, request: Request) -> None:
        """The staff API's door: the session cookie or ``Authorization: Basic name:PIN``."""
        if self.gate.is_unset:
            raise HTTPException(403, NO_PIN)
        if request.method == "POST" and not _from_here(request):
            raise HTTPException(403, _CROSS_SITE)
        if self.logged_in(request):
            return
        name, pin = _basic(request.headers.get("authorization", ""))
        if not name or not pin:
            raise HTTPException(
                401,
                "staff only: log in at /staff/login, or send your staff name and PIN as "
                "Authorization: Basic (curl -u NAME:PIN)",
                headers=_BASIC,
            )
        result = self.check_pin(request, name, pin)
        if result is PinCheck.LOCKED:
            until = self.gate.locked_until(_client(request)) or self.clock.now()
            raise HTTPException(
                429,
                f"too many wrong staff PINs from this address: PINs from it are refused "
                f"until {_clock(until)} (Asia/Tokyo)",
                headers={"Retry-After": str(max(1, math.ceil(until - self.clock.now())))},
            )
        if result is PinCheck.WRONG:
            raise HTTPException(401, "wrong staff name or PIN", headers=_BASIC)
        request.state.staff = _name_of(name)

    def log_action(self, request: Request, action: StaffRequest, result: ActionResult) -> None:
        """Who made a staff action, in the agent's log (the event to the cloud names none)."""
        who = "anyone (no PIN needed)" if self.gate.is_open else self.who(request)
        log.info(
            "staff action %s %s by %s: %s",
            action.action.value,
            action.number or action.department,
            who,
            result.message or result.number or ("done" if result.ok else "refused"),
        )


def _add_login_routes(app: FastAPI, door: StaffDoor) -> None:
    """``/staff/login`` (the PIN form and its answer) and ``/staff/logout``."""
    gate, templates = door.gate, door.templates

    @app.get("/staff/login", response_class=HTMLResponse)
    async def login_page(request: Request, next: str = "/staff", out: bool = False) -> Response:
        target = _staff_target(next)
        if gate.is_unset:
            return door.no_pin_page(request)
        if door.logged_in(request):
            return RedirectResponse(target, status_code=303)
        context = {"next": target, "logged_out": out, **door.locked_context(request)}
        return templates.TemplateResponse(request, "staff_login.html", context)

    @app.post("/staff/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        if gate.is_unset:
            return door.no_pin_page(request)
        if not _from_here(request):
            return HTMLResponse(_CROSS_SITE, status_code=403)
        if gate.is_open:
            return RedirectResponse("/staff", status_code=303)
        form = _form(await request.body())
        target = _staff_target(form.get("next"))
        name, pin = form.get("name", "").strip(), form.get("pin", "").strip()
        context: dict[str, Any] = {"next": target, "name": name, "empty": not (name and pin)}
        if not (name and pin):
            context |= door.locked_context(request)
            return templates.TemplateResponse(request, "staff_login.html", context, 400)
        result = door.check_pin(request, name, pin)
        staff = _name_of(name)
        if result is PinCheck.RIGHT and staff is not None:
            value, max_age = gate.open_session(staff)
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(
                SESSION_COOKIE,
                value,
                max_age=max_age,
                path="/",
                httponly=True,
                samesite="strict",
                secure=door.https,
            )
            return response
        left = gate.wrong_left(_client(request))
        context |= {"wrong": True, "left": left, **door.locked_context(request)}
        status = 429 if result is PinCheck.LOCKED else 401  # as the cloud's login answers
        return templates.TemplateResponse(request, "staff_login.html", context, status)

    @app.post("/staff/logout")
    async def logout(request: Request) -> Response:
        if (refusal := door.refused_page(request)) is not None:
            return refusal
        gate.close_session(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/staff/login?out=true", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response


def clinic_app(desk: ClinicDesk, config: ClinicConfig, gate: StaffGate) -> FastAPI:
    """The kiosk and staff pages and their API for ``desk``; ``gate`` guards the staff side."""
    app = FastAPI(title="Denen clinic desk", docs_url=None, redoc_url=None, openapi_url=None)
    templates = _templates()
    door = StaffDoor(gate, templates, desk.clock, https=config.tls_cert is not None)
    _add_login_routes(app, door)

    def kiosk_or_404(kiosk_id: str) -> str:
        if kiosk_id not in desk.kiosks:
            raise HTTPException(404, f"no card reader {kiosk_id!r} in this site's config")
        return kiosk_id

    @app.exception_handler(StoreError)
    @app.exception_handler(OutboxError)
    async def _storage_failed(request: Request, exc: Exception) -> Response:
        log.error("clinic page %s: %s", request.url.path, exc)
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.get("/", response_class=HTMLResponse)
    async def index(request: Request) -> HTMLResponse:
        context = {"status": desk.status(), "kiosks": sorted(desk.kiosks)}
        return templates.TemplateResponse(request, "clinic_index.html", context)

    @app.get("/kiosk/{kiosk_id}", response_class=HTMLResponse)
    async def kiosk_page(request: Request, kiosk_id: str) -> HTMLResponse:
        screen = desk.kiosk_screen(kiosk_or_404(kiosk_id))
        context = {"screen": screen, "refresh_s": config.kiosk_refresh_s}
        return templates.TemplateResponse(request, "kiosk.html", context)

    @app.get("/staff", response_class=HTMLResponse)
    async def staff_page(
        request: Request,
        department: str | None = None,
        room: str | None = None,
        msg: str | None = None,
        ok: bool = True,
    ) -> Response:
        if (refusal := door.refused_page(request)) is not None:
            return refusal
        departments = desk.departments()
        view: QueueView | None = None
        if department is None and departments:
            department = departments[0].id
        if department is not None:
            view = desk.queue_view(department)
        rooms = list(view.department.rooms) if view is not None else []
        if room not in rooms:
            room = rooms[0] if rooms else None
        context = {
            "status": desk.status(),
            "departments": departments,
            "department": department,
            "room": room,
            "view": view,
            "message": msg,
            "ok": ok,
            "refresh_s": config.staff_refresh_s,
            "targets": _transfer_targets(desk),
            "open_to_all": gate.is_open,
            "staff": door.who(request),
        }
        return templates.TemplateResponse(request, "staff.html", context)

    @app.post("/staff")
    async def staff_button(request: Request) -> Response:
        if (refusal := door.refused_page(request)) is not None:
            return refusal
        form = _form(await request.body())
        department = form.get("department", "")
        room = form.get("room") or None
        query = {"department": department, "room": room or ""}
        staff_request = _request_from_form(form, department, room)
        if staff_request is None:
            query |= {"ok": "false", "msg": f"unknown action {form.get('action', '')!r}"}
        else:
            result = await _act(desk, door, request, staff_request)
            query["ok"] = str(result.ok).lower()
            query["msg"] = result.message or (result.number or "done")
        return RedirectResponse(f"/staff?{urlencode(query)}", status_code=303)

    @app.get("/api/status")
    async def api_status() -> dict[str, Any]:
        status = desk.status()
        return {
            "running": status.running.value,
            "connected": status.connected,
            "day": status.day,
            "has_day": status.has_day,
            "events_waiting": status.events_waiting,
        }

    @app.get("/api/kiosks/{kiosk_id}")
    async def api_kiosk(kiosk_id: str) -> dict[str, Any]:
        return desk.kiosk_screen(kiosk_or_404(kiosk_id)).model_dump(mode="json")

    @app.get("/api/departments")
    async def api_departments() -> list[dict[str, Any]]:
        return [
            {"id": d.id, "name": d.name, "prefix": d.prefix, "rooms": list(d.rooms)}
            for d in desk.departments()
        ]

    @app.get("/api/queues/{department_id}", dependencies=[Depends(door.api_staff)])
    async def api_queue(department_id: str) -> dict[str, Any]:
        view = desk.queue_view(department_id)
        if view is None:
            raise HTTPException(404, f"no department {department_id!r} today")
        return {
            "department": view.department.id,
            "running": view.running.value,
            "waiting": [_ticket(t, view.waits.get(t.number)) for t in view.waiting],
            "in_rooms": [_ticket(t) for t in view.in_rooms],
            "skipped": [_ticket(t) for t in view.skipped],
            "closed": view.closed,
        }

    @app.post("/api/actions", dependencies=[Depends(door.api_staff)])
    async def api_action(request: Request, body: StaffRequest) -> JSONResponse:
        result = await _act(desk, door, request, body)
        return JSONResponse(result.model_dump(mode="json"), status_code=_status_code(result))

    return app


async def _act(
    desk: ClinicDesk, door: StaffDoor, request: Request, action: StaffRequest
) -> ActionResult:
    """A staff action on the desk, logged with who made it."""
    result = await desk.staff_action(action)
    door.log_action(request, action, result)
    return result


_CROSS_SITE = "refused: a staff form must be sent from this agent's own pages"


def _client(request: Request) -> str:
    """The address a request came from: wrong PINs are counted per address."""
    return request.client.host if request.client else "unknown"


def _from_here(request: Request) -> bool:
    """False when the browser says the request comes from another site's page."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if source is None:
        return True  # not a browser's cross-site form: it cannot carry the cookie
    return urlsplit(source).netloc.lower() == request.headers.get("host", "").lower()


def _name_of(text: str) -> str | None:
    """The staff name ``text`` stands for; None when it cannot be one."""
    try:
        return staff_name(text)
    except StaffAccessError:
        return None


def _basic(header: str) -> tuple[str, str]:
    """``(name, PIN)`` of an ``Authorization: Basic`` header; empty strings when none."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    name, _, pin = decoded.partition(":")
    return name.strip(), pin.strip()


def _staff_target(target: str | None) -> str:
    """Where to go after logging in: a staff page of this agent, never another site."""
    if target and (target == "/staff" or target.startswith("/staff?")):
        return target
    return "/staff"


def _form(body: bytes) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(body.decode(errors="replace")).items()}


def _ticket(ticket: QueueTicket, wait: float | None = None) -> dict[str, Any]:
    return {
        "number": ticket.number,
        "state": ticket.state.value,
        "room": ticket.room,
        "preferred_room": ticket.preferred_room,
        "urgent": ticket.urgent,
        "appointment_at": ticket.appointment_at,
        "estimated_wait_s": wait,
    }


def _transfer_targets(desk: ClinicDesk) -> list[tuple[str, str]]:
    """``(value, label)`` for the transfer select: each room, and each department."""
    out = []
    for department in desk.departments():
        out.append((f"{department.id}|", f"{department.name} (any room)"))
        out += [
            (f"{department.id}|{room}", f"{department.name}, room {room}")
            for room in department.rooms
        ]
    return out


def _request_from_form(
    form: dict[str, str], department: str, room: str | None
) -> StaffRequest | None:
    """The staff page's form as a request; ``None`` for an action it does not know."""
    try:
        action = ClinicAction(form.get("action", ""))
    except ValueError:
        return None
    to_department, to_room = None, None
    target = form.get("target")
    if action is ClinicAction.TRANSFER and target:
        to_department, _, to_room_text = target.partition("|")
        to_room = to_room_text or None
    return StaffRequest(
        action=action,
        department=department,
        number=form.get("number") or None,
        room=room,
        to_department=to_department if to_department != department else None,
        to_room=to_room,
    )


class _AgentServer(uvicorn.Server):
    """uvicorn inside the agent: the agent's composition root owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class ClinicPages:
    """Serves :func:`clinic_app` on ``[clinic] host:port``; ``run()`` until ``stop()``."""

    def __init__(self, desk: ClinicDesk, config: ClinicConfig) -> None:
        self.desk = desk
        self.config = config
        self.port: int | None = None  # the bound port (``port = 0`` picks a free one)
        self.listening = asyncio.Event()
        self._server: _AgentServer | None = None
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.should_exit = True

    async def run(self) -> None:
        """Listen (retrying while the port is taken) and serve until ``stop()``."""
        backoff = Backoff(0.5, 30.0)
        while not self._stopping.is_set():
            try:
                self._check_tls()
                sock = self._bind()
            except PageError as exc:
                level = logging.ERROR if backoff.attempt == 0 else logging.DEBUG
                log.log(level, "%s; retrying", exc)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff.next_delay()):
                        await self._stopping.wait()
                continue
            try:
                await self._serve(sock)
            finally:
                sock.close()
            return

    def _gate(self) -> StaffGate:
        gate = StaffGate(
            self.config.staff_pins,
            secret=load_session_secret(self.desk.config.state_dir),
            clock=self.desk.clock,
            required=self.config.staff_pin_required,
        )
        if gate.is_open:
            log.warning(
                "clinic staff page open to anyone on the clinic network: no staff PIN and "
                "[clinic] staff_pin_required = false"
            )
        elif gate.is_unset:
            log.warning("clinic staff page closed: no staff PIN set: run `%s`", SET_PIN_COMMAND)
        if self.config.shared_pin_left:
            log.warning(
                "clinic staff page: the old shared staff PIN is in use as staff member %r, "
                "so nobody can tell who did what: give each staff member their own PIN "
                "(`%s`), then remove the shared one (`denen-agent clinic remove-staff %s "
                "--config …`)",
                SHARED_NAME,
                SET_PIN_COMMAND,
                SHARED_NAME,
            )
        return gate

    def _check_tls(self) -> None:
        """Refuse (:class:`PageError`, saying what to fix) a certificate or key that cannot
        be served, before listening: never fall back to plain http."""
        cert, key = self.config.tls_cert, self.config.tls_key
        if cert is None or key is None:
            return
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise PageError(
                f"clinic pages: cannot serve https with [clinic] tls_cert {cert} and tls_key "
                f"{key} ({getattr(exc, 'strerror', None) or exc}): check that both exist, "
                "are PEM, belong together and are readable by the agent's user"
            ) from exc

    async def _serve(self, sock: socket.socket) -> None:
        cert, key = self.config.tls_cert, self.config.tls_key
        config = uvicorn.Config(
            clinic_app(self.desk, self.config, self._gate()),
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            proxy_headers=False,  # no proxy in front: the peer is the reception's machine
            ssl_certfile=None if cert is None else str(cert),
            ssl_keyfile=None if key is None else str(key),
            # a browser's idle https connection never answers the TLS close: without a
            # bound, asyncio waits 30 s for it and the agent's stop with it
            timeout_graceful_shutdown=math.ceil(STOP_GRACE_S),
        )
        self._server = server = _AgentServer(config)
        server.should_exit = self._stopping.is_set()
        self.port = int(sock.getsockname()[1])
        scheme = "http" if cert is None else "https"
        log.info("clinic pages on %s://%s:%d/staff", scheme, self.config.host, self.port)
        if cert is None:
            log.warning(
                "clinic pages on plain http: staff names, PINs and session cookies cross the "
                "clinic network in clear; set [clinic] tls_cert and tls_key to a certificate "
                "from the city's CA for this Pi's address"
            )
        task = asyncio.create_task(server.serve(sockets=[sock]), name="clinic-pages-uvicorn")
        while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn has no event
            await asyncio.sleep(0.01)
        self.listening.set()
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            server.should_exit = True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_GRACE_S):
                    await task
            raise
        finally:
            self.listening.clear()

    def _bind(self) -> socket.socket:
        host, port = self.config.host, self.config.port
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )[0]
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            raise PageError(f"clinic pages: cannot listen on {host}:{port}: {exc}") from exc
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(128)
        except OSError as exc:
            sock.close()
            raise PageError(
                f"clinic pages: cannot listen on {host}:{port} ({exc.strerror or exc}): is "
                "another program using the port? Change [clinic] port in the site config"
            ) from exc
        sock.setblocking(False)
        return sock


class PageError(EdgeError, OSError):
    """The pages cannot listen where the site config says."""


__all__ = ["ClinicPages", "PageError", "Running", "clinic_app"]
