"""The fleet's row of a site, made when the cloud first hears of the site: a facility or
clinic registered for it, or a gateway of it reporting. A leaf module, so the gym's and
the clinic's services can make the row in their own transaction."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cloud.core.models import Site
from cloud.fleet.ports import NO_ANSWERS, FleetPorts


def ensure_site(
    session: Session,
    site: str,
    now: int,
    *,
    name: str | None = None,
    ports: FleetPorts = NO_ANSWERS,
) -> None:
    """Create the site row unless it exists, race-free with other workers: named ``name``,
    else as the domains call it (``ports``), else by its slug. A new site is in the last
    rollout ring and in no department until ops give it one."""
    if session.get(Site, site) is not None:
        return
    name = name or ports.site_name(session, site)
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(
        insert(Site)
        .values(slug=site, name=name or site, ring=2, created_at=now)
        .on_conflict_do_nothing(index_elements=["slug"])
    )
