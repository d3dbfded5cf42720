"""The MQTT topic tree (DESIGN.md, "MQTT contract (v1)"): builders and one parser.

Nothing else in Denen writes a topic string by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from protocol.errors import TopicError
from protocol.ids import is_slug

ROOT = "denen/v1"
BROADCAST_ANNOUNCE = f"{ROOT}/broadcast/announce"
# the cloud's public key lock pairings seal to (protocol.sealed); retained, cloud-written
PAIRING_KEY = f"{ROOT}/broadcast/pairing-key"
CLOUD_SHARE_GROUP = "cloud"


class Channel(StrEnum):
    """The last part(s) of a gateway topic."""

    STATUS = "status"
    TELEMETRY = "telemetry"
    EVENTS = "events"
    ACCESS = "access"
    ACCESS_APPLIED = "access/applied"
    DISPLAY = "display"
    CLINIC = "clinic"
    CONFIG = "config"
    PAIRING = "pairing"  # a paired lock's keys, sealed to the cloud (gateway -> cloud)
    PAIRING_RESULT = "pairing/result"  # the cloud's answer (cloud -> gateway)
    REQUEST = "req"
    RESPONSE = "res"
    CERT_RENEW = "cert/renew"  # up: a CSR for the gateway's next certificate
    CERT = "cert"  # down: the certificate the cloud signed for it
    CERT_IN_USE = "cert/in-use"  # up, with the certificate's tag: only it may publish here


_WITH_VERB = (Channel.REQUEST, Channel.RESPONSE, Channel.CERT_IN_USE)


@dataclass(frozen=True, slots=True)
class GatewayTopic:
    """A parsed gateway topic: which site, which gateway, which channel (and verb)."""

    site: str
    gateway: str
    channel: Channel
    verb: str | None = None

    def __str__(self) -> str:
        return gateway_topic(self.site, self.gateway, self.channel, self.verb)


def _check_slug(kind: str, value: str) -> None:
    if not is_slug(value):
        raise TopicError(f"{kind} id {value!r} is not a slug [a-z0-9-]{{1,40}}")


def gateway_topic(site: str, gateway: str, channel: Channel, verb: str | None = None) -> str:
    """Build ``denen/v1/{site}/{gw}/{channel}[/{verb}]``."""
    _check_slug("site", site)
    _check_slug("gateway", gateway)
    if channel in _WITH_VERB:
        if verb is None:
            raise TopicError(f"channel {channel.value!r} needs a verb")
        _check_slug("verb", verb)
        return f"{ROOT}/{site}/{gateway}/{channel.value}/{verb}"
    if verb is not None:
        raise TopicError(f"channel {channel.value!r} takes no verb")
    return f"{ROOT}/{site}/{gateway}/{channel.value}"


def status(site: str, gateway: str) -> str:
    return gateway_topic(site, gateway, Channel.STATUS)


def telemetry(site: str, gateway: str) -> str:
    return gateway_topic(site, gateway, Channel.TELEMETRY)


def events(site: str, gateway: str) -> str:
    return gateway_topic(site, gateway, Channel.EVENTS)


def access(site: str, gateway: str) -> str:
    return gateway_topic(site, gateway, Channel.ACCESS)


def access_applied(site: str, gateway: str) -> str:
    return gateway_topic(site, gateway, Channel.ACCESS_APPLIED)


def display(site: str, gateway: str) -> str:
    return gateway_topic(site, gateway, Channel.DISPLAY)


def clinic(site: str, gateway: str) -> str:
    return gateway_topic(site, gateway, Channel.CLINIC)


def config(site: str, gateway: str) -> str:
    return gateway_topic(site, gateway, Channel.CONFIG)


def pairing(site: str, gateway: str) -> str:
    return gateway_topic(site, gateway, Channel.PAIRING)


def pairing_result(site: str, gateway: str) -> str:
    return gateway_topic(site, gateway, Channel.PAIRING_RESULT)


def request_subscription(site: str, gateway: str) -> str:
    """The filter a gateway subscribes with for every command to it: ``…/req/+``."""
    _check_slug("site", site)
    _check_slug("gateway", gateway)
    return f"{ROOT}/{site}/{gateway}/{Channel.REQUEST.value}/+"


def request(site: str, gateway: str, verb: str) -> str:
    return gateway_topic(site, gateway, Channel.REQUEST, verb)


def response(site: str, gateway: str, verb: str) -> str:
    return gateway_topic(site, gateway, Channel.RESPONSE, verb)


def cert_renew(site: str, gateway: str) -> str:
    return gateway_topic(site, gateway, Channel.CERT_RENEW)


def cert(site: str, gateway: str) -> str:
    return gateway_topic(site, gateway, Channel.CERT)


def cert_in_use(site: str, gateway: str, tag: str) -> str:
    """Where a gateway says it is connected with the certificate ``tag``; the broker's ACL
    lets no other certificate of the gateway publish here (:mod:`protocol.acl`)."""
    return gateway_topic(site, gateway, Channel.CERT_IN_USE, tag)


def cloud_subscription(channel: Channel, *, shared: bool = True) -> str:
    """The filter the cloud subscribes with for one up channel of every gateway.

    Shared (``$share/cloud/…``) so any number of cloud workers split the load.
    """
    if channel in _WITH_VERB:
        flt = f"{ROOT}/+/+/{channel.value}/+"
    else:
        flt = f"{ROOT}/+/+/{channel.value}"
    return f"$share/{CLOUD_SHARE_GROUP}/{flt}" if shared else flt


def parse(topic: str) -> GatewayTopic:
    """Parse a gateway topic; raise :class:`TopicError` for anything else."""
    parts = topic.split("/")
    if len(parts) < 5 or f"{parts[0]}/{parts[1]}" != ROOT:
        raise TopicError(f"{topic!r} is not under {ROOT}/{{site}}/{{gw}}/")
    site, gateway, rest = parts[2], parts[3], parts[4:]
    _check_slug("site", site)
    _check_slug("gateway", gateway)
    joined = "/".join(rest)
    for with_verb in _WITH_VERB:
        head = with_verb.value.split("/")
        if rest[: len(head)] == head:
            if len(rest) != len(head) + 1:
                raise TopicError(f"{topic!r}: {with_verb.value} needs exactly one verb")
            _check_slug("verb", rest[-1])
            return GatewayTopic(site, gateway, with_verb, rest[-1])
    try:
        channel = Channel(joined)
    except ValueError:
        raise TopicError(f"{topic!r}: unknown channel {joined!r}") from None
    return GatewayTopic(site, gateway, channel)
