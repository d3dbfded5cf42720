"""What the fleet asks the domains above it, as small interfaces they implement.

The fleet sits below the gym and the clinic and never imports them. Where it needs their
answer (may this lock be updated now? what is this site called? which gateway is this
device registered under?) it asks through these,
and the app's composition root (:func:`cloud.app.create_app`) hands in the gym's and the
clinic's implementations (:mod:`cloud.gym.fleet_answers`,
:mod:`cloud.clinic.fleet_answers`). Built alone (a test, a bench) the fleet gets
:data:`NO_ANSWERS`: no lock is busy, no site has a name but its slug, no device is
registered.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
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


class DeviceOwners(Protocol):
    """Which gateway a domain registered its devices under (a facility's locks, a clinic's
    displays), asked before the fleet takes a gateway's word about a device."""

    def registered(
        self, session: Session, devices: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        """The gateway of each ``(site, device_id)`` of ``devices`` this domain registered."""
        ...


class _NoLockUse:
    def lock_busy(self, session: Session, lock_id: str, now: int) -> str | None:
        return None


@dataclass(frozen=True, slots=True)
class FleetPorts:
    """Every answer the fleet may ask for; ``names`` are asked in order."""

    locks: LockUse = field(default_factory=_NoLockUse)
    names: Sequence[SiteNames] = ()
    owners: Sequence[DeviceOwners] = ()

    def site_name(self, session: Session, site: str) -> str | None:
        """The first name a domain knows for ``site``, or None."""
        for names in self.names:
            name = names.site_name(session, site)
            if name:
                return name
        return None

    def registered(
        self, session: Session, devices: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        """The gateway each ``(site, device_id)`` is registered under, by any domain (a
        device no domain registered is missing): a query per domain."""
        out: dict[tuple[str, str], str] = {}
        if devices:
            for owners in self.owners:
                out.update(owners.registered(session, devices))
        return out


NO_ANSWERS = FleetPorts()
