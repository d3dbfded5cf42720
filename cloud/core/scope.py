"""Which sites a user may see and act on: the one rule of the whole cloud.

- Ops and technicians: every site (what a technician may *do* is narrower; each page
  and endpoint says).
- A facility manager (``manager``) and clinic staff (``clinic``): the sites of the city
  departments they are members of (``departments``, ``department_members`` and ``sites``
  in :mod:`cloud.db.fleet_models`; ops manage them under ``/api/fleet/departments``).
- Anyone else: no site.

A facility belongs to its site (``Facility.site``), a clinic to its site (``Clinic.site``),
a reservation and a lock to their facility: each domain's checks of its own things live
with it (:mod:`cloud.gym.scope`, :mod:`cloud.clinic.scope`), built on :meth:`SiteScopeService.
require`. A site with no ``sites`` row, or one with no
department, belongs to no department: only ops and technicians see it.

Out of scope answers like missing: the same :class:`NotFoundError` (404) that a thing
which does not exist gets, for reading and for acting alike, never a 403 that would say
it exists. The ``require_*`` checks below raise it for a scoped user whether the thing is
elsewhere or nowhere, so the two cannot be told apart; lists take :meth:`SiteScopeService.
sites` and leave the rest out. The fleet (:mod:`cloud.fleet.sites`), the gym's pages and
API and the clinic's all use this module.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TypeAlias

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.models import DepartmentMember, Role, Site
from cloud.core.views import UserView
from cloud.errors import NotFoundError

ALL_SITES_ROLES = frozenset({Role.OPS, Role.TECHNICIAN})
DEPARTMENT_ROLES = frozenset({Role.MANAGER, Role.CLINIC})

Scope: TypeAlias = frozenset[str] | None
"""The sites a user may see; None: every site."""


def sites_in_scope(session: Session, user: UserView) -> Scope:
    """The sites ``user`` may see (None: every site), by the rule above."""
    if user.role in ALL_SITES_ROLES:
        return None
    if user.role not in DEPARTMENT_ROLES:
        return frozenset()
    rows = session.scalars(
        select(Site.slug)
        .join(DepartmentMember, DepartmentMember.department == Site.department)
        .where(DepartmentMember.user_id == user.id)
    )
    return frozenset(rows)


def within(site: str | None, scope: Collection[str] | None) -> bool:
    """Whether ``site`` is in ``scope`` (None: every site; a missing site is in none)."""
    return scope is None or (site is not None and site in scope)


class SiteScopeService:
    """The scope of a user, and the checks routes make before they read or act."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def sites(self, user: UserView) -> Scope:
        """The sites ``user`` may see; None: every site."""
        if user.role in ALL_SITES_ROLES:
            return None
        with self._sessions() as session:
            return sites_in_scope(session, user)

    def require_site(self, user: UserView, site: str) -> None:
        """NotFoundError unless ``user`` may act at ``site`` (e.g. register a facility
        there)."""
        if not within(site, self.sites(user)):
            raise NotFoundError(f"no site {site!r}")

    def require(self, user: UserView, site_of: Select[str], missing: str) -> None:
        """NotFoundError(``missing``) unless the site that ``site_of`` selects (the site of
        some thing of a domain) exists and ``user`` may see it; each domain's own checks
        (:mod:`cloud.gym.scope`, :mod:`cloud.clinic.scope`) are built on this."""
        if user.role in ALL_SITES_ROLES:
            return  # everything is theirs: the service says what is missing, in its words
        with self._sessions() as session:
            site = session.scalar(site_of)
            if not within(site, sites_in_scope(session, user)):
                raise NotFoundError(missing)
