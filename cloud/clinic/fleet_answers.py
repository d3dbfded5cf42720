"""The clinic's answer to the fleet's question of a site's name (:mod:`cloud.fleet.ports`)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.clinic.models import Clinic


class ClinicNames:
    """:class:`~cloud.fleet.ports.SiteNames`: the name of the clinic at a site."""

    def site_name(self, session: Session, site: str) -> str | None:
        return session.scalar(select(Clinic.name).where(Clinic.site == site))
