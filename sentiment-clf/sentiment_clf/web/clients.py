"""Who sent an answer: an operator's API key, else the address it came from.

* ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``: the key is hashed (sha256)
  and looked up among ``TRUSTED_API_KEYS``; an unknown key is a 401. The key itself
  is neither stored nor logged.
* Otherwise the client is its IP address: the connection's peer, unless that peer
  is one of ``TRUSTED_PROXIES``; then the right-most ``X-Forwarded-For`` address
  that is not itself a trusted proxy (with or without a port). ``X-Forwarded-For``
  from any other peer is ignored (anyone can write it). IPv6 clients are grouped by /64, the block one
  subscriber usually holds.

The database gets an opaque id: ``key:<name>``, or ``ip:`` and a truncated sha256
of the address (or /64), so no address is stored as such.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
from functools import lru_cache

from flask import current_app, request
from werkzeug.exceptions import Unauthorized

from sentiment_clf.feedback import Client, hash_key, parse_trusted_keys, parse_trusted_proxies

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=8)
def trusted_keys(setting: str) -> dict[str, str]:
    return parse_trusted_keys(setting)


@lru_cache(maxsize=8)
def trusted_proxies(setting: str) -> tuple[Network, ...]:
    return parse_trusted_proxies(setting)


def presented_key() -> str | None:
    """The API key the request carries, if any."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    return request.headers.get("X-API-Key")


def identify() -> Client:
    """The client of the current request (a 401 for an API key that is not trusted)."""
    key = presented_key()
    if key is not None:
        digest = hash_key(key)
        for known, name in trusted_keys(current_app.config["TRUSTED_API_KEYS"]).items():
            if hmac.compare_digest(known, digest):
                return Client(f"key:{name}", trusted=True)
        raise Unauthorized("unknown API key: leave it out to answer as an anonymous client, or ask the "
                           "operator for a key")
    return Client(address_id(client_address()), trusted=False)


def _parse(value: str | None) -> Address | None:
    """An address as proxies write it: ``198.51.100.1``, ``2001:db8::1``, and either with a
    port (``198.51.100.1:41000``, ``[2001:db8::1]:41000``), as some proxies add it."""
    text = (value or "").strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # IPv4 and a port (an IPv6 address holds at least two)
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address() -> str:
    """The client's address as text (an IPv6 client's /64), or "unknown"."""
    peer = _parse(request.remote_addr)
    if peer is None:
        return "unknown"
    proxies = trusted_proxies(current_app.config["TRUSTED_PROXIES"])
    address: Address = peer
    if any(peer in network for network in proxies):
        forwarded = ",".join(request.headers.getlist("X-Forwarded-For")).split(",")
        for entry in reversed(forwarded):  # the right-most entries were written by our proxies
            hop = _parse(entry)
            if hop is None:
                break  # not an address: nothing to the left of it can be trusted
            address = hop
            if not any(hop in network for network in proxies):
                break
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def address_id(address: str) -> str:
    """The stored id of an address: a truncated sha256, not the address."""
    return "ip:" + hashlib.sha256(address.encode("ascii", "replace")).hexdigest()[:16]
