"""The fleet's MQTT side, run by the cloud's bridge (:mod:`cloud.mqtt_bridge`) on its
connection: reports in (status, telemetry, lock events, command replies), commands
(``req/{verb}``, QoS 1) and desired configs (``config``, QoS 1, retained) out.

The services tell the link what is ready (:mod:`cloud.fleet.changes` on the change bus,
from any thread); at each connect it publishes every pending command and every desired
config again (a config is retained and versioned, so publishing it twice is harmless).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from cloud.fleet.changes import CommandReady, ConfigReady
from cloud.fleet.services import FleetServices
from cloud.mqtt_client import MqttClient, MqttConnectionError, PublishRefusedError
from cloud.mqtt_routes import Arrival, Routes, Storage
from protocol.clock import Clock
from protocol.messages import CommandReplyData, LockEventData, StatusData, TelemetryData
from protocol.topics import Channel
from protocol.tracing import traced

log = logging.getLogger(__name__)

RETRY_S = 1.0  # the DB was away while building a message: try it again this much later


@dataclass
class FleetLinkStats:
    commands_published: int = 0
    configs_published: int = 0
    replies_stored: int = 0
    replies_ignored: int = 0  # duplicates, or replies to no command of that gateway


class FleetLink:
    """Routes in (:meth:`add_routes`, stored in the bridge's worker thread) and publishing
    (:meth:`run`, an outlet of the bridge's connection)."""

    def __init__(self, fleet: FleetServices, clock: Clock) -> None:
        self._fleet = fleet
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._commands: dict[str, None] = {}
        self._configs: dict[tuple[str, str], None] = {}
        self._listening_since: float | None = None
        self.stats = FleetLinkStats()

    def listening_since(self) -> float | None:
        """When the current broker connection came up (None: not connected): before a
        gateway's silence can mean anything the cloud must have listened that long."""
        return self._listening_since

    # ------------------------------------------------------------- changes

    def command_ready(self, change: CommandReady) -> None:
        """Subscribed to the change bus: safe from any thread."""
        self._call(self._command_due, change.transaction)

    def config_ready(self, change: ConfigReady) -> None:
        """Subscribed to the change bus: safe from any thread."""
        self._call(self._config_due, (change.site, change.gateway))

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # not connected: everything pending goes out at the next connect
        loop.call_soon_threadsafe(fn, *args)

    def _command_due(self, transaction: str) -> None:
        self._commands[transaction] = None
        if self._wake is not None:
            self._wake.set()

    def _config_due(self, key: tuple[str, str]) -> None:
        self._configs[key] = None
        if self._wake is not None:
            self._wake.set()

    # ---------------------------------------------------------------- ingest

    def add_routes(self, routes: Routes) -> None:
        """Register what the fleet stores from the gateways: births and wills and the lock
        events' health (best effort: the next report repeats them), command replies
        (durable: retried until stored), telemetry (each gateway's newest)."""
        routes.add(
            "gateway statuses", Channel.STATUS, StatusData, self._statuses, Storage.BEST_EFFORT
        )
        routes.add(
            "lock health", Channel.EVENTS, LockEventData, self._lock_events, Storage.BEST_EFFORT
        )
        routes.add(
            "command replies", Channel.RESPONSE, CommandReplyData, self._replies, Storage.DURABLE
        )
        routes.add(
            "gateway health", Channel.TELEMETRY, TelemetryData, self._telemetry, Storage.LATEST
        )

    def _statuses(self, arrivals: list[Arrival[StatusData]]) -> None:
        self._fleet.health.record_status_many([(a.site, a.gateway, a.data) for a in arrivals])
        self._guarded(self._fleet.rollouts.step_all)

    def _lock_events(self, arrivals: list[Arrival[LockEventData]]) -> None:
        self._fleet.health.record_events([(a.site, a.gateway, a.data) for a in arrivals])

    def _replies(self, arrivals: list[Arrival[CommandReplyData]]) -> None:
        """A reply that cannot be stored raises :class:`SQLAlchemyError`, so the bridge
        retries the batch before acknowledging it."""
        for a in arrivals:
            site, gateway, verb, reply = a.site, a.gateway, a.where.verb or "", a.data
            try:
                with traced(reply.transaction):  # the command's id, end to end
                    stored = self._fleet.commands.record_reply(site, gateway, verb, reply)
            except SQLAlchemyError:
                raise
            except Exception:  # a bug must not stop the bridge; the reply is dropped
                log.exception("could not record a %s reply from %s/%s", verb, site, gateway)
                continue
            if stored:
                self.stats.replies_stored += 1
            else:
                self.stats.replies_ignored += 1
        self._guarded(self._fleet.rollouts.step_all)

    def _telemetry(self, arrivals: list[Arrival[TelemetryData]]) -> None:
        """Then move rollouts whose health gate the reports may have decided."""
        self._fleet.health.record_telemetry_many([(a.site, a.gateway, a.data) for a in arrivals])
        self._guarded(self._fleet.rollouts.step_all)

    @staticmethod
    def _guarded(fn: Callable[..., object], *args: object) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("fleet ingest failed in %s", getattr(fn, "__name__", fn))

    # ------------------------------------------------------------ publishing

    async def run(self, client: MqttClient) -> None:
        """Publish what is pending now, then whatever becomes ready, until cancelled (the
        bridge's connection ends) or the broker is lost (:class:`MqttConnectionError`)."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._commands.clear()
        self._configs.clear()
        self._listening_since = self._clock.now()
        try:
            for transaction in await asyncio.to_thread(self._fleet.commands.pending):
                self._command_due(transaction)
            for key in await asyncio.to_thread(self._fleet.twins.configured):
                self._config_due(key)
            while True:
                await self._wake.wait()
                self._wake.clear()
                commands, self._commands = list(self._commands), {}
                configs, self._configs = list(self._configs), {}
                for transaction in commands:
                    await self._publish(
                        self._send_command(client, transaction),
                        functools.partial(self._command_due, transaction),
                    )
                for key in configs:
                    await self._publish(
                        self._send_config(client, key), functools.partial(self._config_due, key)
                    )
        finally:
            self._listening_since = None

    @staticmethod
    async def _publish(send: Awaitable[None], retry: Callable[[], None]) -> None:
        try:
            await send
        except MqttConnectionError:
            retry()  # goes out after the reconnect
            raise
        except PublishRefusedError:  # an ACL: a command stays pending, sent at the next connect
            log.exception("the broker refused a fleet message")
        except SQLAlchemyError:
            log.exception("could not build a fleet message; retrying in %.0f s", RETRY_S)
            asyncio.get_running_loop().call_later(RETRY_S, retry)
        except Exception:  # one bad message must not stop the others
            log.exception("could not publish a fleet message")

    async def _send_command(self, client: MqttClient, transaction: str) -> None:
        message = await asyncio.to_thread(self._fleet.commands.message, transaction)
        if message is None:
            return  # sent, answered or expired meanwhile
        topic, payload = message
        await client.publish(topic, payload, qos=1)
        await asyncio.to_thread(self._fleet.commands.mark_sent, transaction)
        self.stats.commands_published += 1
        log.info("published command %s on %s", transaction, topic)

    async def _send_config(self, client: MqttClient, key: tuple[str, str]) -> None:
        message = await asyncio.to_thread(self._fleet.twins.config_message, *key)
        if message is None:
            return
        topic, payload = message
        await client.publish(topic, payload, qos=1, retain=True)
        self.stats.configs_published += 1
        log.info("published the desired config of %s/%s", *key)
