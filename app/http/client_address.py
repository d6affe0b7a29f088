"""The client's address: what fair shares (admission.py) and the request log name.

Behind the nginx front, nginx has already resolved it (a peer in TRUSTED_PROXIES gives
it by X-Forwarded-For, with real_ip_recursive: the right-most address that is not a
trusted proxy) and sends it as the one X-Forwarded-For over its unix socket. gunicorn
alone (FRONT=none) resolves it here the same way: a header from anyone else is anyone's
word and is ignored.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from flask import current_app, g, request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address() -> str:
    if "client_address" not in g:
        peer = request.remote_addr or ""
        forwarded = request.headers.get("X-Forwarded-For", "")
        if not peer or peer.startswith("unix:"):  # nginx, over its unix socket: resolved there
            g.client_address = forwarded.split(",")[0].strip()
        else:
            g.client_address = real_address(peer, forwarded, trusted_networks(current_app.extensions["settings"]))
    return g.client_address


def trusted_networks(settings) -> tuple[Network, ...]:
    return _networks(tuple(settings.trusted_proxies))


@functools.cache
def _networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(proxy, strict=False) for proxy in proxies)


def real_address(peer: str, forwarded_for: str, trusted: Iterable[Network]) -> str:
    """nginx's realip with real_ip_recursive on: from the peer back along X-Forwarded-For
    while each hop is a trusted proxy; the first one that is not is the client."""
    trusted = tuple(trusted)
    address = peer
    hops = [hop.strip() for hop in forwarded_for.split(",")] if forwarded_for.strip() else []
    while _is_trusted(address, trusted) and hops:
        hop = hops.pop()
        try:
            address = str(ipaddress.ip_address(hop))
        except ValueError:
            break  # not an address: the last trusted hop is as far as the chain can be believed
    return address


def _is_trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in trusted)
