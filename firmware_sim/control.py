"""The simulators' control interface: a page with a virtual keypad and door, and a JSON API.

What a person at the door (or a test) does goes through here; the agent and the cloud
never see it. Routes are thin: they look up the lock, call it, serialise the view.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Protocol

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field

from firmware_sim.lock.firmware import LockView

TEMPLATES = Path(__file__).parent / "templates"


class ControlledLock(Protocol):
    """A hosted lock the control interface can drive (a pty host, an in-process one…)."""

    lock_id: str

    @property
    def path(self) -> str: ...

    def press(self, keys: str) -> LockView: ...

    def door(self, *, open_: bool, from_inside: bool = False) -> bool: ...

    def view(self) -> LockView: ...

    def pair_button(self) -> LockView: ...


class KeysIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keys: str = Field(pattern=r"^[0-9*#]{1,64}$", examples=["482913#"])


class DoorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    open: bool
    from_inside: bool = False


class ViewOut(BaseModel):
    lock_id: str
    path: str
    locked: bool
    door_open: bool
    display: str
    locked_out: bool
    lockout_remaining_s: int
    battery_pct: int
    clock_set: bool
    lock_time: int | None
    slots_used: int
    events_pending: int
    events_dropped: int
    paired: bool
    pairing_open_s: int
    auth_failures: int


class DoorOut(BaseModel):
    moved: bool  # False: the door did not move (locked from outside, or already there)
    view: ViewOut


def _view_out(lock: ControlledLock, view: LockView) -> ViewOut:
    return ViewOut(lock_id=lock.lock_id, path=lock.path, **asdict(view))


def create_app(locks: Iterable[ControlledLock]) -> FastAPI:
    """The control app for ``locks`` (keyed by their ``lock_id``)."""
    by_id = {lock.lock_id: lock for lock in locks}
    templates = Jinja2Templates(directory=TEMPLATES)
    app = FastAPI(title="Denen firmware simulator", docs_url="/api/docs")

    # Every route is `async def` on purpose: the firmware and its pty belong to the event
    # loop's thread, and plain `def` routes would run in a worker thread.
    def find(lock_id: str) -> ControlledLock:
        lock = by_id.get(lock_id)
        if lock is None:
            raise HTTPException(404, f"no simulated lock {lock_id!r}")
        return lock

    @app.get("/", response_class=HTMLResponse)
    async def index(request: Request) -> HTMLResponse:
        """The simulator page: every hosted lock, linked to its keypad."""
        return templates.TemplateResponse(
            request, "index.html", {"locks": [_view_out(x, x.view()) for x in by_id.values()]}
        )

    @app.get("/locks/{lock_id}", response_class=HTMLResponse)
    async def lock_page(request: Request, lock_id: str) -> HTMLResponse:
        """A virtual keypad and door for one lock, with its live display."""
        lock = find(lock_id)
        return templates.TemplateResponse(
            request, "lock.html", {"lock": _view_out(lock, lock.view())}
        )

    @app.get("/api/locks")
    async def list_locks() -> list[ViewOut]:
        """Every hosted lock and what it shows."""
        return [_view_out(x, x.view()) for x in by_id.values()]

    @app.get("/api/locks/{lock_id}")
    async def get_lock(lock_id: str) -> ViewOut:
        """What the lock shows now."""
        lock = find(lock_id)
        return _view_out(lock, lock.view())

    @app.post("/api/locks/{lock_id}/keys")
    async def press_keys(lock_id: str, body: KeysIn) -> ViewOut:
        """Press keys on the keypad, in order; returns what the lock shows after."""
        lock = find(lock_id)
        return _view_out(lock, lock.press(body.keys))

    @app.post("/api/locks/{lock_id}/door")
    async def move_door(lock_id: str, body: DoorIn) -> DoorOut:
        """Open (from outside, or from inside: always free) or close the door."""
        lock = find(lock_id)
        moved = lock.door(open_=body.open, from_inside=body.from_inside)
        return DoorOut(moved=moved, view=_view_out(lock, lock.view()))

    @app.post("/api/locks/{lock_id}/pair-button")
    async def press_pair_button(lock_id: str) -> ViewOut:
        """Press the pairing button: the lock takes one PAIR in the next 60 seconds."""
        lock = find(lock_id)
        return _view_out(lock, lock.pair_button())

    return app
