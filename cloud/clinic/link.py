"""The clinic's MQTT side, run by the cloud's bridge (:mod:`cloud.mqtt_bridge`): each
clinic site's display and clinic states out (QoS 1, retained) right after every change
(:class:`~cloud.clinic.publish.ClinicChanged` on the change bus), every site's again at
each connect; and, as a route, the agents' check-ins and staff actions in, applied once
each by envelope id (:mod:`cloud.clinic.agent_sync`)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from cloud.clinic.agent_sync import AgentSyncService, ClinicEvent
from cloud.clinic.publish import ClinicChanged, ClinicPublisher
from cloud.mqtt_client import MqttClient, MqttConnectionError, PublishRefusedError
from cloud.mqtt_routes import Arrival, Routes, Storage
from protocol import topics
from protocol.clock import Clock
from protocol.messages import CheckinData, ClinicActionData, MessageType, make
from protocol.topics import Channel

log = logging.getLogger(__name__)


def add_clinic_routes(routes: Routes, agent_sync: AgentSyncService) -> None:
    """Register the clinic agents' events: durable (retried until stored, like lock events),
    check-ins and staff actions together, in arrival order, per gateway."""

    # Any: the route takes two message types, which a list of one type cannot say
    def clinic_events(arrivals: list[Arrival[Any]]) -> None:
        by_gateway: dict[tuple[str, str], list[tuple[str, ClinicEvent]]] = {}
        for a in arrivals:
            by_gateway.setdefault((a.site, a.gateway), []).append((a.id, a.data))
        for (site, gateway), items in by_gateway.items():
            agent_sync.apply(site, gateway, items)

    routes.add(
        "clinic events",
        Channel.EVENTS,
        (CheckinData, ClinicActionData),
        clinic_events,
        Storage.DURABLE,
    )


@dataclass
class ClinicLinkStats:
    states_published: int = 0


class ClinicLink:
    """Publishes clinic and display states (an :class:`~cloud.mqtt_routes.Outlet`)."""

    def __init__(self, publisher: ClinicPublisher, clock: Clock) -> None:
        self._publisher = publisher
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        # sites to publish: a set, so a long broker outage holds each site once
        self._clinic_pending: set[str] = set()
        self._clinic_dirty = asyncio.Event()
        self.stats = ClinicLinkStats()

    def clinic_changed(self, change: ClinicChanged) -> None:
        """Subscribed to the change bus: safe to call from any thread; the site's clinic
        and display states go out right away (no batching delay)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # never connected yet: every clinic state is published at the connect
        loop.call_soon_threadsafe(self._clinic_due, change.site)

    def _clinic_due(self, site: str) -> None:
        self._clinic_pending.add(site)
        self._clinic_dirty.set()

    async def run(self, client: MqttClient) -> None:
        """Every site's states now, then each changed site's, until the connection ends."""
        self._loop = asyncio.get_running_loop()
        for site, _gateway in await asyncio.to_thread(self._publisher.sites):
            self._clinic_due(site)
        await self._publish_clinics(client)

    async def _publish_clinics(self, client: MqttClient) -> None:
        """Publish a changed clinic site's display and clinic states as soon as it changed:
        a staff call should reach the waiting room's display at once."""
        while True:
            await self._clinic_dirty.wait()
            self._clinic_dirty.clear()
            pending, self._clinic_pending = self._clinic_pending, set()
            for site in sorted(pending):
                try:
                    await self._publish_clinic(client, site)
                except MqttConnectionError:
                    self._clinic_due(site)  # goes out after the reconnect
                    raise
                except PublishRefusedError:  # an ACL: not again before the next change
                    log.exception("the broker refused the clinic state of %s", site)
                except SQLAlchemyError:  # the DB is away: try this site again shortly
                    log.exception("could not build the clinic state of %s; retrying", site)
                    asyncio.get_running_loop().call_later(1.0, self._clinic_due, site)
                except Exception:  # a bad site must not stop the others
                    log.exception(
                        "could not build the clinic state of %s (a bug): its displays keep the "
                        "last state until the next change or reconnect",
                        site,
                    )

    async def _publish_clinic(self, client: MqttClient, site: str) -> None:
        docs = await asyncio.to_thread(self._publisher.documents, site)
        now = self._clock.now()
        display = make(MessageType.DISPLAY_STATE, docs.display, ts=now)
        await client.publish(topics.display(site, docs.gateway), display, qos=1, retain=True)
        state = make(MessageType.CLINIC_STATE, docs.state, ts=now)
        await client.publish(topics.clinic(site, docs.gateway), state, qos=1, retain=True)
        self.stats.states_published += 1
        log.debug("published clinic state v%d to %s/%s", docs.state.version, site, docs.gateway)
