"""The clinic's scope check: a clinic is in a user's scope when its site is (the rule
itself: :mod:`cloud.core.scope`)."""

from __future__ import annotations

from sqlalchemy import select

from cloud.clinic.models import Clinic
from cloud.core.scope import SiteScopeService
from cloud.core.views import UserView


class ClinicScope(SiteScopeService):
    """:class:`SiteScopeService` with the check of a clinic."""

    def require_clinic(self, user: UserView, site: str) -> None:
        """NotFoundError unless there is a clinic at ``site`` and ``user`` may see it."""
        query = select(Clinic.site).where(Clinic.site == site)
        self.require(user, query, f"there is no clinic at site {site!r}")
