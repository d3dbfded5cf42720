"""Close a gateway's open broker connection, right after its certificate was revoked.

Mosquitto checks the CRL at the TLS handshake only: a connection made before the
revocation stays open. The reloaded ACL leaves it nothing to read or write, but it is
still there, and its owner would not even notice. So the cloud takes its client id: the
broker allows one connection per client id and closes the older one when a CONNECT comes
with it ("Client … already connected, closing old connection", measured on 2.0.11, also
when the two connections have different usernames). The cloud connects with the gateway's
client id, a clean start and no session, and leaves at once: the old connection is
closed, its session (subscriptions, whatever was queued for it) discarded, and its
reconnect fails the TLS handshake against the new CRL.

Ordering: call this after the broker was sent SIGHUP. Mosquitto handles the signal in its
main loop between two rounds of network events, and this CONNECT needs several rounds
after the signal (TCP, then the TLS handshake), so it is handled after the reload.

Never after a renewal: there the connection holding the client id is the gateway's own,
made with its new certificate.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from cloud.mqtt_client import Endpoint, MqttClient, MqttError, tls_context
from cloud.settings import CloudSettings
from protocol.ids import gateway_client_id

log = logging.getLogger(__name__)

KICK_TIMEOUT_S = 10.0


async def kick(settings: CloudSettings, site: str, gateway: str) -> bool:
    """Close ``site``/``gateway``'s connection, if any; False if the broker was unreachable."""
    if not settings.mqtt_enabled:
        return False
    tls = None
    if settings.mqtt_tls_ca is not None:
        tls = tls_context(settings.mqtt_tls_ca, settings.mqtt_tls_cert, settings.mqtt_tls_key)
    endpoint = Endpoint(
        settings.mqtt_host,
        settings.mqtt_port,
        gateway_client_id(site, gateway),
        tls=tls,
        clean_start=True,
        session_expiry_s=0,
        connect_timeout_s=KICK_TIMEOUT_S,
    )
    try:
        async with MqttClient(endpoint, lambda _delivery: None):
            pass
    except MqttError as exc:
        log.error(  # noqa: TRY400 - expected failure, no traceback
            "could not close the broker connection of %s/%s: %s; it can do nothing (ACL) "
            "but stays open until it drops",
            site,
            gateway,
            exc,
        )
        return False
    log.warning("closed the broker connection of %s/%s, if it had one", site, gateway)
    return True


def kick_blocking(settings: CloudSettings, site: str, gateway: str) -> bool:
    """:func:`kick` from synchronous code (an API handler's thread, the CLI), on a thread
    of its own so that it also works where an event loop is already running."""
    with ThreadPoolExecutor(1, thread_name_prefix="kick") as pool:
        return pool.submit(asyncio.run, kick(settings, site, gateway)).result()
