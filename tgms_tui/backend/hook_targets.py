"""Where an event webhook may be delivered, and how a delivery is signed.

A receiver URL is http or https, has a host, and carries no credentials. Its host must resolve only to
public addresses: private, loopback, link-local (169.254.169.254, the cloud metadata service),
multicast, reserved and unspecified addresses are refused unless TGMS_HOOKS_ALLOW_PRIVATE is set,
so a subscription cannot make TGMS probe its own network. The name is resolved again at every delivery
and every address it resolves to is checked (DNS can change between adding a hook and using it); the
request then goes to the checked address itself (`Target.address`), never to a second lookup, and
redirects are not followed.

The signature is a fixed contract: `X-TGMS-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<raw body>" keyed with the subscription's secret>`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import secrets
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-TGMS-Signature"
EVENT_HEADER = "X-TGMS-Event"
DELIVERY_HEADER = "X-TGMS-Delivery"
MAX_URL_LENGTH = 2048

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(Exception):
    """The URL is not one TGMS delivers to; the message says why (never a secret)."""


def new_secret() -> str:
    """A subscription's signing secret: 32 random bytes, URL-safe."""
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The X-TGMS-Signature header value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


@dataclass(frozen=True)
class ParsedUrl:
    scheme: str
    host: str  # a name, or an address without brackets
    port: int
    path: str  # path and query, at least "/"


def parse_url(url: str) -> ParsedUrl:
    """Check a receiver URL's shape (not its addresses); TargetRefused names the problem."""
    if not isinstance(url, str) or not url.strip():
        raise TargetRefused("url is empty")
    if len(url) > MAX_URL_LENGTH:
        raise TargetRefused(f"url is longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise TargetRefused("url contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"url is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise TargetRefused("url must start with http:// or https://")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("url must not carry credentials (user:password@); the signature authenticates TGMS")
    if not parts.hostname:
        raise TargetRefused("url has no host")
    if parts.fragment:
        raise TargetRefused("url must not have a #fragment")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return ParsedUrl(scheme, parts.hostname, port or (443 if scheme == "https" else 80), path)


def address_problem(address: IPAddress) -> str | None:
    """Why TGMS refuses to deliver to `address` without TGMS_HOOKS_ALLOW_PRIVATE; None for a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address_problem(address.ipv4_mapped)
    for kind in ("loopback", "link_local", "multicast", "private", "reserved", "unspecified"):
        if getattr(address, f"is_{kind}"):
            return f"{address} is a {kind.replace('_', '-')} address"
    if not address.is_global:
        return f"{address} is not a public address"
    return None


@dataclass(frozen=True)
class Target:
    """A receiver resolved and checked: connect to `address`, present `url.host`."""

    url: ParsedUrl
    address: IPAddress

    def pinned_url(self) -> str:
        """The URL with the checked address in place of the name (the connection goes there)."""
        host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return f"{self.url.scheme}://{host}:{self.url.port}{self.url.path}"

    def host_header(self) -> str:
        default = 443 if self.url.scheme == "https" else 80
        host = f"[{self.url.host}]" if ":" in self.url.host else self.url.host
        return host if self.url.port == default else f"{host}:{self.url.port}"


async def resolve(url: str, *, allow_private: bool, timeout: float = 5.0) -> Target:
    """Parse `url`, resolve its host and check every address; the first address to connect to."""
    parsed = parse_url(url)
    try:
        literal: IPAddress | None = ipaddress.ip_address(parsed.host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(loop.getaddrinfo(parsed.host, parsed.port, type=socket.SOCK_STREAM), timeout)
        except (OSError, TimeoutError) as exc:
            raise TargetRefused(f"host {parsed.host!r} does not resolve ({type(exc).__name__})") from None
        addresses = []
        for info in infos:
            found = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if found not in addresses:
                addresses.append(found)
        if not addresses:
            raise TargetRefused(f"host {parsed.host!r} does not resolve")
    if not allow_private:
        for address in addresses:
            if (problem := address_problem(address)) is not None:
                raise TargetRefused(f"{parsed.host} resolves to {problem} (TGMS_HOOKS_ALLOW_PRIVATE is off)")
    return Target(parsed, addresses[0])
