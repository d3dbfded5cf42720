"""The card reader simulator's control interface: a "tap card" page and a JSON API.

``POST /api/readers/{id}/tap {"card": "3101 0000 0000 0010"}`` holds a card to the reader:
its number goes out on the pty as one line, exactly as a kiosk reader sends it. Responses
and the page never echo the number back; the page offers a few made-up sample cards.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Protocol

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field

from firmware_sim.card_reader.firmware import CardContentError, CardReaderView
from protocol.patient_card import PatientCardNumber

TEMPLATES = Path(__file__).parent.parent / "templates"
# made-up cards for the demo: facility 01..03 of the network, small serials
SAMPLE_CARDS = tuple(PatientCardNumber.issue(f, s).grouped for f, s in ((1, 1), (2, 42), (3, 7)))


class ControlledReader(Protocol):
    reader_id: str

    @property
    def path(self) -> str: ...

    def tap(self, content: str, *, misread: bool = False) -> CardReaderView: ...

    def view(self) -> CardReaderView: ...


class TapIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    card: str = Field(min_length=1, max_length=80, examples=[SAMPLE_CARDS[0]])
    misread: bool = False  # read one digit wrong, as a smudged code would


class ReaderOut(BaseModel):
    reader_id: str
    path: str
    taps: int
    misreads: int
    last_tap_at: int | None
    bytes_sent: int


def reader_out(reader: ControlledReader, view: CardReaderView) -> ReaderOut:
    return ReaderOut(reader_id=reader.reader_id, path=reader.path, **asdict(view))


def reader_router(readers: Iterable[ControlledReader]) -> APIRouter:
    """Pages and API for ``readers`` (keyed by their ``reader_id``)."""
    by_id = {r.reader_id: r for r in readers}
    templates = Jinja2Templates(directory=TEMPLATES)
    router = APIRouter()

    def find(reader_id: str) -> ControlledReader:
        reader = by_id.get(reader_id)
        if reader is None:
            raise HTTPException(404, f"no simulated card reader {reader_id!r}")
        return reader

    @router.get("/readers/{reader_id}", response_class=HTMLResponse)
    async def reader_page(request: Request, reader_id: str) -> HTMLResponse:
        """A "tap card" form for one reader."""
        reader = find(reader_id)
        context = {"r": reader_out(reader, reader.view()), "samples": SAMPLE_CARDS}
        return templates.TemplateResponse(request, "card_reader.html", context)

    @router.get("/api/readers")
    async def list_readers() -> list[ReaderOut]:
        return [reader_out(r, r.view()) for r in by_id.values()]

    @router.get("/api/readers/{reader_id}")
    async def get_reader(reader_id: str) -> ReaderOut:
        reader = find(reader_id)
        return reader_out(reader, reader.view())

    @router.post("/api/readers/{reader_id}/tap")
    async def tap(reader_id: str, body: TapIn) -> ReaderOut:
        """Hold a card to the reader: its number goes to the agent as one line."""
        reader = find(reader_id)
        try:
            view = reader.tap(body.card, misread=body.misread)
        except CardContentError as exc:
            raise HTTPException(422, str(exc)) from None
        return reader_out(reader, view)

    return router


def create_reader_app(readers: Iterable[ControlledReader]) -> FastAPI:
    """A control app for card readers only (what ``denen-sim card-reader`` serves)."""
    hosted = list(readers)
    app = FastAPI(title="Denen card reader simulator", docs_url="/api/docs")
    app.include_router(reader_router(hosted))

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        links = "".join(
            f'<li><a href="/readers/{r.reader_id}" data-testid="reader-link-{r.reader_id}">'
            f"{r.reader_id}</a> <code>{r.path}</code></li>"
            for r in hosted
        )
        return HTMLResponse(f"<!doctype html><title>Card readers</title><ul>{links}</ul>")

    return app
