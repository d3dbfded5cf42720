"""Who decided a check-in or a staff action, and what came of it: the answer every part of
the desk (:mod:`edge.clinic.desk`) gives the kiosk and the staff page."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Running(StrEnum):
    """Who runs the site's queues right now."""

    CLOUD = "cloud"
    AGENT = "agent"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ActionResult(_Frozen):
    """The outcome of a check-in or a staff action, for the kiosk and the staff page."""

    ok: bool
    by: Running  # who decided it
    pending: bool = False  # sent to the cloud, no answer yet
    number: str | None = None
    department: str | None = None
    estimated_wait_s: float | None = None
    message: str = ""


__all__ = ["ActionResult", "Running"]
