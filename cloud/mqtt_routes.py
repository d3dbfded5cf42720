"""What each domain takes from the broker and sends to it, as the MQTT bridge sees it.

The bridge (:mod:`cloud.mqtt_bridge`) is connection, batching and acknowledgement only. A
domain registers a :class:`Route` for each (channel, message type) it stores — the fleet
its statuses, telemetry, lock events and command replies (:mod:`cloud.fleet.link`), the
gym its lock events, applied versions and the locks' part of telemetry
(:mod:`cloud.gym.link`), the clinic its check-ins and staff actions
(:mod:`cloud.clinic.link`) — and hands the bridge an :class:`Outlet` for what it
publishes. The composition root (:func:`cloud.app.create_app`) wires them.

A route says how its messages are stored:

========== ============================================================================
durable     in the batch's turn; a database failure makes the bridge retry the whole
            batch, and nothing of it is acknowledged before it is stored (lock events,
            command replies, clinic events)
best effort in the batch's turn; a failure is logged and the messages dropped, as the
            next report repeats them (births and wills, applied versions)
latest      not batched with the others: only each gateway's newest message is kept and
            stored on a path of its own, between batches (telemetry, QoS 0)
========== ============================================================================

Every message's site and gateway come from its topic, which the broker authenticated
(:class:`Arrival`); a route's store is called with the arrivals of one batch, in arrival
order, in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel

from cloud.mqtt_client import MqttClient
from protocol.topics import Channel, GatewayTopic

M = TypeVar("M", bound=BaseModel)


class Storage(Enum):
    """How a route's messages are stored (see the module's table)."""

    DURABLE = "durable"
    BEST_EFFORT = "best effort"
    LATEST = "latest"


@dataclass(frozen=True, slots=True)
class Arrival(Generic[M]):
    """One message as it arrived: the site and gateway of its topic, its envelope id and
    its data."""

    where: GatewayTopic
    id: str
    data: M

    @property
    def site(self) -> str:
        return self.where.site

    @property
    def gateway(self) -> str:
        return self.where.gateway


Store = Callable[[list[Arrival[Any]]], int | None]
"""Stores one batch's arrivals of a route; may return how many were new (for the stats)."""


@dataclass(frozen=True, slots=True)
class Route:
    """Messages of the types ``kinds`` on ``channel`` go to ``store``, together and in
    arrival order (a clinic's check-ins and staff actions are one story)."""

    name: str  # in logs and stats: "lock events (gym)"
    channel: Channel
    kinds: tuple[type[BaseModel], ...]
    store: Store
    storage: Storage


@dataclass
class Routes:
    """Every route of one cloud process, in registration order (the order in which a
    batch's routes are stored)."""

    routes: list[Route] = field(default_factory=list)

    def add(
        self,
        name: str,
        channel: Channel,
        kinds: type[M] | tuple[type[M], ...],
        store: Callable[[list[Arrival[M]]], int | None],
        storage: Storage,
    ) -> None:
        """Send the messages of type ``kinds`` (one type or several) arriving on
        ``channel`` to ``store``."""
        types = kinds if isinstance(kinds, tuple) else (kinds,)
        self.routes.append(Route(name, channel, types, store, storage))

    def channels(self) -> tuple[Channel, ...]:
        """The channels to subscribe to, each once."""
        return tuple(dict.fromkeys(route.channel for route in self.routes))

    def of(self, channel: Channel, kind: type[BaseModel]) -> Sequence[Route]:
        """The routes of a message of type ``kind`` on ``channel`` (none: it is dropped as
        out of place)."""
        return [r for r in self.routes if r.channel is channel and kind in r.kinds]

    def table(self) -> dict[tuple[Channel, type[BaseModel]], tuple[Route, ...]]:
        """:meth:`of` for every (channel, type) that has routes, looked up once per message."""
        keys = {(r.channel, kind) for r in self.routes for kind in r.kinds}
        return {key: tuple(self.of(*key)) for key in keys}


class Outlet(Protocol):
    """What a domain publishes: run on each connection of the bridge, it publishes what is
    due at the connect (everything retained, anew) and then whatever becomes ready, until
    cancelled or the connection is lost (:class:`~cloud.mqtt_client.MqttConnectionError`)."""

    async def run(self, client: MqttClient) -> None: ...
