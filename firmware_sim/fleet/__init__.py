"""A fleet of simulated site gateways in one asyncio process, for load (``bench/fleet.py``,
``denen-sim fleet``).

Each gateway speaks the real contract (``protocol.topics``, ``protocol.messages``) as the
agent does (``edge/mqtt_link.py``): a persistent MQTT 5 session (``clean_start=False``,
session expiry) with the retained last will ``offline`` and the retained birth
``online``; telemetry every ``telemetry_s`` (QoS 0) with its locks, and its displays at a
clinic; lock events on ``events`` (QoS 1) numbered by each lock's own ``seq``; the
retained, versioned access snapshot taken when newer and reported per lock on
``access/applied`` (QoS 1). A lost connection is retried after a delay drawn uniformly
over a window that doubles per failure (full jitter), so a fleet that lost its broker at
once does not come back in the same second.

Pieces: :mod:`protocol.mqtt5` (the MQTT 5 packets, sans-IO, shared with the cloud),
:mod:`.model` (a gateway, its locks and displays, sans-IO: payloads in, payloads out),
:mod:`.link` (one gateway's session as an :class:`asyncio.Protocol`), :mod:`.fleet` (N
links, the connect ramp, reconnects, one ticker for keepalive, telemetry and a steady
event stream), :mod:`.control` (JSON API), :mod:`.cli` (``denen-sim fleet``).

Why a codec of our own instead of aiomqtt clients on one loop: measured here (2 cores,
Mosquitto 2.0.11 on loopback, 5,000 gateways, each with a will, a retained birth and one
subscription; then 4 QoS 1 lock events per gateway, all at once):

================================  ===================  =================================
per gateway                       aiomqtt 2.5 / paho   own codec + ``asyncio.Protocol``
================================  ===================  =================================
memory (RSS)                      20.5 KB              4.5 KB (model and topics included)
CPU to connect                    1.1-1.7 ms           0.6 ms (birth, will and telemetry
                                                       built with pydantic included)
idle CPU, 5,000 connected         11 % of a core       2 % (paho's per-client misc loop)
QoS 1 publish, fleet-wide         3,500 acked/s        35,000 acked/s
threads                           7                    1
================================  ===================  =================================

aiomqtt would fit 5,000 in memory, but its per-publish cost (paho's packet building and a
future per message) makes the simulator, not the cloud, the bottleneck of an ingest
bench, and its idle timers alone take a tenth of a core that the broker, the cloud and
PostgreSQL need on this machine. The codec is a few hundred lines, sans-IO, and tested by
round trips (``tests/unit/test_mqtt5.py``); firmware_sim needs no MQTT
dependency for it. It leaves out what gateways do not use: QoS 2, AUTH, UNSUBSCRIBE,
topic aliases.

TLS (``--tls-ca/--tls-cert/--tls-key``, :class:`.fleet.FleetTls`) is asyncio's own: an
:class:`ssl.SSLContext` passed as ``ssl=`` to ``loop.create_connection``, mutual as the
production broker asks, with a certificate per gateway (``{site}``/``{gateway}`` in the
paths; a context each, made at its first connect and kept) or one for the whole fleet;
without it the connection is the plain TCP one. It costs the simulator ~300 KB per
gateway instead of 4.5 KB: asyncio's TLS transport (3.11) reads through a 256 KiB buffer
of its own per connection (measured: 294 KB per gateway with one shared certificate, 318
KB with one each; 78 KB with that buffer at 16 KiB), so 5,000 gateways take 1.6 GB. And
CPU: ~1 ms per handshake (TLS 1.3, P-256) plus ~0.7 ms for a gateway's context, so one
core connects ~400 gateways/s, not 500: with TLS the simulator, not the broker, sets the
pace of ``bench/fleet.py``'s connect phase. ``bench/fleet.py --tls`` prints what the
handshakes cost the broker.
"""
