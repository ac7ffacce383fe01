"""What the fetcher may download: a pure policy over URLs and the addresses their hosts resolve to.

By default a URL must be `https`, on the default port, without credentials, and its host must
resolve only to public unicast addresses: loopback, private, link-local (cloud metadata at
169.254.169.254), shared (100.64/10, Alibaba's metadata), unique-local (fd00:ec2::254), multicast,
reserved and unspecified addresses are refused, and so are IPv6 forms that embed one of those
(IPv4-mapped, 6to4, Teredo, NAT64). A repository may list URL prefixes in `.github/infra-review.yml`
(`fetch: {allow: [...]}`): a URL under one may also be `http`, use another port and reach a private
address. Credentials are refused everywhere: the fetcher never sends any.

An `oci://host/path` prefix allows that registry's API below the path (`http(s)://host/v2/path/...`),
or the whole host when it has no path. A prefix matches at a boundary: `https://charts.internal` allows `https://charts.internal/x` and
`https://charts.internal:8443/x` only when written with that port, never
`https://charts.internal.example.com/`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

DEFAULT_PORTS = {"https": 443, "http": 80}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(Exception):
    """The policy forbids this URL or address; the message says why, in words."""


@dataclass(frozen=True)
class Target:
    """One URL, split and checked: where to connect, and what to send as Host / SNI."""

    url: str
    scheme: str
    host: str  # lower-cased, without brackets
    port: int
    path: str  # path and query, as sent in the request line
    allowed: bool  # under an `allow` prefix

    @property
    def host_header(self) -> str:
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == DEFAULT_PORTS.get(self.scheme) else f"{name}:{self.port}"


def _normalise(url: str) -> str:
    """Scheme and host lower-cased, the default port dropped: how URLs and prefixes are compared."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return url.strip()
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    return SplitResult(scheme, netloc, parts.path, parts.query, "").geturl()


def under_prefix(url: str, prefix: str) -> bool:
    """Whether `url` is `prefix` or below it, matched at a boundary (`/`, `?`, `#` or the prefix's
    own trailing `/`), so a host prefix never matches a longer host name."""
    url, prefix = _normalise(url), _normalise(prefix)
    if not prefix or not url.startswith(prefix):
        return False
    return len(url) == len(prefix) or prefix.endswith("/") or url[len(prefix)] in "/?#"


def _as_http(prefix: str) -> tuple[str, ...]:
    """An `oci://host[:port][/path]` prefix as the registry API URLs it stands for (`http(s)://host/v2/path`;
    the whole host when no path is given); any other prefix as it is."""
    if not prefix.lower().startswith("oci://"):
        return (prefix,)
    host, _, path = prefix[6:].partition("/")
    below = f"/v2/{path}" if path.strip("/") else ""
    return tuple(f"{scheme}://{host}{below}" for scheme in ("https", "http"))


@dataclass(frozen=True)
class FetchPolicy:
    """The rules for one repository: `allow` is its list of URL prefixes."""

    allow: tuple[str, ...] = ()

    def allowed(self, url: str) -> bool:
        return any(under_prefix(url, q) for p in self.allow for q in _as_http(p))

    def check_url(self, url: str) -> Target:
        """The URL split into what to connect to; Refused when its form is not allowed (before any
        name is resolved or connection made)."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise Refused(f"{url!r} is not a valid URL ({exc})") from None
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            raise Refused(f"{_shown(url)}: only https URLs are fetched, not {scheme or 'a relative URL'}")
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise Refused(f"{_shown(url)}: a URL holding credentials is never fetched")
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise Refused(f"{_shown(url)}: the URL has no host")
        allowed = self.allowed(url)
        if not allowed and scheme != "https":
            raise Refused(f"{_shown(url)}: only https URLs are fetched (list the prefix in `fetch.allow` of "
                          f".github/infra-review.yml to allow http)")
        port = port if port is not None else DEFAULT_PORTS[scheme]
        if not allowed and port != DEFAULT_PORTS[scheme]:
            raise Refused(f"{_shown(url)}: only the default port is fetched (list the prefix in `fetch.allow` "
                          f"to allow port {port})")
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        target = Target(url, scheme, host, port, path, allowed)
        literal = _literal(host)
        if literal is not None:
            self.check_address(target, literal)
        return target

    def check_address(self, target: Target, address: IPAddress | str) -> None:
        """Refused when `target`'s host resolved to an address the policy forbids."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if target.allowed:
            return
        why = forbidden_address(ip)
        if why:
            raise Refused(f"{_shown(target.url)}: {target.host} resolves to {ip}, {why} (list the prefix in "
                          f"`fetch.allow` of .github/infra-review.yml to allow it)")


def forbidden_address(ip: IPAddress) -> str | None:
    """Why an address may not be fetched from by default, None for a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "a scoped (link-local) address"
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and (ip in _NAT64 or ip in _NAT64_LOCAL):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = forbidden_address(embedded)
            return f"which embeds {embedded}, {inner}" if inner else None
    checks = (
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address (where cloud metadata services answer)"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_private, "a private address"),
        (ip.is_reserved, "a reserved address"),
        (not ip.is_global, "not a public address"),
    )
    return next((why for bad, why in checks if bad), None)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0] if "%" in host else host)
    except ValueError:
        return None


def _shown(url: str, limit: int = 200) -> str:
    return url if len(url) <= limit else url[:limit] + "…"
