"""The locks a gym message names must be its topic's (:mod:`cloud.fleet.ownership`): a lock
belongs to the site and gateway of its facility.

A lock the cloud knows at another site or gateway, named in a lock event, an applied
version or telemetry, is refused (:func:`cloud.fleet.ownership.refuse`). A lock the cloud
does not know yet belongs to no one; what is said of it is kept under the sender's site,
where no other site's audit reads it.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloud.fleet.ownership import Claim
from cloud.gym.models import Facility, Lock


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
