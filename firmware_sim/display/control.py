"""The display simulator's control interface: the display's face as a page, and a JSON API.

The page is what the waiting room sees (big numbers per room, the next numbers, the
announcement ticker, a chime indicator, dimmed in standby); the API lets a test or the
demo read it, pull the plug and press the pairing button. The agent never sees any of
this: it talks to the pty. Routes are thin: look the display up, call it, serialise the view.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Protocol

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel

from firmware_sim.display.firmware import DisplayView

TEMPLATES = Path(__file__).parent.parent / "templates"


class ControlledDisplay(Protocol):
    """A hosted display the control interface can drive."""

    display_id: str

    @property
    def path(self) -> str: ...

    def view(self) -> DisplayView: ...

    def power_cycle(self) -> DisplayView: ...

    def pair_button(self) -> DisplayView: ...


class RoomOut(BaseModel):
    room: str
    number: str
    fresh: bool


class DisplayOut(BaseModel):
    display_id: str
    path: str
    has_state: bool
    state_version: int
    rooms: list[RoomOut]
    next_numbers: list[str]
    announcement: str
    announcement_level: str
    announcement_expires_at: int | None
    chime: bool
    chime_count: int
    brightness: int
    set_brightness: int
    standby: bool
    clock_set: bool
    display_time: int | None
    boot_count: int
    provisioned: bool
    pairing_open_s: int
    pairing_code: str
    auth_failures: int
    bad_requests: int
    dropped_bytes: int


def display_out(display: ControlledDisplay, view: DisplayView) -> DisplayOut:
    return DisplayOut(display_id=display.display_id, path=display.path, **asdict(view))


def display_router(displays: Iterable[ControlledDisplay]) -> APIRouter:
    """Pages and API for ``displays`` (keyed by their ``display_id``)."""
    by_id = {d.display_id: d for d in displays}
    templates = Jinja2Templates(directory=TEMPLATES)
    router = APIRouter()

    # `async def` on purpose: the firmware and its pty belong to the event loop's thread
    def find(display_id: str) -> ControlledDisplay:
        display = by_id.get(display_id)
        if display is None:
            raise HTTPException(404, f"no simulated display {display_id!r}")
        return display

    @router.get("/displays/{display_id}", response_class=HTMLResponse)
    async def display_page(request: Request, display_id: str) -> HTMLResponse:
        """The display's face, as the waiting room sees it (refreshes itself)."""
        display = find(display_id)
        return templates.TemplateResponse(
            request, "display.html", {"d": display_out(display, display.view())}
        )

    @router.get("/api/displays")
    async def list_displays() -> list[DisplayOut]:
        """Every hosted display and what it shows."""
        return [display_out(d, d.view()) for d in by_id.values()]

    @router.get("/api/displays/{display_id}")
    async def get_display(display_id: str) -> DisplayOut:
        """What the display shows now."""
        display = find(display_id)
        return display_out(display, display.view())

    @router.post("/api/displays/{display_id}/power-cycle")
    async def power_cycle(display_id: str) -> DisplayOut:
        """Pull the plug and put it back: the display forgets its state and says HELLO."""
        display = find(display_id)
        return display_out(display, display.power_cycle())

    @router.post("/api/displays/{display_id}/pair-button")
    async def press_pair_button(display_id: str) -> DisplayOut:
        """Press the pairing button: the display takes PAIR in the next 60 seconds."""
        display = find(display_id)
        return display_out(display, display.pair_button())

    return router


def create_display_app(displays: Iterable[ControlledDisplay]) -> FastAPI:
    """A control app for displays only (what ``denen-sim display`` serves)."""
    hosted = list(displays)
    templates = Jinja2Templates(directory=TEMPLATES)
    app = FastAPI(title="Denen display simulator", docs_url="/api/docs")
    app.include_router(display_router(hosted))

    @app.get("/", response_class=HTMLResponse)
    async def index(request: Request) -> HTMLResponse:
        """Every hosted display, linked to its face."""
        rows = [display_out(d, d.view()) for d in hosted]
        return templates.TemplateResponse(request, "displays.html", {"displays": rows})

    return app
