"""The bounded HTTP client: one GET, every hop checked by the policy, size and time capped.

The standard library's `http.client` is used, not urllib or aiohttp, because each step must be ours:
the host is resolved here (`socket.getaddrinfo`), every address it resolves to is checked, and the
connection goes to the checked address (so a second DNS answer cannot swap in a private address
between the check and the connect) while the request carries the real Host header and, for https,
the real server name for SNI and certificate verification. Redirects are followed by hand (at most
MAX_REDIRECTS), each hop checked like the first. Nothing else is sent: no cookies, no Authorization
(but the anonymous registry token bot.fetch.oci asks for, and only to the origin it was asked for), no proxy (the process's proxy variables are never read), `Accept-Encoding: identity` (no compressed
transfer to inflate). Rendering runs in worker threads, so the call is synchronous.

Limits: `max_bytes` of body (a larger Content-Length is refused before reading), `timeout` seconds
for the whole download, redirects included (each socket operation gets what is left, at most
CONNECT_TIMEOUT to connect, and the body is read in chunks with the clock checked between them, so a
server sending one byte a second is cut off).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from bot import __version__
from bot.fetch.policy import FetchPolicy, Refused, Target

MAX_REDIRECTS = 5
CONNECT_TIMEOUT = 10.0  # seconds to open one connection (a host that drops packets costs no more)
_CHUNK = 256 * 1024
USER_AGENT = f"infra-review/{__version__} (+https://github.com/infra-review)"

Resolver = Callable[[str, int], list[str]]


class FetchFailed(Exception):
    """The download did not complete (network, status, size or time); the message says which."""


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    timeout: float  # seconds for the whole download, redirects included


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (each is checked; the first is used)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchFailed(f"{host} cannot be resolved ({exc})") from None
    out: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0]).split("%", 1)[0]
        if address not in out:
            out.append(address)
    if not out:
        raise FetchFailed(f"{host} resolves to no address")
    return out


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes  # read for a 200 only
    url: str  # the URL that answered, after redirects


def get(url: str, policy: FetchPolicy, limits: Limits, resolver: Resolver = resolve,
        context: ssl.SSLContext | None = None) -> tuple[bytes, str]:
    """The body of `url` and the URL it was finally served from. Refused when the policy forbids a
    hop (nothing is sent to that hop); FetchFailed for anything else that goes wrong."""
    reply = request(url, policy, limits, resolver, context)
    if reply.status != 200:
        raise FetchFailed(f"{reply.url}: the server answered {reply.status}")
    return reply.body, reply.url


def request(url: str, policy: FetchPolicy, limits: Limits, resolver: Resolver = resolve,
            context: ssl.SSLContext | None = None, headers: dict[str, str] | None = None,
            setting: str = "INFRA_REVIEW_FETCH_MAX_BYTES") -> Reply:
    """One GET with `headers`, redirects followed, every hop checked; `Authorization` is sent to the
    first origin only. Any final status is returned (the body read for a 200 only, within
    `limits.max_bytes`, `setting` naming that limit); Refused or FetchFailed otherwise."""
    deadline = time.monotonic() + limits.timeout
    current = url
    for _hop in range(MAX_REDIRECTS + 1):
        target = policy.check_url(current)
        addresses = resolver(target.host, target.port)
        for address in addresses:  # every answer must pass: a mixed answer is how rebinding is tried
            policy.check_address(target, address)
        sent = {k: v for k, v in (headers or {}).items()
                if _origin(current) == _origin(url) or k.lower() != "authorization"}
        reply = _send(target, addresses[0], sent, limits, deadline, setting, context)
        if reply.status in (301, 302, 303, 307, 308):
            location = reply.headers.get("location")
            if not location:
                raise FetchFailed(f"{target.url}: redirect ({reply.status}) without a Location")
            current = urljoin(current, location)
            continue
        return reply
    raise FetchFailed(f"{url}: more than {MAX_REDIRECTS} redirects")


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _remaining(deadline: float, url: str, total: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchFailed(f"{url}: not downloaded within {total:g}s, the time limit (INFRA_REVIEW_FETCH_TIMEOUT)")
    return left


def _send(target: Target, address: str, headers: dict[str, str], limits: Limits, deadline: float, setting: str,
          context: ssl.SSLContext | None) -> Reply:
    try:
        sock = socket.create_connection((address, target.port),
                                        timeout=min(CONNECT_TIMEOUT, _remaining(deadline, target.url, limits.timeout)))
    except TimeoutError:
        raise FetchFailed(f"{target.url}: connecting to {target.host} timed out") from None
    except OSError as exc:
        raise FetchFailed(f"{target.url}: cannot connect to {target.host} ({exc.strerror or exc})") from None
    conn = http.client.HTTPConnection(target.host, target.port)
    limit = f" ({setting})" if setting else ""  # the limit's name, for people
    try:
        if target.scheme == "https":
            try:
                sock = (context or ssl.create_default_context()).wrap_socket(sock, server_hostname=target.host)
            except (ssl.SSLError, ssl.CertificateError, OSError) as exc:
                sock.close()
                raise FetchFailed(f"{target.url}: TLS with {target.host} failed ({exc})") from None
        conn.sock = sock
        sock.settimeout(_remaining(deadline, target.url, limits.timeout))
        conn.request("GET", target.path, headers={
            "Host": target.host_header, "User-Agent": USER_AGENT, "Accept": "*/*", "Accept-Encoding": "identity",
            "Connection": "close",
            **headers})
        response = conn.getresponse()
        names = {k.lower(): v for k, v in response.getheaders()}
        if response.status != 200:
            return Reply(response.status, names, b"", target.url)
        declared = names.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_bytes:
            raise FetchFailed(f"{target.url}: {int(declared)} bytes, over the {limits.max_bytes} byte limit{limit}")
        body = bytearray()
        for chunk in _chunks(response, sock, deadline, target.url, limits.timeout):
            body += chunk
            if len(body) > limits.max_bytes:
                raise FetchFailed(f"{target.url}: more than {limits.max_bytes} bytes, the size limit{limit}")
        if response.length:
            raise FetchFailed(f"{target.url}: the connection closed {response.length} bytes short")
        return Reply(200, names, bytes(body), target.url)
    except (Refused, FetchFailed):
        raise
    except TimeoutError:
        raise FetchFailed(f"{target.url}: not downloaded within {limits.timeout:g}s, the time limit "
                          f"(INFRA_REVIEW_FETCH_TIMEOUT)") from None
    except (OSError, http.client.HTTPException) as exc:
        raise FetchFailed(f"{target.url}: {type(exc).__name__}: {exc}") from None
    finally:
        conn.close()


def _chunks(response: http.client.HTTPResponse, sock: socket.socket, deadline: float, url: str,
            total: float) -> Iterator[bytes]:
    """The body in chunks, the clock checked before each (a server sending one byte a second is cut off)."""
    while True:
        sock.settimeout(_remaining(deadline, url, total))
        chunk = response.read1(_CHUNK)
        if not chunk:
            return
        yield chunk
