"""The fleet's row of a site, made when the cloud first hears of the site: a facility or
clinic registered for it, or a gateway of it reporting. A leaf module (models only), so
the gym's and the clinic's services can make the row in their own transaction."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cloud.clinic.models import Clinic
from cloud.core.models import Site
from cloud.gym.models import Facility


def ensure_site(session: Session, site: str, now: int) -> None:
    """Create the site row unless it exists (named like its facility or clinic when the
    cloud knows one, else by its slug); race-free with other workers. A new site is in
    the last rollout ring and in no department until ops give it one."""
    if session.get(Site, site) is not None:
        return
    name = session.scalar(select(Facility.name).where(Facility.site == site).limit(1))
    name = name or session.scalar(select(Clinic.name).where(Clinic.site == site))
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(
        insert(Site)
        .values(slug=site, name=name or site, ring=2, created_at=now)
        .on_conflict_do_nothing(index_elements=["slug"])
    )
