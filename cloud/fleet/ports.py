"""What the fleet asks the domains above it, as small interfaces they implement.

The fleet sits below the gym and the clinic and never imports them. Where it needs their
answer (may this lock be updated now? what is this site called?) it asks through these,
and the app's composition root (:func:`cloud.app.create_app`) hands in the gym's and the
clinic's implementations (:mod:`cloud.gym.fleet_answers`,
:mod:`cloud.clinic.fleet_answers`). Built alone (a test, a bench) the fleet gets
:data:`NO_ANSWERS`: no lock is busy, no site has a name but its slug.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.orm import Session


class LockUse(Protocol):
    """Whether a lock is in use, asked before a rollout updates it."""

    def lock_busy(self, session: Session, lock_id: str, now: int) -> str | None:
        """Why ``lock_id`` must not be updated now (e.g. a booking in progress), or None."""
        ...


class SiteNames(Protocol):
    """The name people know a site by, asked when the fleet first hears of the site."""

    def site_name(self, session: Session, site: str) -> str | None:
        """The name of what this domain runs at ``site``, or None when it runs nothing."""
        ...


class _NoLockUse:
    def lock_busy(self, session: Session, lock_id: str, now: int) -> str | None:
        return None


@dataclass(frozen=True, slots=True)
class FleetPorts:
    """Every answer the fleet may ask for; ``names`` are asked in order."""

    locks: LockUse = field(default_factory=_NoLockUse)
    names: Sequence[SiteNames] = ()

    def site_name(self, session: Session, site: str) -> str | None:
        """The first name a domain knows for ``site``, or None."""
        for names in self.names:
            name = names.site_name(session, site)
            if name:
                return name
        return None


NO_ANSWERS = FleetPorts()
