"""Who may call what: source-address allow-lists and the proxies whose X-Forwarded-For is believed.

The address an allow-list checks is the ASGI scope's client. uvicorn sets it to the TCP peer, or, for
a peer listed in `--forwarded-allow-ips`, to the right-most address of X-Forwarded-For that is not a
trusted proxy itself (each proxy appends the address it got the request from, so everything left of
that is whatever the client chose to write). With `*` every peer is a trusted proxy and uvicorn takes
the LEFT-most address, which the client writes: anyone could claim an address inside the allow-list.
So `*` together with an allow-list is refused at start (`check_proxy_trust`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.types import Scope

from tgms_tui.backend.config import ConfigError, Settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

NOT_ALLOWED = "source address not allowed"


class SourceAllowList:
    """Networks a client address must be in; an empty list allows everyone."""

    def __init__(self, networks: Sequence[str]) -> None:
        self.networks: list[Network] = [ipaddress.ip_network(n, strict=False) for n in networks]

    def __bool__(self) -> bool:
        return bool(self.networks)

    def allows(self, host: str | None) -> bool:
        if not self.networks:
            return True
        if host is None:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:  # a unix socket path, or a forwarded value that is no address
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in net for net in self.networks)


def client_host(scope: Scope) -> str | None:
    """The client's address as uvicorn resolved it (see the module docstring)."""
    client = scope.get("client")
    return str(client[0]) if client else None


def check_proxy_trust(settings: Settings, forwarded_allow_ips: Sequence[str]) -> None:
    """Refuse a configuration where a client could choose the address an allow-list checks."""
    if "*" not in forwarded_allow_ips:
        return
    configured = {
        "TGMS_ADMIN_ALLOW_NETWORKS": settings.admin_allow_networks,
        "TGMS_METRICS_ALLOW_NETWORKS": settings.metrics_allow_networks,
    }
    lists = [name for name, networks in configured.items() if networks]
    if lists:
        raise ConfigError(
            "--forwarded-allow-ips",
            f"'*' trusts X-Forwarded-For from every peer, so any client could claim an address inside "
            f"{' and '.join(lists)}; list your reverse proxies' addresses instead "
            "(e.g. --forwarded-allow-ips 10.0.0.5 or FORWARDED_ALLOW_IPS=10.0.0.5)",
        )
