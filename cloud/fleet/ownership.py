"""A message speaks only for the site and gateway of its topic: the devices it names must
be theirs.

The broker authenticated the topic (each gateway's certificate may publish only under its
own ``{site}/{gw}``); the payload is the gateway's word. A device the cloud knows at
another site or gateway (a lock of another facility, a display of another gateway's
clinic, a device already reporting through another gateway), named in a message, is a
gateway speaking for someone else's device: what it says of it is dropped, counted and
logged, and a ``foreign_device`` fleet alert opens against the sender (critical: a
misconfigured or a compromised Pi). Each domain knows its own devices (the gym its locks,
:mod:`cloud.gym.ownership`; the clinic its clinic and displays); this is the refusal they
share, and the fleet's own rule for the devices of its health rows
(:func:`owner`)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from cloud.fleet.alerts import open_alert
from cloud.fleet.kinds import AlertKind, gateway_subject
from cloud.settings import CloudSettings

log = logging.getLogger(__name__)

Claim = tuple[str, str, str]
"""(site, gateway, device_id): the topic's site and gateway, and a device its payload
names."""


@dataclass
class RefusedClaims:
    """What was refused since start-up, by what it was (``lock events`` …)."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, what: str, n: int) -> None:
        self.counts[what] = self.counts.get(what, 0) + n


def owner(sender: str, registered: str | None, known: str | None) -> str:
    """The gateway a device belongs to: the one its domain registered it under (a
    facility's, a clinic's), else the one it was first heard through, else (first heard
    now) the ``sender``'s."""
    return registered or known or sender


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
    """Count ``dropped`` messages, log ``refused`` (one line per sender) and open a
    ``foreign_device`` alert against each sender, in ``session``'s transaction."""
    if not refused:
        return
    counter.add(what, dropped)
    by_sender: dict[tuple[str, str], set[str]] = {}
    for site, gateway, device_id in refused:
        by_sender.setdefault((site, gateway), set()).add(device_id)
    for (site, gateway), devices in sorted(by_sender.items()):
        names = ", ".join(sorted(devices))
        log.warning(
            "dropped %s from %s/%s naming devices of another site or gateway (%s): check "
            "this gateway's site config and certificate, and which gateway the devices "
            "are registered under",
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
            message=f"this gateway sent {what} for devices of another site or gateway "
            f"({names[:120]}); they were dropped. Check its site config; if it is not ours, "
            "revoke its certificate",
        )
