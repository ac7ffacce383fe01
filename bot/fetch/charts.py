"""Helm charts, fetched as Flux's source-controller fetches them for a HelmRelease, through the fetcher.

- A chart repository (a `HelmRepository` with an http(s) URL): `<url>/index.yaml` is read (at most
  `max_index_bytes`, parsed by libyaml with timestamps left as text, walked within MAX_INDEX_VERSIONS
  versions, so an alias bomb costs no more than its file), the version chosen, the archive
  downloaded from the entry's first URL (relative to the repository URL; an absolute one is policed
  like any other) and checked against the entry's `digest`.
- An OCI registry (a `HelmRepository` of `type: oci` plus the chart's name, or an `OCIRepository`'s
  URL with its tag, semver range or digest): bot.fetch.oci.

The version is chosen as Helm chooses it (Masterminds/semver v3): a version written exactly as the
index or a tag has it is that one; otherwise it is a constraint (`>=1.0.0 <2.0.0`, `^1.2`, `~1.2.3`,
`1.x`, `*`, `1.2 - 1.4`, `^1 || ^3`; empty is `*`) and the highest version satisfying it is taken.
A prerelease satisfies only an AND group that names one (`>=1.0.0-0`).

Caching, in the fetcher's FetchCache (one folder, one bound, with remote resources): an archive is kept
by (source, chart, exact version) and, from a registry, by manifest digest too, for the cache's age;
an exact version or a digest is served from there without a request. An index (reduced to each
version's URL and digest) or a tag list is kept with the time it was fetched, and used for
`index_max_age` seconds only. Each fetcher also keeps them in memory for that long, and remembers each
reference's outcome: for its life when the reference pins a version or digest, for `index_max_age`
otherwise.

Nothing here raises but ChartUnavailable, whose `reason` is one sentence for people.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import yaml

from bot.fetch import Fetcher, FetchFailed, Refused
from bot.fetch.oci import Manifest, Missing, Registry, tag_of, valid_digest, valid_tag, version_of
from bot.fetch.resources import OFF

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - libyaml is present on every supported platform
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_INDEX_VERSIONS = 1_000_000  # chart versions (and names) an index may list, aliases counted each time
MAX_VERSION_LENGTH = 256  # characters of a version or range read as one (see parse_constraint)
_GZIP = b"\x1f\x8b"


@dataclass(frozen=True)
class ChartRef:
    """What a HelmRelease asks for. `kind`: "helm" (an http(s) chart repository at `url`) or "oci"
    (`url` is `oci://host/path`; the chart is `<url>/<name>`, or `url` itself when `name` is empty, as
    an OCIRepository names it). `version`: exact, a semver range, an OCI tag, or "" (the latest
    release). `digest` (OCI only) pins the manifest and wins over `version`, as in Flux."""

    kind: str
    url: str
    name: str
    version: str = ""
    digest: str = ""


@dataclass(frozen=True)
class FetchedChart:
    """A chart archive (.tgz) and what it was resolved to. `digest`: the manifest's for a chart from a
    registry (what pins it there), the archive's sha256 for one from a chart repository. `url`: where
    the archive came from (`oci://host/path/chart@sha256:...` for a registry)."""

    archive: bytes = field(repr=False)
    name: str
    version: str
    digest: str
    url: str


class ChartUnavailable(Exception):
    """The chart was not fetched. `kind`: "offline", "refused", "not found" or "failed"; `reason`: one
    sentence starting with it."""

    def __init__(self, kind: str, detail: str):
        super().__init__(kind, detail)
        self.kind = kind
        self.reason = f"{kind}: {detail}"

    def __str__(self) -> str:
        return self.reason


# --- versions ------------------------------------------------------------------------------------

_IDS = r"[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*"
_VERSION = re.compile(rf"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-({_IDS}))?(?:\+({_IDS}))?")
_EXACT = re.compile(rf"v?\d+\.\d+\.\d+(?:-{_IDS})?(?:\+{_IDS})?")
_PART = r"(?:\d+|[xX*])"
_LOOSE = rf"v?{_PART}(?:\.{_PART}){{0,2}}(?:-{_IDS})?(?:\+{_IDS})?"
_ITEM = re.compile(rf"\s*(!=|>=|=>|<=|=<|~>|[=<>~^])?\s*({_LOOSE})\s*")
_HYPHEN = re.compile(rf"({_LOOSE})\s+-\s+({_LOOSE})")


@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    pre: tuple[str, ...] = ()

    @property
    def key(self) -> tuple:
        """Semver precedence: a release above its prereleases, numeric identifiers below others."""
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.pre)
        return self.major, self.minor, self.patch, not self.pre, pre


def parse_version(text: str) -> Version | None:
    """A version as Masterminds' NewVersion reads it (`v` prefix and missing parts allowed), or None.
    One longer than MAX_VERSION_LENGTH is none: an index or a registry listing a 5,000-digit version
    would otherwise make int() raise and spoil the choice among the others."""
    if len(text) > MAX_VERSION_LENGTH:
        return None
    m = _VERSION.fullmatch(text.strip())
    if not m:
        return None
    return Version(int(m[1]), int(m[2] or 0), int(m[3] or 0), tuple(m[4].split(".")) if m[4] else ())


def is_exact(text: str) -> bool:
    """A full version (three numbers), not a range: what names one archive."""
    return len(text) <= MAX_VERSION_LENGTH and _EXACT.fullmatch(text.strip()) is not None


Test = Callable[[Version], bool]


@dataclass(frozen=True)
class Constraint:
    """OR of AND groups; each group says whether it names a prerelease (then prereleases may match)."""

    groups: tuple[tuple[tuple[Test, ...], bool], ...]

    def allows(self, v: Version) -> bool:
        return any((pre or not v.pre) and all(t(v) for t in tests) for tests, pre in self.groups)


def parse_constraint(text: str) -> Constraint | None:
    """Masterminds/semver v3's constraint language; None when `text` is not one. The version a
    HelmRelease asks for comes from the pull request, and these regexes take time quadratic in its
    length (`1-1-1-…`), so one longer than MAX_VERSION_LENGTH, which no real range comes near, is none."""
    if len(text) > MAX_VERSION_LENGTH:
        return None
    groups = []
    for raw in (text.strip() or "*").split("||"):
        group = _HYPHEN.sub(r">=\1 <=\2", raw.replace(",", " "))
        tests: list[Test] = []
        pre, pos = False, 0
        while pos < len(group):
            m = _ITEM.match(group, pos)
            if not m or m.end() == pos:
                return None
            test, named = _item(m[1] or "=", m[2])
            tests.append(test)
            pre, pos = pre or named, m.end()
        if not tests:
            return None
        groups.append((tuple(tests), pre))
    return Constraint(tuple(groups))


def _item(op: str, text: str) -> tuple[Test, bool]:
    """One comparison as a test, and whether it names a prerelease. A partial version (`1.2`, `1.x`)
    stands for the range its given parts allow, as Masterminds reads it."""
    core, _, _meta = text.lstrip("v").partition("+")
    core, _, pre_text = core.partition("-")
    nums: list[int] = []
    for part in core.split("."):
        if not part.isdigit():
            break
        nums.append(int(part))
    pre = tuple(pre_text.split(".")) if pre_text and len(nums) == 3 else ()
    k = len(nums)
    padded = nums + [0] * (3 - k)
    lo = Version(padded[0], padded[1], padded[2], pre).key
    last = k - 1  # the part a partial version's range ends after
    if op in ("~", "~>"):
        last = min(k, 2) - 1
    elif op == "^":
        last = next((i for i, n in enumerate(nums) if n), k - 1)  # the first part that is not 0
    hi = _bump(nums, last) if k else None

    def within(v: Version) -> bool:
        return v.key >= lo and (hi is None or v.key < hi)

    exact = k == 3
    tests: dict[str, Test] = {
        "=": (lambda v: v.key == lo) if exact else within,
        "!=": (lambda v: v.key != lo) if exact else (lambda v: not within(v)),
        ">": (lambda v: v.key > lo) if exact else (lambda v: hi is not None and v.key >= hi),
        ">=": lambda v: v.key >= lo,
        "<": lambda v: v.key < lo,
        "<=": (lambda v: v.key <= lo) if exact else (lambda v: hi is None or v.key < hi),
        "~": within,
        "^": within,
    }
    alias = {"=>": ">=", "=<": "<=", "~>": "~"}
    return tests[alias.get(op, op)], bool(pre)


def _bump(nums: list[int], i: int) -> tuple:
    """The first release past every version whose parts up to `i` are `nums`'."""
    parts = nums[:i] + [nums[i] + 1] + [0] * (2 - i)
    return Version(parts[0], parts[1], parts[2]).key


def choose(versions: list[str], wanted: str) -> str | None:
    """The version Helm takes for `wanted` among `versions`: the one written exactly so, else the
    highest satisfying the constraint; None when there is none (or `wanted` is no constraint)."""
    wanted = wanted.strip()
    if wanted and wanted in versions:
        return wanted
    constraint = parse_constraint(wanted)
    if constraint is None:
        return None
    best: tuple[tuple, str] | None = None
    for text in versions:
        v = parse_version(text)
        if v is not None and constraint.allows(v) and (best is None or v.key > best[0]):
            best = v.key, text
    return best[1] if best else None


# --- the fetch -----------------------------------------------------------------------------------

@dataclass
class _Memo:
    """What one fetcher keeps in memory about charts."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    locks: dict[Any, threading.Lock] = field(default_factory=dict)
    lists: dict[str, tuple[float, Any]] = field(default_factory=dict)  # index entries, tags: (fetched at, value)
    done: dict[ChartRef, tuple[float, FetchedChart | ChartUnavailable]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # registry tokens by oci:// repository

    @contextmanager
    def locked(self, key: Any) -> Iterator[None]:
        with self.lock:
            lock = self.locks.setdefault(key, threading.Lock())
        with lock:
            yield


_MEMOS: weakref.WeakKeyDictionary[Fetcher, _Memo] = weakref.WeakKeyDictionary()
_MEMOS_LOCK = threading.Lock()


def _memo(fetcher: Fetcher) -> _Memo:
    with _MEMOS_LOCK:
        return _MEMOS.setdefault(fetcher, _Memo())


def fetch_chart(fetcher: Fetcher, ref: ChartRef) -> FetchedChart:
    """The chart `ref` names; ChartUnavailable (only) when it cannot be had."""
    if not fetcher.settings.enabled:
        raise ChartUnavailable("offline", OFF)
    memo = _memo(fetcher)
    pinned = bool(ref.digest) or is_exact(ref.version)
    with memo.locked(ref):
        known = memo.done.get(ref)
        if known is None or not pinned and time.time() - known[0] > fetcher.settings.index_max_age:
            known = time.time(), _outcome(fetcher, memo, ref)
            memo.done[ref] = known
    if isinstance(known[1], ChartUnavailable):
        raise known[1]
    return known[1]


def _outcome(fetcher: Fetcher, memo: _Memo, ref: ChartRef) -> FetchedChart | ChartUnavailable:
    oci = ref.url.strip().lower().startswith("oci://")
    try:
        if ref.kind not in ("helm", "oci"):
            return ChartUnavailable("failed", f"{ref.kind!r} is not a kind of chart source (helm, oci)")
        if oci != (ref.kind == "oci"):
            return ChartUnavailable("failed", f"{ref.url}: a {ref.kind} chart source needs "
                                              f"{'an oci://' if ref.kind == 'oci' else 'an http(s)'} URL")
        return _from_registry(fetcher, memo, ref) if oci else _from_repository(fetcher, memo, ref)
    except ChartUnavailable as exc:
        return exc
    except Refused as exc:
        return ChartUnavailable("refused", str(exc))
    except Missing as exc:
        return ChartUnavailable("not found", str(exc))
    except FetchFailed as exc:
        return ChartUnavailable("failed", str(exc))
    except Exception as exc:  # a chart never crashes a review: whatever else broke is said as a failure
        return ChartUnavailable("failed", f"{ref.url}: {type(exc).__name__}: {exc}")


def _renamed(exc: FetchFailed, setting: str) -> FetchFailed:
    """bot.fetch.http names the general size limit; these downloads have their own."""
    return FetchFailed(str(exc).replace("(INFRA_REVIEW_FETCH_MAX_BYTES)", f"({setting})"))


def _fresh(fetcher: Fetcher, memo: _Memo, key: str, load: Callable[[], Any]) -> Any:
    """`load()`'s value, reused from memory or the disk cache while younger than `index_max_age`."""
    max_age = fetcher.settings.index_max_age
    with memo.locked(key):
        hit = memo.lists.get(key)
        if hit is not None and time.time() - hit[0] <= max_age:
            return hit[1]
        raw = fetcher.cache.get(key)
        try:
            stored = json.loads(raw) if raw is not None else None
        except ValueError:
            stored = None
        if isinstance(stored, dict) and isinstance(stored.get("at"), float) and time.time() - stored["at"] <= max_age:
            memo.lists[key] = stored["at"], stored["value"]
            return stored["value"]
        value = load()
        at = time.time()
        fetcher.cache.put(key, json.dumps({"at": at, "value": value}).encode())
        memo.lists[key] = at, value
        return value


def _archive_key(source: str, name: str, version: str = "", digest: str = "") -> str:
    return f"helm-chart {source} {name} {version} {digest}"


def _cached(fetcher: Fetcher, key: str) -> FetchedChart | None:
    """A chart kept by _keep (a JSON header line, then the archive), checked against its sha256."""
    raw = fetcher.cache.get(key)
    if raw is None or b"\n" not in raw:
        return None
    head, _, archive = raw.partition(b"\n")
    try:
        meta = json.loads(head)
        if meta["sha256"] != hashlib.sha256(archive).hexdigest():
            return None
        return FetchedChart(archive, meta["name"], meta["version"], meta["digest"], meta["url"])
    except (ValueError, KeyError, TypeError):
        return None


def _keep(fetcher: Fetcher, chart: FetchedChart, *keys: str) -> None:
    head = json.dumps({"name": chart.name, "version": chart.version, "digest": chart.digest, "url": chart.url,
                       "sha256": hashlib.sha256(chart.archive).hexdigest()}).encode()
    for key in keys:
        fetcher.cache.put(key, head + b"\n" + chart.archive)


def _check_archive(data: bytes, url: str) -> None:
    if not data.startswith(_GZIP):
        raise FetchFailed(f"{url}: not a chart archive (a chart is a gzip-compressed tar)")


# --- chart repositories --------------------------------------------------------------------------

class _IndexLoader(_Loader):
    """Timestamps (`created:`) stay text: nothing here reads them, and building dates is slow."""


_IndexLoader.add_constructor("tag:yaml.org,2002:timestamp", _IndexLoader.construct_scalar)  # type: ignore[type-var]


def parse_index(data: bytes, url: str) -> dict[str, list[list[str]]]:
    """An index.yaml as {chart: [[version, first URL, sha256 hex], ...]}; FetchFailed when unreadable."""
    try:
        doc = yaml.load(data, Loader=_IndexLoader)  # noqa: S506 (a safe loader)
    except (yaml.YAMLError, RecursionError, ValueError, TypeError) as exc:
        problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
        raise FetchFailed(f"{url}: not a readable index ({problem})") from None
    entries = doc.get("entries") if isinstance(doc, dict) else None
    if not isinstance(entries, dict):
        raise FetchFailed(f"{url}: not a Helm repository index (it has no `entries`)")
    budget = MAX_INDEX_VERSIONS
    out: dict[str, list[list[str]]] = {}
    for name, versions in entries.items():
        budget -= 1 + (len(versions) if isinstance(versions, list) else 0)
        if budget < 0:
            raise FetchFailed(f"{url}: more than {MAX_INDEX_VERSIONS} chart versions")
        if not isinstance(name, str) or not isinstance(versions, list):
            continue
        kept = out.setdefault(name, [])
        for v in versions:
            if not isinstance(v, dict) or not isinstance(v.get("version"), str):
                continue
            urls, digest = v.get("urls"), v.get("digest")
            first = urls[0] if isinstance(urls, list) and urls and isinstance(urls[0], str) else ""
            digest = digest.lower().removeprefix("sha256:") if isinstance(digest, str) else ""
            kept.append([v["version"], first, digest])
    return out


def _from_repository(fetcher: Fetcher, memo: _Memo, ref: ChartRef) -> FetchedChart:
    s = fetcher.settings
    repo = ref.url.strip().rstrip("/")
    if not ref.name:
        raise ChartUnavailable("failed", f"{repo}: no chart name given")
    if parse_constraint(ref.version) is None:  # as Helm, before the index: an invalid range matches nothing
        raise ChartUnavailable("failed", f"{repo}: {ref.version.strip()[:80]!r} is not a version or a semver range")
    if is_exact(ref.version):
        hit = _cached(fetcher, _archive_key(repo, ref.name, ref.version.strip()))
        if hit is not None:
            return hit
    index_url = f"{repo}/index.yaml"

    def load() -> dict[str, list[list[str]]]:
        try:
            return parse_index(fetcher.download(index_url, s.max_index_bytes), index_url)
        except FetchFailed as exc:
            raise _renamed(exc, "INFRA_REVIEW_FETCH_MAX_INDEX_BYTES") from None

    entries = _fresh(fetcher, memo, f"helm-index {index_url}", load).get(ref.name)
    if not entries:
        raise Missing(f"{repo} has no chart {ref.name}")
    version = choose([e[0] for e in entries], ref.version)
    if version is None:
        wanted = ref.version.strip()
        raise Missing(f"chart {ref.name} has no version matching {wanted!r} in {repo}" if wanted else
                      f"chart {ref.name} has no release in {repo} (only prereleases; a range naming one, such as "
                      f"'>=0.0.0-0', takes them)")
    _version, location, digest = next(e for e in entries if e[0] == version)
    with memo.locked(_archive_key(repo, ref.name, version)):  # two ranges choosing one version download it once
        return _repository_archive(fetcher, repo, ref.name, version, location, digest)


def _repository_archive(fetcher: Fetcher, repo: str, name: str, version: str, location: str,
                        digest: str) -> FetchedChart:
    """One index entry's archive: from the cache while it has the digest the index gives, else downloaded
    from its URL (relative to the repository, as Helm resolves it) and checked against that digest."""
    key = _archive_key(repo, name, version)
    hit = _cached(fetcher, key)
    if hit is not None and (not digest or hit.digest == f"sha256:{digest}"):
        return hit
    if not location:
        raise FetchFailed(f"{repo}/index.yaml: chart {name} {version} has no URL")
    url = urljoin(repo + "/", location)
    try:
        data = fetcher.download(url, fetcher.settings.max_chart_bytes)
    except FetchFailed as exc:
        raise _renamed(exc, "INFRA_REVIEW_FETCH_MAX_CHART_BYTES") from None
    actual = hashlib.sha256(data).hexdigest()
    if digest and actual != digest:
        raise FetchFailed(f"{url}: the archive's sha256 is {actual}, and the index says {digest}")
    _check_archive(data, url)
    chart = FetchedChart(data, name, version, f"sha256:{actual}", url)
    _keep(fetcher, chart, key)
    return chart


# --- OCI registries ------------------------------------------------------------------------------

def _from_registry(fetcher: Fetcher, memo: _Memo, ref: ChartRef) -> FetchedChart:
    url = ref.url.strip().rstrip("/") + (f"/{ref.name}" if ref.name else "")
    registry = Registry(fetcher, url, memo.tokens)
    name = ref.name or registry.repository.rsplit("/", 1)[-1]
    source = registry.url
    wanted = ref.version.strip()
    if ref.digest:
        if not valid_digest(ref.digest):
            raise ChartUnavailable("failed", f"{source}: {ref.digest[:80]!r} is not a sha256 digest")
        reference, version = ref.digest, ""
    elif is_exact(wanted):
        reference, version = tag_of(wanted), wanted
    elif parse_constraint(wanted) is not None:
        tags = _fresh(fetcher, memo, f"oci-tags {source}", registry.tags)
        found = choose([version_of(t) for t in tags if isinstance(t, str)], wanted)
        if found is None:
            raise Missing(f"{source} has no tag matching {wanted!r}" if wanted else
                          f"{source} has no tag that is a release version")
        reference, version = tag_of(found), found
    elif valid_tag(wanted):
        reference, version = wanted, ""  # a tag that is no version (`latest`) moves: never kept by name
    else:
        raise ChartUnavailable("failed", f"{source}: {wanted[:80]!r} is not a tag, a version or a semver range")
    pin = _archive_key(source, name, digest=ref.digest) if ref.digest else _archive_key(source, name, version)
    hit = _cached(fetcher, pin) if ref.digest or version else None
    if hit is not None:
        return hit
    manifest = registry.manifest(reference)
    with memo.locked(_archive_key(source, name, digest=manifest.digest)):  # one download per manifest
        return _registry_archive(fetcher, registry, manifest, name, version or manifest.version, reference)


def _registry_archive(fetcher: Fetcher, registry: Registry, manifest: Manifest, name: str, version: str,
                      reference: str) -> FetchedChart:
    """The manifest's chart layer, from the cache by manifest digest or downloaded; kept by digest, and
    by version when a version (not a digest) named it."""
    source = registry.url
    hit = _cached(fetcher, _archive_key(source, name, digest=manifest.digest))
    if hit is None:
        data = registry.blob(manifest.layer, manifest.size)
        _check_archive(data, f"{source}@{manifest.layer}")
        hit = FetchedChart(data, name, version, manifest.digest, f"{source}@{manifest.digest}")
    elif hit.version != version:
        hit = FetchedChart(hit.archive, name, version, hit.digest, hit.url)
    keys = [_archive_key(source, name, digest=manifest.digest)]
    if is_exact(version) and reference != manifest.digest:
        keys.append(_archive_key(source, name, version))
    _keep(fetcher, hit, *keys)
    return hit
