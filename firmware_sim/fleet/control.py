"""The fleet simulator's control API (JSON), for the bench and the tests: counters, each
gateway's access version, and a burst of lock events on every gateway.

Routes are thin and async (they run on the fleet's event loop, never in a thread pool):
they call the :class:`~firmware_sim.fleet.fleet.Fleet` and serialise what it returns.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from firmware_sim.fleet.fleet import Fleet


class EventsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    per_gateway: int = Field(ge=1, le=10_000, description="lock events each gateway sends")


class EventsOut(BaseModel):
    events: int
    started_at: float = Field(description="monotonic seconds (CLOCK_MONOTONIC)")


def create_app(fleet: Fleet) -> FastAPI:
    """The control app of one running fleet."""
    app = FastAPI(title="Denen fleet simulator", docs_url=None, redoc_url=None)

    @app.get("/api/fleet")
    async def stats() -> dict[str, Any]:
        """Counters: connected gateways, sessions, events queued and acknowledged, the
        access versions held (version → gateways). Times are monotonic seconds."""
        return fleet.snapshot().as_dict()

    @app.get("/api/fleet/gateways")
    async def gateways() -> list[dict[str, Any]]:
        """Every gateway with the access version it holds and since when."""
        return fleet.gateways()

    @app.post("/api/fleet/events")
    async def events(body: EventsIn) -> EventsOut:
        """Queue ``per_gateway`` lock events (QoS 1) on every gateway at once."""
        count, started = fleet.emit_events(body.per_gateway)
        return EventsOut(events=count, started_at=started)

    return app
