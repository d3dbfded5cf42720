"""The agent's pages on the clinic network: a kiosk screen per card reader, the staff page,
and the small JSON API behind them. Server-rendered, no build step and no outside assets,
so they work with the internet down.

    GET  /                          links to every page
    GET  /kiosk/{kiosk}             the kiosk's screen (reloads itself)
    GET  /staff?department=&room=   the staff page: the queue, who runs it, the buttons
    POST /staff                     a button of the staff page (form), then back to it
    GET  /api/status                who runs the queues, link, events waiting
    GET  /api/kiosks/{kiosk}        the kiosk's screen as JSON
    GET  /api/departments           departments and rooms
    GET  /api/queues/{department}   the queue in call order
    POST /api/actions               a staff action (JSON :class:`StaffRequest`)

Routes are thin: they parse, call the desk, render. Served in-process by uvicorn
(:class:`ClinicPages`), which leaves the agent's signal handlers alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Generator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from edge.backoff import Backoff
from edge.clinic.desk import (
    ALREADY,
    CHECKING,
    MISREAD,
    NO_APPOINTMENT,
    NO_DAY,
    READY,
    SHORTLY,
    ActionResult,
    ClinicDesk,
    QueueView,
    Running,
    StaffRequest,
)
from edge.config import ClinicConfig
from edge.errors import EdgeError, OutboxError, StoreError
from protocol.messages import ClinicAction
from protocol.queue_rules import TOKYO, QueueTicket

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"
STOP_GRACE_S = 5.0


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


def clinic_app(desk: ClinicDesk, config: ClinicConfig) -> FastAPI:
    """The kiosk and staff pages and their API for ``desk``."""
    app = FastAPI(title="Denen clinic desk", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=TEMPLATES)
    templates.env.filters["minutes"] = _minutes
    templates.env.filters["minutes_ja"] = _minutes_ja
    templates.env.filters["ja"] = kiosk_japanese
    templates.env.filters["clock"] = _clock

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
    ) -> HTMLResponse:
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
        }
        return templates.TemplateResponse(request, "staff.html", context)

    @app.post("/staff")
    async def staff_button(request: Request) -> RedirectResponse:
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode()).items()}
        department = form.get("department", "")
        room = form.get("room") or None
        query = {"department": department, "room": room or ""}
        staff_request = _request_from_form(form, department, room)
        if staff_request is None:
            query |= {"ok": "false", "msg": f"unknown action {form.get('action', '')!r}"}
        else:
            result = await desk.staff_action(staff_request)
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

    @app.get("/api/queues/{department_id}")
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

    @app.post("/api/actions")
    async def api_action(body: StaffRequest) -> JSONResponse:
        result = await desk.staff_action(body)
        return JSONResponse(result.model_dump(mode="json"), status_code=_status_code(result))

    return app


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

    async def _serve(self, sock: socket.socket) -> None:
        config = uvicorn.Config(
            clinic_app(self.desk, self.config),
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
        )
        self._server = server = _AgentServer(config)
        server.should_exit = self._stopping.is_set()
        self.port = int(sock.getsockname()[1])
        log.info("clinic pages on http://%s:%d/staff", self.config.host, self.port)
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
