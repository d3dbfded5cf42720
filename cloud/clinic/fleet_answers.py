"""The clinic's answers to the fleet's questions (:mod:`cloud.fleet.ports`): a site's name,
and the gateway its displays belong to."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.clinic.models import Clinic


class ClinicNames:
    """:class:`~cloud.fleet.ports.SiteNames`: the name of the clinic at a site."""

    def site_name(self, session: Session, site: str) -> str | None:
        return session.scalar(select(Clinic.name).where(Clinic.site == site))


class ClinicDisplays:
    """:class:`~cloud.fleet.ports.DeviceOwners`: a clinic's displays are its gateway's."""

    def registered(
        self, session: Session, devices: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        sites = {site for site, _d in devices}
        query = select(Clinic.site, Clinic.gateway, Clinic.displays).where(Clinic.site.in_(sites))
        return {
            (site, display["display_id"]): gateway
            for site, gateway, displays in session.execute(query)
            for display in displays
            if (site, display["display_id"]) in devices
        }
