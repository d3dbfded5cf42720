"""A message speaks only for the site and gateway of its topic: the locks it names must be
theirs.

The broker authenticated the topic (each gateway's certificate may publish only under its
own ``{site}/{gw}``); the payload is the gateway's word. A lock the cloud knows at another
site or gateway, named in a lock event, an applied version or telemetry, is a gateway
speaking for someone else's door: its messages about that lock are dropped, counted and
logged, and a ``foreign_device`` fleet alert opens against the sender (critical: a
misconfigured or a compromised Pi). A lock the cloud does not know yet belongs to no one;
what is said of it is kept under the sender's site, where no other site's audit reads it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.fleet.alerts import open_alert
from cloud.fleet.health import gateway_subject
from cloud.fleet.kinds import AlertKind
from cloud.gym.models import Facility, Lock
from cloud.settings import CloudSettings

log = logging.getLogger(__name__)

Claim = tuple[str, str, str]
"""(site, gateway, lock_id): the topic's site and gateway, and a lock its payload names."""


@dataclass
class RefusedClaims:
    """What was refused since start-up, by what it was (``lock events`` …)."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, what: str, n: int) -> None:
        self.counts[what] = self.counts.get(what, 0) + n


def foreign(session: Session, claims: Collection[Claim]) -> set[Claim]:
    """The claims naming a lock the cloud knows at another site or gateway."""
    ids = {lock_id for _site, _gateway, lock_id in claims}
    if not ids:
        return set()
    query = (
        select(Lock.lock_id, Facility.site, Facility.gateway)
        .join(Facility, Facility.id == Lock.facility_id)
        .where(Lock.lock_id.in_(ids))
    )
    owners = {lock_id: (site, gateway) for lock_id, site, gateway in session.execute(query)}
    return {
        claim for claim in claims if claim[2] in owners and owners[claim[2]] != (claim[0], claim[1])
    }


def refuse(
    session: Session,
    settings: CloudSettings,
    now: int,
    refused: Sequence[Claim],
    *,
    what: str,
    counter: RefusedClaims,
    dropped: int,
) -> None:
    """Count ``dropped`` messages, log ``refused`` and open a ``foreign_device`` alert
    against each sender, in ``session``'s transaction."""
    if not refused:
        return
    counter.add(what, dropped)
    by_sender: dict[tuple[str, str], set[str]] = {}
    for site, gateway, lock_id in refused:
        by_sender.setdefault((site, gateway), set()).add(lock_id)
    for (site, gateway), locks in sorted(by_sender.items()):
        names = ", ".join(sorted(locks))
        log.warning(
            "dropped %s from %s/%s naming locks of another site or gateway (%s): check "
            "this gateway's site config and certificate",
            what,
            site,
            gateway,
            names,
        )
        open_alert(
            session,
            settings,
            now,
            AlertKind.FOREIGN_DEVICE,
            gateway_subject(site, gateway),
            message=f"this gateway sent {what} for locks of another site or gateway "
            f"({names[:120]}); they were dropped. Check its site config; if it is not ours, "
            "revoke its certificate",
        )
