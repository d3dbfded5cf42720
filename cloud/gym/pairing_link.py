"""Lock pairing's MQTT side, run by the cloud's bridge: the pairing key out (retained on
:data:`protocol.topics.PAIRING_KEY`, again at each connect), sealed lock keys in (a durable
route on ``pairing``, :mod:`cloud.gym.lock_keys`), and each delivery's answer out on the
sender's ``pairing/result`` (QoS 1, not retained: the pairing command waits for it).

An answer due while the bridge is disconnected is not kept: the command that waited for it
has said the keys are pending and how to check, and what was stored stays stored.
"""

from __future__ import annotations

import asyncio
import logging

from cloud.gym.lock_keys import KeysAnswer, KeysArrival, LockKeyService
from cloud.mqtt_client import MqttClient, PublishRefusedError
from cloud.mqtt_routes import Arrival, Routes, Storage
from protocol import topics
from protocol.clock import Clock
from protocol.messages import LockKeysData, MessageType, PairingKeyData, make
from protocol.topics import Channel

log = logging.getLogger(__name__)

LOCK_KEYS_ROUTE = "lock keys"


class PairingLink:
    """The pairing key and the answers to pairings (an :class:`~cloud.mqtt_routes.Outlet`)."""

    def __init__(self, keys: LockKeyService, clock: Clock) -> None:
        self._keys = keys
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._answers: asyncio.Queue[KeysAnswer] = asyncio.Queue()

    def add_routes(self, routes: Routes) -> None:
        """Register the sealed lock keys: durable, answered once stored."""

        def lock_keys(arrivals: list[Arrival[LockKeysData]]) -> int:
            answers = self._keys.store(
                [KeysArrival(a.site, a.gateway, a.id, a.data) for a in arrivals]
            )
            self._answer(answers)
            return sum(answer.result.stored for answer in answers)

        routes.add(LOCK_KEYS_ROUTE, Channel.PAIRING, LockKeysData, lock_keys, Storage.DURABLE)

    def _answer(self, answers: list[KeysAnswer]) -> None:
        """Called in the bridge's worker thread once the keys are committed."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        for answer in answers:
            loop.call_soon_threadsafe(self._answers.put_nowait, answer)

    async def run(self, client: MqttClient) -> None:
        """The pairing key now, then each answer as it is due, until the connection ends."""
        self._loop = asyncio.get_running_loop()
        now = self._clock.now()
        key = PairingKeyData(public_key=self._keys.public_key.hex())
        await client.publish(
            topics.PAIRING_KEY, make(MessageType.PAIRING_KEY, key, ts=now), qos=1, retain=True
        )
        while True:
            answer = await self._answers.get()
            payload = make(MessageType.LOCK_KEYS_RESULT, answer.result, ts=self._clock.now())
            try:
                await client.publish(
                    topics.pairing_result(answer.site, answer.gateway), payload, qos=1
                )
            except PublishRefusedError:  # an ACL: the waiting command says the keys are pending
                log.exception(
                    "the answer to a pairing at %s/%s was refused", answer.site, answer.gateway
                )
