"""The client address a trusted proxy forwards (`X-Forwarded-For`).

uvicorn's ProxyHeadersMiddleware puts it in the ASGI scope of HTTP requests;
collab's own WebSocket transport (collab.api.socket) builds no scope, so it
applies the same rule from the same uvicorn options (`proxy_headers`,
`forwarded_allow_ips`): only a peer that is a trusted proxy may name the
client, and the client is the right-most address in the header that is not
itself a trusted proxy. Used for log lines and refusal records, never for access.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """Which peers may name the client: literal hosts, networks, or `*`."""

    __slots__ = ("_hosts", "_is_everyone", "_networks")

    def __init__(self, allowed: str | Iterable[str]) -> None:
        items = allowed.split(",") if isinstance(allowed, str) else list(allowed)
        entries = [item.strip() for item in items if item.strip()]
        self._is_everyone = "*" in entries
        self._networks: list[_Network] = []
        self._hosts: set[str] = set()
        for entry in entries:
            try:
                self._networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self._hosts.add(entry)  # a name or a unix socket path, compared as is

    def __contains__(self, host: str) -> bool:
        if self._is_everyone or host in self._hosts:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._networks)

    def client_of(self, peer_host: str, forwarded_for: Iterable[str]) -> str | None:
        """The client a trusted `peer_host` names in its `X-Forwarded-For`
        values, or None (not trusted, or nothing usable named)."""
        if peer_host not in self:
            return None
        hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
        hops = [hop for hop in hops if hop]
        if not hops:
            return None
        if self._is_everyone:
            return hops[0]
        for hop in reversed(hops):
            if hop not in self:
                return hop
        return hops[0]  # every hop a trusted proxy: the first one is the client
