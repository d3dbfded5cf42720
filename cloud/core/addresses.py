"""Who is calling: the client's address and scheme, as login throttling, booking limits
and check-in limits count them and as cookies are marked ``Secure``.

The TCP peer is the client, unless the peer is one of the deployment's reverse proxies
(``DENEN_CLOUD_TRUSTED_PROXIES``, addresses or networks): then the client is the nearest
address in ``X-Forwarded-For`` that is not a proxy of ours (a client can write anything at
the front of that header; only what our proxies appended counts), and the scheme is the
proxy's ``X-Forwarded-Proto``. From any other peer both headers are ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address

Networks = Sequence[IPv4Network | IPv6Network]


def is_proxy(address: str, proxies: Networks) -> bool:
    """Whether ``address`` is one of the deployment's reverse proxies."""
    try:
        ip = ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(peer: str | None, forwarded_for: str | None, proxies: Networks) -> str:
    """The client's address (see the module's docstring)."""
    address = peer or "unknown"
    if not proxies or not forwarded_for or not is_proxy(address, proxies):
        return address
    for hop in reversed(forwarded_for.split(",")):
        if not is_proxy(hop, proxies):
            return hop.strip() or address
    return address


def client_scheme(
    peer: str | None, scheme: str, forwarded_proto: str | None, proxies: Networks
) -> str:
    """``https`` or ``http`` as the browser sees it."""
    if peer is not None and forwarded_proto and is_proxy(peer, proxies):
        proto = forwarded_proto.split(",")[0].strip().lower()
        if proto in ("http", "https"):
            return proto
    return scheme
