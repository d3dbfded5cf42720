"""Certificate renewal over the gateway's own MQTT link, run by the cloud's bridge.

A gateway whose certificate has lived two thirds of its life makes a new key, keeps it,
and publishes a CSR on ``cert/renew`` (:class:`~protocol.messages.CertRenewalData`). The
broker let it publish there only with a valid certificate of that gateway, so the topic
says who asks. The cloud signs it under a CN of its own (:meth:`EnrollmentService.renew`,
which adds the CN to the ACL and reloads the broker) and publishes the certificate on
``cert`` (QoS 1). The gateway switches to it, reconnects, and says so on
``cert/in-use/{tag}``, where only a connection made with that certificate may publish
(:mod:`protocol.acl`): then the cloud revokes the one it held before. A renewal that
does not reach the gateway is asked for again: the old certificate stays valid meanwhile.
"""

from __future__ import annotations

import asyncio
import logging

from cloud.errors import CloudError
from cloud.fleet.enrollment import EnrollmentService
from cloud.mqtt_client import MqttClient, MqttConnectionError
from cloud.mqtt_routes import Arrival, Routes, Storage
from protocol import certs, topics
from protocol.clock import Clock
from protocol.messages import (
    CertInUseData,
    CertIssuedData,
    CertRenewalData,
    MessageType,
    make,
)
from protocol.topics import Channel

log = logging.getLogger(__name__)


class RenewalLink:
    """Routes in (stored in the bridge's worker thread) and the certificates out (an
    outlet of the bridge's connection)."""

    def __init__(self, enrollment: EnrollmentService, clock: Clock) -> None:
        self._enrollment = enrollment
        self._clock = clock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due: asyncio.Queue[tuple[str, bytes]] | None = None
        self.issued = 0
        self.refused = 0

    def add_routes(self, routes: Routes) -> None:
        """Renewal requests and in-use reports: best effort, a gateway asks again."""
        routes.add(
            "certificate renewals",
            Channel.CERT_RENEW,
            CertRenewalData,
            self._renewals,
            Storage.BEST_EFFORT,
        )
        routes.add(
            "certificates in use",
            Channel.CERT_IN_USE,
            CertInUseData,
            self._in_use,
            Storage.BEST_EFFORT,
        )

    def _renewals(self, arrivals: list[Arrival[CertRenewalData]]) -> None:
        for a in arrivals:
            try:
                issued = self._enrollment.renew(a.site, a.gateway, a.data.csr_pem)
            except (CloudError, certs.CertificateError) as exc:
                self.refused += 1
                log.warning("renewal of %s/%s refused: %s", a.site, a.gateway, exc)
                continue
            data = CertIssuedData(
                certificate_pem=issued.certificate_pem,
                serial=issued.serial,
                not_after=issued.not_after,
            )
            payload = make(MessageType.CERT_ISSUED, data, ts=self._clock.now())
            self.issued += 1
            self._send(topics.cert(a.site, a.gateway), payload)

    def _in_use(self, arrivals: list[Arrival[CertInUseData]]) -> None:
        for a in arrivals:
            tag = a.where.verb or ""
            try:
                self._enrollment.confirm_in_use(a.site, a.gateway, tag)
            except (CloudError, certs.CertificateError) as exc:
                log.warning("in-use report of %s/%s ignored: %s", a.site, a.gateway, exc)

    def _send(self, topic: str, payload: bytes) -> None:
        loop, due = self._loop, self._due
        if loop is None or due is None or loop.is_closed():
            log.warning("not connected: the certificate for %s is dropped; it asks again", topic)
            return
        loop.call_soon_threadsafe(due.put_nowait, (topic, payload))

    async def run(self, client: MqttClient) -> None:
        """Publish each issued certificate (QoS 1) until the connection ends."""
        self._due = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        try:
            while True:
                topic, payload = await self._due.get()
                try:
                    await client.publish(topic, payload, qos=1)
                except MqttConnectionError:
                    log.warning("lost the broker: the certificate for %s is dropped", topic)
                    raise
                log.info("published a renewed certificate on %s", topic)
        finally:
            self._loop = None
            self._due = None
