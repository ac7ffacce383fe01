"""Helm charts in OCI registries, read with the distribution API (what `helm pull oci://` and Flux do).

A chart is the repository `<host>/<path>/<chart>`: its tags are versions (Helm writes a version's `+`
as `_`, a tag may not hold `+`), a manifest (`application/vnd.oci.image.manifest.v1+json`) names the
chart's layer (`application/vnd.cncf.helm.chart.content.v1.tar+gzip`), and that blob is the .tgz.

Access is anonymous: a registry answering 401 with `WWW-Authenticate: Bearer realm=...` is asked the
realm for a token (a plain policed GET: the realm must pass the policy like any URL, and nothing but
`service` and `scope` is sent); the token goes back only to the registry that asked for it, and is
dropped from a redirect to another origin (registries send blobs from storage elsewhere). No
credentials of ours exist to send.

The registry is spoken to over https, or plain http when `http://<host>/` is under a `fetch.allow`
prefix (Flux's `insecure: true`). Every hop goes through the same policy, resolver and limits as
bot.fetch.http; this module adds request headers and reads response headers, which that client does
not offer.
"""

from __future__ import annotations

import hashlib
import json
import re
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urljoin, urlsplit

from bot.fetch.http import FetchFailed, Limits, Reply, get, request
from bot.fetch.policy import Refused

if TYPE_CHECKING:
    from bot.fetch import Fetcher

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEXES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
CHART_LAYERS = ("application/vnd.cncf.helm.chart.content.v1.tar+gzip", "application/tar+gzip")  # the 2nd: Helm <3.8
MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # what the distribution spec asks registries to accept
MAX_TOKEN_BYTES = 1024 * 1024
MAX_TAG_PAGES = 20
MAX_TAGS = 100_000
_CHUNK = 256 * 1024
_REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
_PARAM = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


DOCKER_HUB = frozenset({"docker.io", "index.docker.io"})
DOCKER_HUB_API = "registry-1.docker.io"


class Missing(Exception):
    """The registry has no such repository, tag or blob (404); the message says which."""


def tag_of(version: str) -> str:
    return version.replace("+", "_")


def version_of(tag: str) -> str:
    return tag.replace("_", "+")


def valid_tag(value: str) -> bool:
    return _TAG.fullmatch(value) is not None


def valid_digest(value: str) -> bool:
    return _DIGEST.fullmatch(value) is not None


@dataclass(frozen=True)
class Manifest:
    digest: str  # sha256:... of the manifest's bytes: what pins the chart
    layer: str  # the chart layer's digest
    size: int  # the chart layer's declared size (-1 unknown)
    version: str  # `org.opencontainers.image.version`, as Helm annotates it ("" when absent)


class Registry:
    """One chart repository of one registry, for one fetcher; `tokens` is shared by the fetcher's
    registries so a token is asked for once per repository and run."""

    def __init__(self, fetcher: Fetcher, url: str, tokens: dict[str, str]):
        parts = urlsplit(url)
        if parts.scheme != "oci" or not parts.hostname:
            raise FetchFailed(f"{url}: not an oci:// URL with a host")
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise Refused(f"{url}: a URL holding credentials is never fetched")
        self.repository = parts.path.strip("/")
        if not _REPOSITORY.fullmatch(self.repository):
            raise FetchFailed(f"{url}: `{self.repository}` is not an OCI repository name")
        self.url = f"oci://{parts.netloc}/{self.repository}"
        self.fetcher = fetcher
        s = fetcher.settings
        insecure = s.policy.allowed(f"http://{parts.netloc}/v2/{self.repository}/")
        # Docker Hub's registry API is not served at docker.io itself (as in Helm's and containerd's clients).
        host = DOCKER_HUB_API if parts.netloc.lower() in DOCKER_HUB else parts.netloc
        self.base = f"{'http' if insecure else 'https'}://{host}"
        self.tokens = tokens

    def tags(self) -> list[str]:
        """Every tag, following `Link: <...>; rel="next"` for MAX_TAG_PAGES pages at most."""
        url = f"{self.base}/v2/{self.repository}/tags/list"
        out: list[str] = []
        for _page in range(MAX_TAG_PAGES):
            reply = self._call(url, "application/json", self.fetcher.settings.max_index_bytes,
                               "INFRA_REVIEW_FETCH_MAX_INDEX_BYTES", f"{self.url} has no tags")
            data = _json(reply.body, url)
            tags = data.get("tags") if isinstance(data, dict) else None
            out += [t for t in tags or () if isinstance(t, str)]
            if len(out) > MAX_TAGS:
                raise FetchFailed(f"{self.url}: more than {MAX_TAGS} tags")
            link = _NEXT.search(reply.headers.get("link", ""))
            if not link:
                return out
            url = urljoin(url, link.group(1))
            if urlsplit(url).netloc != urlsplit(self.base).netloc:
                raise FetchFailed(f"{self.url}: the registry's next page of tags is on another host")
        raise FetchFailed(f"{self.url}: more than {MAX_TAG_PAGES} pages of tags")

    def manifest(self, reference: str) -> Manifest:
        """The chart manifest at a tag or digest (a digest is checked against the bytes served)."""
        url = f"{self.base}/v2/{self.repository}/manifests/{reference}"
        shown = f"{self.url}@{reference}" if reference.startswith("sha256:") else f"{self.url}:{reference}"
        reply = self._call(url, MANIFEST, MAX_MANIFEST_BYTES, "", f"{shown} does not exist")
        digest = "sha256:" + hashlib.sha256(reply.body).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise FetchFailed(f"{shown}: the registry served a manifest whose digest is {digest}")
        data = _json(reply.body, url)
        if not isinstance(data, dict):
            raise FetchFailed(f"{shown}: the manifest is not a JSON object")
        kind = data.get("mediaType") or reply.headers.get("content-type", "").split(";")[0].strip()
        if kind in INDEXES:
            raise FetchFailed(f"{shown} is an image index, not a Helm chart")
        layers = [x for x in data.get("layers") or () if isinstance(x, dict) and x.get("mediaType") in CHART_LAYERS]
        if not layers or not isinstance(layers[0].get("digest"), str):
            raise FetchFailed(f"{shown} is not a Helm chart (no layer of type {CHART_LAYERS[0]})")
        size = layers[0].get("size")
        annotations = data.get("annotations")
        version = annotations.get("org.opencontainers.image.version") if isinstance(annotations, dict) else None
        return Manifest(digest, layers[0]["digest"], size if isinstance(size, int) else -1,
                        version if isinstance(version, str) else "")

    def blob(self, digest: str, size: int) -> bytes:
        """The blob, checked against its digest; refused before downloading when it says it is too big."""
        cap = self.fetcher.settings.max_chart_bytes
        if not valid_digest(digest):
            raise FetchFailed(f"{self.url}: the chart layer's digest {digest[:80]!r} is not a sha256 digest")
        if size > cap:
            raise FetchFailed(f"{self.url}@{digest}: the chart is {size} bytes, over the {cap} byte limit "
                              f"(INFRA_REVIEW_FETCH_MAX_CHART_BYTES)")
        url = f"{self.base}/v2/{self.repository}/blobs/{digest}"
        body = self._call(url, "*/*", cap, "INFRA_REVIEW_FETCH_MAX_CHART_BYTES", f"{self.url}@{digest} is missing").body
        actual = "sha256:" + hashlib.sha256(body).hexdigest()
        if actual != digest:
            raise FetchFailed(f"{self.url}: the blob served for {digest} has the digest {actual}")
        return body

    def _call(self, url: str, accept: str, max_bytes: int, setting: str, missing: str) -> Reply:
        """A GET to the registry, with the repository's token once the registry asked for one."""
        headers = {"Accept": accept}
        for attempt in range(2):
            token = self.tokens.get(self.url)
            if token:
                headers["Authorization"] = f"Bearer {token}"
            reply = exchange(self.fetcher, url, headers, max_bytes, setting)
            if reply.status == 200:
                return reply
            if reply.status == 404:
                raise Missing(missing)
            if reply.status == 401 and attempt == 0:
                self.tokens[self.url] = self._token(reply.headers.get("www-authenticate", ""), url)
                continue
            if reply.status in (401, 403):
                raise FetchFailed(f"{url}: the registry answered {reply.status} to an anonymous pull (the chart "
                                  f"may be private; infra-review sends no credentials)")
            raise FetchFailed(f"{url}: the registry answered {reply.status}")
        raise AssertionError("unreachable")  # pragma: no cover

    def _token(self, challenge: str, url: str) -> str:
        """An anonymous token from the realm a `Bearer` challenge names."""
        scheme, _, rest = challenge.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise FetchFailed(f"{url}: the registry asks for {scheme or 'unnamed'} credentials, and infra-review "
                              f"sends none")
        params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
                  for m in _PARAM.finditer(rest)}
        realm = params.get("realm", "")
        if not realm:
            raise FetchFailed(f"{url}: the registry's Bearer challenge names no realm")
        query = {k: params[k] for k in ("service", "scope") if params.get(k)}
        query.setdefault("scope", f"repository:{self.repository}:pull")
        realm_url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        s = self.fetcher.settings
        s.policy.check_url(realm_url)  # a realm the policy refuses is no request made
        self.fetcher.counted()
        body, _final = get(realm_url, s.policy, Limits(MAX_TOKEN_BYTES, s.timeout), self.fetcher.resolver)
        data = _json(body, realm)
        token = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token or "\n" in token or "\r" in token:
            raise FetchFailed(f"{realm}: the token service answered without a token")
        return token


def _json(body: bytes, url: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise FetchFailed(f"{url}: the answer is not JSON") from None


def exchange(fetcher: Fetcher, url: str, headers: dict[str, str], max_bytes: int, setting: str = "",
             context: ssl.SSLContext | None = None) -> Reply:
    """One registry call through the fetcher's policy (bot.fetch.http.request): any status returned,
    counted as one request."""
    s = fetcher.settings
    s.policy.check_url(url)
    fetcher.counted()
    return request(url, s.policy, Limits(max_bytes, s.timeout), fetcher.resolver, context, headers, setting)
