"""A freshly paired lock's PIN key and offline secret, sent straight to the cloud.

The pairing command speaks as its gateway (the certificate and broker of the site config,
a client id of its own so the running agent's session is left alone). Before the lock is
touched it fetches the cloud's pairing key (retained on
:data:`protocol.topics.PAIRING_KEY`): with no way to the cloud, nothing is changed on the
lock. After pairing it seals the two keys to that key (:mod:`protocol.sealed`), publishes
them on the gateway's ``pairing`` topic (MQTT 5, QoS 1, not retained) and waits for the
cloud's answer on ``pairing/result``. The keys live in memory only: no file, no temp file.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from types import TracebackType

import aiomqtt

from edge.config import SiteConfig
from edge.mqtt_link import client_tls
from protocol import topics
from protocol.clock import Clock
from protocol.errors import DenenError, MessageError
from protocol.ids import uuid7
from protocol.messages import (
    LockKeysData,
    LockKeysResult,
    MessageType,
    PairingKeyData,
    make,
    parse,
)
from protocol.sealed import CloudLockKeys, associated_data, seal

KEY_WAIT_S = 15.0
ANSWER_WAIT_S = 30.0


class CloudKeysError(DenenError):
    """The cloud could not be reached or did not take the keys; the message says why."""


class CloudLink:
    """This gateway's connection for one pairing (an async context manager): the cloud's
    pairing key once entered, then :meth:`send`."""

    def __init__(
        self,
        config: SiteConfig,
        clock: Clock,
        *,
        key_wait_s: float = KEY_WAIT_S,
        answer_wait_s: float = ANSWER_WAIT_S,
    ) -> None:
        self._config = config
        self._clock = clock
        self._key_wait_s = key_wait_s
        self._answer_wait_s = answer_wait_s
        self._where = f"{config.mqtt.host}:{config.mqtt.port}"
        self._client = aiomqtt.Client(
            config.mqtt.host,
            config.mqtt.port,
            identifier=f"{config.client_id}-pairing",
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=client_tls(config),
            timeout=config.mqtt.timeout_s,
        )
        self._pairing_key: asyncio.Future[bytes] | None = None
        self._answers: dict[str, asyncio.Future[LockKeysResult]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> CloudLink:
        loop = asyncio.get_running_loop()
        self._pairing_key = loop.create_future()
        cfg = self._config
        try:
            await self._client.__aenter__()
        except (aiomqtt.MqttError, OSError, ssl.SSLError) as exc:
            raise CloudKeysError(
                f"the broker {self._where} did not take this gateway's connection ({exc}); "
                "pairing sends the lock's keys to the cloud through it, so the lock was not "
                "touched: check with `denen provision doctor`, then pair again"
            ) from None
        try:
            await self._client.subscribe(topics.PAIRING_KEY, qos=1)
            await self._client.subscribe(topics.pairing_result(cfg.site, cfg.gateway), qos=1)
            self._reader = asyncio.create_task(self._read(), name="pairing-cloud-rx")
            async with asyncio.timeout(self._key_wait_s):
                await asyncio.shield(self._pairing_key)
        except TimeoutError:
            await self._close()
            raise CloudKeysError(
                f"the cloud's pairing key did not arrive from {self._where} within "
                f"{self._key_wait_s:.0f} s (is the cloud running, with "
                "DENEN_CLOUD_PAIRING_KEY_PATH set?); the lock was not touched: pair again "
                "once city operations confirm the cloud is up"
            ) from None
        except aiomqtt.MqttError as exc:
            await self._close()
            raise CloudKeysError(
                f"the broker {self._where} dropped the connection ({exc}); the lock was not "
                "touched: pair again"
            ) from None
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._reader
            self._reader = None
        with contextlib.suppress(aiomqtt.MqttError, OSError):
            await self._client.__aexit__(None, None, None)

    async def _read(self) -> None:
        cfg = self._config
        result_topic = topics.pairing_result(cfg.site, cfg.gateway)
        async for message in self._client.messages:
            if not isinstance(message.payload, bytes | bytearray):
                continue
            try:
                _envelope, data = parse(message.payload)
            except MessageError:
                continue  # not ours to judge: the cloud wrote it, a newer one may follow
            topic = message.topic.value
            key = self._pairing_key
            if topic == topics.PAIRING_KEY and isinstance(data, PairingKeyData):
                if key is not None and not key.done():
                    key.set_result(bytes.fromhex(data.public_key))
            elif topic == result_topic and isinstance(data, LockKeysResult):
                waiting = self._answers.get(data.request_id)
                if waiting is not None and not waiting.done():
                    waiting.set_result(data)

    async def send(self, lock_id: str, keys: CloudLockKeys) -> LockKeysResult | None:
        """Seal and publish ``keys``; the cloud's answer, or None when none came within the
        wait (the keys may still be on their way). :class:`CloudKeysError` when the broker
        did not take them."""
        if self._pairing_key is None or not self._pairing_key.done():
            raise CloudKeysError("send() needs the cloud's pairing key: enter the link first")
        cfg = self._config
        sealed = seal(
            self._pairing_key.result(), keys, associated_data(cfg.site, cfg.gateway, lock_id)
        )
        now = self._clock.now()
        request_id = uuid7(int(now * 1000))
        data = LockKeysData(lock_id=lock_id, sealed=base64.b64encode(sealed).decode())
        answer: asyncio.Future[LockKeysResult] = asyncio.get_running_loop().create_future()
        self._answers[request_id] = answer
        try:
            await self._client.publish(
                topics.pairing(cfg.site, cfg.gateway),
                make(MessageType.LOCK_KEYS, data, ts=now, message_id=request_id),
                qos=1,
            )
        except aiomqtt.MqttError as exc:
            raise CloudKeysError(
                f"the broker {self._where} did not take the lock's keys ({exc})"
            ) from None
        try:
            async with asyncio.timeout(self._answer_wait_s):
                return await answer
        except TimeoutError:
            return None
        finally:
            del self._answers[request_id]
