"""Helm charts fetched as Flux's source-controller fetches them (bot.fetch.charts, bot.fetch.oci), from
real servers on loopback: a chart repository (`http.server` serving an index.yaml and archives made
here) and an OCI registry (Debian's docker-registry, tests/registry_fixture.py). Every server is
reached through a `fetch.allow` prefix, or refused without one; refusals are checked on the server's
side too: it must not have seen a connection."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from loopback import Server
from registry_fixture import RunningRegistry, TokenRegistry, push_chart, request, running_registry

from bot.fetch import Fetcher, FetchSettings
from bot.fetch.charts import ChartRef, ChartUnavailable, FetchedChart, choose, fetch_chart

pytest_plugins = ["registry_fixture"]  # the `registry` and `token_registry` fixtures


def chart_archive(name: str, version: str, compress: bool = True) -> bytes:
    """A chart archive as `helm package` makes it: one folder named after the chart."""
    files = {
        "Chart.yaml": f"apiVersion: v2\nname: {name}\nversion: {version}\n",
        "values.yaml": "replicas: 1\n",
        "templates/configmap.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n",
    }
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for rel, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}/{rel}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0) if compress else raw.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Origin(Server):
    """A loopback HTTP server of fixed files (path -> bytes), which a test may change as it goes."""

    def __init__(self, files: dict[str, bytes] | None = None):
        self.files: dict[str, bytes] = dict(files or {})
        super().__init__()

    def answer(self, path: str) -> tuple[int, dict[str, str], bytes] | None:
        body = self.files.get(path)
        return None if body is None else (200, {}, body)

    def count(self, path: str) -> int:
        return self.paths.count(path)


def index_yaml(entries: dict[str, list[dict[str, Any]]]) -> bytes:
    """An index.yaml as `helm repo index` writes it."""
    doc = {"apiVersion": "v1", "generated": "2024-05-01T10:00:00Z", "entries": {
        name: [{"apiVersion": "v2", "name": name, "created": "2024-05-01T10:00:00.000000000Z", **v} for v in versions]
        for name, versions in entries.items()}}
    return yaml.safe_dump(doc).encode()


DEMO = ["0.9.0", "1.0.0", "1.2.0", "1.2.5", "1.3.0-beta.1", "1.9.0", "2.0.0", "2.1.0-rc.1"]


class ChartRepository(Origin):
    """A chart repository at `<url>/charts`: `demo` in the DEMO versions, its archives relative to
    the repository (1.9.0 in a subfolder) except 2.0.0, listed by absolute URL on another path; and
    charts that are wrong in one way each."""

    def __init__(self) -> None:
        super().__init__()
        self.archives: dict[tuple[str, str], bytes] = {}
        entries: dict[str, list[dict[str, Any]]] = {"demo": []}
        for version in DEMO:
            data = chart_archive("demo", version)
            self.archives["demo", version] = data
            rel = {"1.9.0": f"archives/demo-{version}.tgz", "2.0.0": ""}.get(version, f"demo-{version}.tgz")
            if rel:
                self.files[f"/charts/{rel}"] = data
                url = rel
            else:
                self.files[f"/downloads/demo-{version}.tgz"] = data
                url = f"{self.url}/downloads/demo-{version}.tgz"
            entries["demo"].append({"version": version, "urls": [url], "digest": sha256(data)})
        tampered = chart_archive("tampered", "1.0.0")
        self.files["/charts/tampered-1.0.0.tgz"] = tampered
        entries["tampered"] = [{"version": "1.0.0", "urls": ["tampered-1.0.0.tgz"],
                                "digest": sha256(chart_archive("other", "1.0.0"))}]
        plain = chart_archive("plain", "1.0.0", compress=False)
        self.files["/charts/plain-1.0.0.tgz"] = plain
        entries["plain"] = [{"version": "1.0.0", "urls": ["plain-1.0.0.tgz"], "digest": sha256(plain)}]
        entries["early"] = [{"version": "0.1.0-alpha.1", "urls": ["early-0.1.0-alpha.1.tgz"], "digest": "0" * 64}]
        self.index = index_yaml(entries)
        self.files["/charts/index.yaml"] = self.index

    @property
    def repo(self) -> str:
        return f"{self.url}/charts"

    @property
    def allow(self) -> tuple[str, ...]:
        return (f"{self.url}/",)


@pytest.fixture
def charts() -> Iterator[ChartRepository]:
    repository = ChartRepository()
    yield repository
    repository.close()


def fetcher(allow: tuple[str, ...] = (), cache: Path | None = None, **settings: Any) -> Fetcher:
    return Fetcher(FetchSettings(allow=allow, **settings), cache_dir=cache)


def unavailable(f: Fetcher, ref: ChartRef) -> ChartUnavailable:
    with pytest.raises(ChartUnavailable) as info:
        fetch_chart(f, ref)
    return info.value


# --- chart repositories ------------------------------------------------------------------------------

@pytest.mark.parametrize("wanted, expected", [
    ("1.2.0", "1.2.0"),
    (" 1.2.0 ", "1.2.0"),
    ("v1.2.0", "1.2.0"),
    (">=1.0.0 <2.0.0", "1.9.0"),
    (">=1.0.0, <1.9.0", "1.2.5"),
    ("^1.2", "1.9.0"),
    ("~1.2", "1.2.5"),
    ("~1.2.1", "1.2.5"),
    ("1.x", "1.9.0"),
    ("1.2.x", "1.2.5"),
    ("1.2 - 1.4", "1.2.5"),
    ("^0 || ^1", "1.9.0"),
    ("<1.0.0", "0.9.0"),
    ("*", "2.0.0"),
    ("", "2.0.0"),
    ("1.3.0-beta.1", "1.3.0-beta.1"),
    (">=1.0.0-0 <1.5.0", "1.3.0-beta.1"),
    (">=2.0.0-0", "2.1.0-rc.1"),
])
def test_a_chart_repository_serves_the_version_helm_chooses(charts, wanted, expected):
    chart = fetch_chart(fetcher(charts.allow), ChartRef("helm", charts.repo, "demo", wanted))
    data = charts.archives["demo", expected]
    assert (chart.name, chart.version, chart.archive) == ("demo", expected, data)
    assert chart.digest == f"sha256:{sha256(data)}"


def test_prereleases_are_left_out_unless_the_range_names_one():
    versions = ["1.0.0", "1.1.0-rc.1", "2.0.0-alpha", "2.0.0-alpha.1", "2.0.0-beta", "2.0.0-rc.1"]
    assert choose(versions, "") == choose(versions, "*") == choose(versions, ">=1.0.0") == "1.0.0"
    assert choose(versions, "^1") == "1.0.0"
    assert choose(versions, ">=1.1.0-0 <1.5.0") == "1.1.0-rc.1"
    assert choose(versions, ">=1.1.0-0 <2.0.0") == "2.0.0-rc.1"  # below 2.0.0, as Masterminds/semver 3.4 has it
    assert choose(versions, ">=2.0.0-alpha <2.0.0-beta") == "2.0.0-alpha.1"
    assert choose(versions, ">=2.0.0-0") == "2.0.0-rc.1"
    assert choose(versions, "^2") is None
    assert choose(["v1.0.0", "1.1.0"], "1.0.0") == "v1.0.0"
    assert choose(versions, "not a range") is None


def test_a_version_in_the_index_that_is_no_semver_is_passed_over(charts):
    data = charts.archives["demo", "1.2.0"]
    charts.files["/charts/index.yaml"] = index_yaml({"demo": [
        {"version": version, "urls": ["demo-1.2.0.tgz"], "digest": sha256(data)}
        for version in ("9" * 5000 + ".0.0", "1.2.0", "latest", "1.1.0-" + "1" * 5000)]})
    for wanted in ("^1", "", ">=1.0.0-0"):
        assert fetch_chart(fetcher(charts.allow), ChartRef("helm", charts.repo, "demo", wanted)).version == "1.2.0"


def test_archive_urls_are_relative_to_the_repository_or_absolute(charts):
    f = fetcher(charts.allow)
    urls = {v: fetch_chart(f, ChartRef("helm", charts.repo + "/", "demo", v)).url
            for v in ("1.2.0", "1.9.0", "2.0.0")}
    assert urls == {"1.2.0": f"{charts.repo}/demo-1.2.0.tgz", "1.9.0": f"{charts.repo}/archives/demo-1.9.0.tgz",
                    "2.0.0": f"{charts.url}/downloads/demo-2.0.0.tgz"}
    assert charts.count("/downloads/demo-2.0.0.tgz") == 1 and charts.count("/charts/index.yaml") == 1


def test_an_archive_whose_digest_is_not_the_index_one_is_a_failure(charts):
    error = unavailable(fetcher(charts.allow), ChartRef("helm", charts.repo, "tampered", "1.0.0"))
    assert error.kind == "failed" and f"the index says {sha256(chart_archive('other', '1.0.0'))}" in error.reason


def test_an_archive_that_is_not_gzip_is_a_failure(charts):
    error = unavailable(fetcher(charts.allow), ChartRef("helm", charts.repo, "plain", "1.0.0"))
    assert error.kind == "failed" and "not a chart archive" in error.reason


@pytest.mark.parametrize("name, wanted, says", [
    ("absent", "1.0.0", "has no chart absent"),
    ("demo", "3.0.0", "no version matching '3.0.0'"),
    ("demo", ">=5.0.0", "no version matching '>=5.0.0'"),
    ("early", "", "only prereleases"),
])
def test_a_chart_or_version_not_in_the_index_is_not_found(charts, name, wanted, says):
    error = unavailable(fetcher(charts.allow), ChartRef("helm", charts.repo, name, wanted))
    assert error.kind == "not found" and says in error.reason, error.reason
    assert error.reason.startswith("not found: ")


def test_an_index_over_the_size_cap_is_a_failure_that_names_its_setting(charts):
    f = fetcher(charts.allow, max_index_bytes=len(charts.index) - 1)
    error = unavailable(f, ChartRef("helm", charts.repo, "demo", "1.2.0"))
    assert error.kind == "failed" and "INFRA_REVIEW_FETCH_MAX_INDEX_BYTES" in error.reason, error.reason
    assert fetch_chart(fetcher(charts.allow, max_index_bytes=len(charts.index)),
                       ChartRef("helm", charts.repo, "demo", "1.2.0")).version == "1.2.0"


def test_an_archive_over_the_size_cap_is_a_failure_that_names_its_setting(charts):
    f = fetcher(charts.allow, max_chart_bytes=100)
    error = unavailable(f, ChartRef("helm", charts.repo, "demo", "1.2.0"))
    assert error.kind == "failed" and "INFRA_REVIEW_FETCH_MAX_CHART_BYTES" in error.reason, error.reason


def test_the_index_is_reused_for_index_max_age_by_the_fetcher_and_from_disk(charts, tmp_path):
    f = fetcher(charts.allow, tmp_path)
    assert fetch_chart(f, ChartRef("helm", charts.repo, "demo", "1.2.0")).version == "1.2.0"
    assert fetch_chart(f, ChartRef("helm", charts.repo, "demo", "^1.2")).version == "1.9.0"
    assert fetch_chart(f, ChartRef("helm", charts.repo, "demo", "^1.2")).version == "1.9.0"
    assert charts.count("/charts/index.yaml") == 1
    other = fetcher(charts.allow, tmp_path)
    assert fetch_chart(other, ChartRef("helm", charts.repo, "demo", "~1.2")).version == "1.2.5"
    assert charts.count("/charts/index.yaml") == 1 and charts.count("/charts/demo-1.2.5.tgz") == 1


def test_threads_sharing_a_fetcher_download_the_index_and_each_archive_once(charts):
    f = fetcher(charts.allow)
    wanted = ["^1", "1.x", ">=1.0.0 <2.0.0", "1.9.0", "~1.2", "1.2.x", "*", ""] * 3
    with ThreadPoolExecutor(8) as pool:
        chosen = list(pool.map(lambda w: fetch_chart(f, ChartRef("helm", charts.repo, "demo", w)).version, wanted))
    assert chosen == ["1.9.0"] * 4 + ["1.2.5"] * 2 + ["2.0.0"] * 2 + chosen[8:] and len(set(chosen)) == 3
    assert sorted(charts.paths) == sorted(["/charts/index.yaml", "/charts/archives/demo-1.9.0.tgz",
                                           "/charts/demo-1.2.5.tgz", "/downloads/demo-2.0.0.tgz"])


def test_an_index_older_than_index_max_age_is_fetched_again(charts, tmp_path):
    f = fetcher(charts.allow, tmp_path, index_max_age=0)
    for _ in range(2):
        assert fetch_chart(f, ChartRef("helm", charts.repo, "demo", "1.x")).version == "1.9.0"
    assert charts.count("/charts/index.yaml") == 2
    assert charts.count("/charts/archives/demo-1.9.0.tgz") == 1  # the version's archive is kept


def test_an_exact_version_comes_from_the_disk_cache_for_a_new_fetcher(charts, tmp_path):
    first = fetch_chart(fetcher(charts.allow, tmp_path), ChartRef("helm", charts.repo, "demo", "1.2.0"))
    requests = len(charts.paths)
    second = fetcher(charts.allow, tmp_path)
    assert fetch_chart(second, ChartRef("helm", charts.repo, "demo", "1.2.0")) == first
    assert len(charts.paths) == requests and second.requests == 0 and charts.connections == requests


# --- what the policy refuses ---------------------------------------------------------------------------

def test_a_chart_repository_on_loopback_without_allow_is_refused_before_any_connection(charts):
    for repo in (charts.repo, charts.repo.replace("http://", "https://")):
        error = unavailable(fetcher(), ChartRef("helm", repo, "demo", "1.2.0"))
        assert error.kind == "refused", error.reason
    assert charts.connections == 0


def test_an_archive_on_an_address_not_allowed_is_refused_before_any_connection(charts):
    elsewhere = Origin({"/demo-1.0.0.tgz": chart_archive("demo", "1.0.0")})
    try:
        data = elsewhere.files["/demo-1.0.0.tgz"]
        charts.files["/charts/index.yaml"] = index_yaml({"demo": [
            {"version": "1.0.0", "urls": [f"{elsewhere.url}/demo-1.0.0.tgz"], "digest": sha256(data)},
            {"version": "1.1.0", "urls": ["https://charts.internal.test/demo-1.0.0.tgz"], "digest": sha256(data)}]})
        named = {"charts.internal.test": "127.0.0.1"}
        f = Fetcher(FetchSettings(allow=charts.allow), None,
                    resolver=lambda host, port: [named.get(host, host)])
        for version in ("1.0.0", "1.1.0"):
            error = unavailable(f, ChartRef("helm", charts.repo, "demo", version))
            assert error.kind == "refused" and "127.0.0.1" in error.reason, error.reason
        assert elsewhere.connections == 0 and charts.paths == ["/charts/index.yaml"]
    finally:
        elsewhere.close()


def test_a_name_resolving_to_a_private_address_is_refused_before_any_connection(charts):
    resolved: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["127.0.0.1"]

    f = Fetcher(FetchSettings(), None, resolver=resolver)
    error = unavailable(f, ChartRef("helm", "https://charts.example.com/stable", "demo", "1.2.0"))
    assert error.kind == "refused" and "loopback" in error.reason and resolved == ["charts.example.com"]


def test_offline_fetches_nothing(charts):
    f = fetcher(charts.allow, enabled=False)
    for ref in (ChartRef("helm", charts.repo, "demo", "1.2.0"), ChartRef("oci", f"oci://{charts.url[7:]}/c", "demo")):
        assert unavailable(f, ref).kind == "offline"
    assert charts.connections == 0 and f.requests == 0


def test_a_public_http_repository_is_refused_before_its_name_is_resolved():
    resolved: list[str] = []
    f = Fetcher(FetchSettings(), None, resolver=lambda host, port: resolved.append(host) or ["93.184.216.34"])
    error = unavailable(f, ChartRef("helm", "http://charts.example.com/stable", "demo", "1.2.0"))
    assert error.kind == "refused" and "only https" in error.reason and resolved == [] and f.requests == 0


def test_a_registry_on_loopback_without_allow_is_refused_before_any_connection(charts):
    host = charts.url.removeprefix("http://")
    for ref in (ChartRef("oci", f"oci://{host}/charts", "demo", "1.2.0"),
                ChartRef("oci", f"oci://{host}/charts", "demo", "^1"),
                ChartRef("oci", f"oci://{host}/charts/demo", "", digest="sha256:" + "a" * 64)):
        error = unavailable(fetcher(), ref)
        assert error.kind == "refused", error.reason
    assert charts.connections == 0


@pytest.mark.parametrize("ref, says", [
    (ChartRef("flux", "https://charts.example.com", "demo"), "not a kind of chart source"),
    (ChartRef("helm", "oci://registry.example.com/charts", "demo"), "needs an http(s) URL"),
    (ChartRef("oci", "https://registry.example.com/charts", "demo"), "needs an oci:// URL"),
    (ChartRef("oci", "oci://registry.example.com/Charts", "demo"), "not an OCI repository name"),
    (ChartRef("oci", "oci://user:pw@registry.example.com/charts", "demo"), "credentials"),
    (ChartRef("oci", "oci://registry.example.com/charts", "demo", "1.0.0", "sha256:nope"), "not a sha256 digest"),
    (ChartRef("oci", "oci://registry.example.com/charts", "demo", "no/such tag"), "not a tag"),
    (ChartRef("oci", "oci://registry.example.com/charts", "demo", "1-" * 50_000), "not a tag"),
    (ChartRef("oci", "oci://registry.example.com/charts", "demo", "1" * 50_000), "not a tag"),
    (ChartRef("helm", "https://charts.example.com", "demo", "latest"), "not a version or a semver range"),
    (ChartRef("helm", "https://charts.example.com", "demo", "1-" * 50_000), "not a version or a semver range"),
    (ChartRef("helm", "https://charts.example.com", "demo", "1.2.3-" + "1" * 50_000 + " x"), "not a version"),
])
def test_a_reference_that_cannot_name_a_chart_is_said_without_a_request(ref, says):
    f = Fetcher(FetchSettings(), None, resolver=lambda host, port: pytest.fail(f"{host} was resolved"))
    start = time.monotonic()
    error = unavailable(f, ref)
    assert says in error.reason and f.requests == 0, error.reason
    assert error.kind == ("refused" if says == "credentials" else "failed")
    assert time.monotonic() - start < 1  # a version from a pull request is read in time linear in its length


# --- OCI registries (a real docker-registry) -------------------------------------------------------

def allow_registry(running: RunningRegistry) -> tuple[str, ...]:
    return (f"{running.url}/",)


def push(running: RunningRegistry, repository: str, versions: list[str]) -> dict[str, tuple[str, bytes]]:
    """Each version pushed under its tag (`+` written `_`); {version: (manifest digest, archive)}."""
    name = repository.rsplit("/", 1)[-1]
    out = {}
    for version in versions:
        archive = chart_archive(name, version)
        out[version] = push_chart(running.url, repository, version.replace("+", "_"), archive, name, version), archive
    return out


@pytest.fixture
def namespace() -> str:
    """A repository path of this test's own in the session's registry."""
    return f"t{uuid.uuid4().hex[:10]}/charts"


def test_a_chart_is_pulled_from_a_registry_by_tag(registry, namespace):
    pushed = push(registry, f"{namespace}/demo", ["1.0.0", "1.1.0"])
    f = fetcher(allow_registry(registry))
    chart = fetch_chart(f, ChartRef("oci", f"{registry.oci}/{namespace}", "demo", "1.0.0"))
    digest, archive = pushed["1.0.0"]
    assert chart == FetchedChart(archive, "demo", "1.0.0", digest, f"{registry.oci}/{namespace}/demo@{digest}")
    by_url = fetch_chart(f, ChartRef("oci", f"{registry.oci}/{namespace}/demo/", "", "1.1.0"))  # an OCIRepository
    assert (by_url.name, by_url.version, by_url.archive) == ("demo", "1.1.0", pushed["1.1.0"][1])


@pytest.mark.parametrize("wanted, expected", [
    (">=1.0.0 <2.0.0", "1.9.0"),
    ("^1.2", "1.9.0"),
    ("~1.2", "1.2.5"),
    ("1.x", "1.9.0"),
    ("*", "2.0.0"),
    ("", "2.0.0"),
    (">=2.0.0-0", "2.1.0-rc.1"),
])
def test_a_semver_range_is_chosen_over_the_registry_tags(registry, namespace, wanted, expected):
    pushed = push(registry, f"{namespace}/demo", DEMO)
    ref = ChartRef("oci", f"{registry.oci}/{namespace}", "demo", wanted)
    chart = fetch_chart(fetcher(allow_registry(registry)), ref)
    assert (chart.version, chart.digest, chart.archive) == (expected, *pushed[expected])


def test_a_tag_that_is_no_version_is_pulled_as_it_is_and_never_kept_by_name(registry, namespace, tmp_path):
    ref = ChartRef("oci", f"{registry.oci}/{namespace}", "demo", "stable")
    for version in ("3.1.0", "3.2.0"):  # the tag moves
        archive = chart_archive("demo", version)
        digest = push_chart(registry.url, f"{namespace}/demo", "stable", archive, "demo", version)
        chart = fetch_chart(fetcher(allow_registry(registry), tmp_path), ref)
        assert (chart.version, chart.digest, chart.archive) == (version, digest, archive)
    again = fetcher(allow_registry(registry), tmp_path)
    assert fetch_chart(again, ref).version == "3.2.0" and again.requests == 1  # the manifest; the blob is kept


def test_the_tag_list_is_reused_for_index_max_age_and_a_version_kept(registry, namespace, tmp_path):
    push(registry, f"{namespace}/demo", ["1.0.0", "1.4.0", "2.0.0"])
    url = f"{registry.oci}/{namespace}"
    f = fetcher(allow_registry(registry), tmp_path)
    assert fetch_chart(f, ChartRef("oci", url, "demo", "^1")).version == "1.4.0"
    assert f.requests == 3  # tags, manifest, blob
    assert fetch_chart(f, ChartRef("oci", url, "demo", "1.x")).version == "1.4.0" and f.requests == 3
    assert fetch_chart(f, ChartRef("oci", url, "demo", ">=2")).version == "2.0.0" and f.requests == 5
    other = fetcher(allow_registry(registry), tmp_path)
    assert fetch_chart(other, ChartRef("oci", url, "demo", "~1.4")).version == "1.4.0" and other.requests == 0
    stale = fetcher(allow_registry(registry), tmp_path, index_max_age=0)
    push(registry, f"{namespace}/demo", ["1.5.0"])
    assert fetch_chart(stale, ChartRef("oci", url, "demo", "^1")).version == "1.5.0"


def test_a_digest_pins_the_manifest_and_wins_over_the_version(registry, namespace):
    pushed = push(registry, f"{namespace}/demo", ["1.0.0", "2.0.0"])
    digest, archive = pushed["2.0.0"]
    f = fetcher(allow_registry(registry))
    chart = fetch_chart(f, ChartRef("oci", f"{registry.oci}/{namespace}", "demo", "1.0.0", digest))
    assert (chart.version, chart.digest, chart.archive) == ("2.0.0", digest, archive)
    error = unavailable(f, ChartRef("oci", f"{registry.oci}/{namespace}", "demo", "2.0.0", "sha256:" + "0" * 64))
    assert error.kind == "not found", error.reason


def test_a_plus_in_a_version_is_an_underscore_in_the_tag(registry, namespace):
    pushed = push(registry, f"{namespace}/demo", ["1.2.3+build.7", "1.2.2"])
    status, _headers, body = request("GET", f"{registry.url}/v2/{namespace}/demo/tags/list")
    assert status == 200 and b"1.2.3_build.7" in body
    f = fetcher(allow_registry(registry))
    for wanted in ("1.2.3+build.7", "~1.2", ">1.2.2"):
        chart = fetch_chart(f, ChartRef("oci", f"{registry.oci}/{namespace}", "demo", wanted))
        assert (chart.version, chart.digest) == ("1.2.3+build.7", pushed["1.2.3+build.7"][0]), wanted


@pytest.mark.parametrize("chart, wanted, says", [
    ("demo", "9.9.9", ":9.9.9 does not exist"),
    ("demo", "^9", "has no tag matching '^9'"),
    ("absent", "1.0.0", "absent:1.0.0 does not exist"),
    ("absent", "^1", "absent has no tags"),
])
def test_a_missing_tag_or_repository_is_not_found(registry, namespace, chart, wanted, says):
    push(registry, f"{namespace}/demo", ["1.0.0"])
    ref = ChartRef("oci", f"{registry.oci}/{namespace}", chart, wanted)
    error = unavailable(fetcher(allow_registry(registry)), ref)
    assert error.kind == "not found" and says in error.reason, error.reason


def test_an_exact_version_from_a_registry_comes_from_the_disk_cache_for_a_new_fetcher(registry, namespace, tmp_path):
    push(registry, f"{namespace}/demo", ["1.0.0"])
    ref = ChartRef("oci", f"{registry.oci}/{namespace}", "demo", "1.0.0")
    first = fetch_chart(fetcher(allow_registry(registry), tmp_path), ref)
    by_digest = ChartRef("oci", f"{registry.oci}/{namespace}", "demo", digest=first.digest)
    second = fetcher(allow_registry(registry), tmp_path)
    assert fetch_chart(second, ref) == first and fetch_chart(second, by_digest) == first
    assert second.requests == 0


def allow_token_registry(guarded: TokenRegistry) -> tuple[str, ...]:
    return (f"{guarded.registry.url}/", f"{guarded.tokens.url}/", f"{guarded.blobs.url}/")


def test_the_registry_token_flow_is_anonymous_and_the_token_goes_to_the_registry_only(registry, token_registry,
                                                                                      namespace):
    pushed = push(registry, f"{namespace}/demo", ["1.0.0", "1.4.0"])
    guarded = token_registry.registry
    assert request("GET", f"{guarded.url}/v2/{namespace}/demo/tags/list")[0] == 401
    tokens, blobs = len(token_registry.tokens.asked), len(token_registry.blobs.requests)
    f = fetcher(allow_token_registry(token_registry))
    chart = fetch_chart(f, ChartRef("oci", f"{guarded.oci}/{namespace}", "demo", "^1"))
    assert (chart.version, chart.digest, chart.archive) == ("1.4.0", *pushed["1.4.0"])
    asked = token_registry.tokens.asked[tokens:]
    assert len(asked) == 1, asked  # one token for the repository: tags, manifest and blob
    query, headers = asked[0]
    assert query == {"service": ["registry.test"], "scope": [f"repository:{namespace}/demo:pull"]}
    assert not {k.lower() for k in headers} & {"authorization", "cookie"}
    [(path, headers)] = token_registry.blobs.requests[blobs:]  # the blob, redirected to storage elsewhere
    assert path.endswith(f"/{sha256(pushed['1.4.0'][1])}/data")
    assert "authorization" not in {k.lower() for k in headers}


def test_a_token_service_not_allowed_is_refused_before_any_connection(registry, token_registry, namespace):
    push(registry, f"{namespace}/demo", ["1.0.0"])
    guarded = token_registry.registry
    before = len(token_registry.tokens.asked)
    f = fetcher((f"{guarded.url}/", f"{token_registry.blobs.url}/"))
    error = unavailable(f, ChartRef("oci", f"{guarded.oci}/{namespace}", "demo", "1.0.0"))
    assert error.kind == "refused" and "/token" in error.reason, error.reason
    assert len(token_registry.tokens.asked) == before and f.requests == 1  # the manifest's 401 only


def test_a_blob_redirected_to_storage_not_allowed_is_refused_before_any_connection(registry, token_registry,
                                                                                   namespace):
    push(registry, f"{namespace}/demo", ["1.0.0"])
    guarded = token_registry.registry
    before = len(token_registry.blobs.requests)
    f = fetcher((f"{guarded.url}/", f"{token_registry.tokens.url}/"))
    error = unavailable(f, ChartRef("oci", f"{guarded.oci}/{namespace}", "demo", "1.0.0"))
    assert error.kind == "refused" and token_registry.blobs.url in error.reason, error.reason
    assert len(token_registry.blobs.requests) == before


def server_certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for `name` and its key, as PEM files."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / f"{name}.pem", directory / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_an_https_registry_is_reached_by_its_name_and_its_certificate_checked(registry, namespace, tmp_path,
                                                                              monkeypatch):
    pushed = push(registry, f"{namespace}/demo", ["1.0.0"])
    cert, key = server_certificate(tmp_path, "registry.test")
    with running_registry(tmp_path / "tls", registry.root, tls={"certificate": str(cert), "key": str(key)}) as tls:
        port = tls.url.rsplit(":", 1)[1]
        resolved: list[str] = []

        def resolver(host: str, p: int) -> list[str]:
            resolved.append(host)
            return ["127.0.0.1"]

        allow = (f"https://registry.test:{port}/", "https://other.test/")
        ref = ChartRef("oci", f"oci://registry.test:{port}/{namespace}", "demo", "1.0.0")
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trusted as a public CA's certificate would be
        chart = fetch_chart(Fetcher(FetchSettings(allow=allow), None, resolver=resolver), ref)
        assert (chart.digest, chart.archive) == pushed["1.0.0"] and set(resolved) == {"registry.test"}
        monkeypatch.delenv("SSL_CERT_FILE")
        error = unavailable(Fetcher(FetchSettings(allow=allow), None, resolver=resolver), ref)
        assert error.kind == "failed" and "TLS" in error.reason, error.reason


# --- what Helm itself makes and pushes -------------------------------------------------------------

def test_charts_packaged_indexed_and_pushed_by_the_helm_sdk_are_read(registry, namespace, tmp_path):
    helm = pytest.importorskip("helm_python", reason="the Helm SDK (helm-python) is not installed")
    (tmp_path / "src").mkdir()
    (tmp_path / "repo").mkdir()
    helm.Chart.create("app", tmp_path / "src")
    archives = {v: Path(helm.package(tmp_path / "src" / "app", destination=tmp_path / "repo", version=v))
                for v in ("1.0.0", "1.1.0+meta", "2.0.0-rc.1")}
    helm.repo_index_generate(tmp_path / "repo")
    origin = Origin({f"/{p.name}": p.read_bytes() for p in (tmp_path / "repo").iterdir()})
    try:
        chart = fetch_chart(fetcher((f"{origin.url}/",)), ChartRef("helm", origin.url, "app", "^1"))
        assert (chart.version, chart.archive) == ("1.1.0+meta", archives["1.1.0+meta"].read_bytes())
        assert chart.url == f"{origin.url}/app-1.1.0+meta.tgz"
    finally:
        origin.close()
    for path in archives.values():
        helm.push(path, f"{registry.oci}/{namespace}", plain_http=True)
    f = fetcher(allow_registry(registry))
    for wanted, expected in (("^1", "1.1.0+meta"), ("1.1.0+meta", "1.1.0+meta"), (">=2.0.0-0", "2.0.0-rc.1")):
        chart = fetch_chart(f, ChartRef("oci", f"{registry.oci}/{namespace}", "app", wanted))
        assert (chart.version, chart.archive) == (expected, archives[expected].read_bytes()), wanted


def test_docker_hub_charts_are_asked_of_its_registry_api_host():
    from bot.fetch.oci import Registry

    f = fetcher()
    assert Registry(f, "oci://docker.io/envoyproxy/gateway-helm", {}).base == "https://registry-1.docker.io"
    assert Registry(f, "oci://ghcr.io/stefanprodan/charts/podinfo", {}).base == "https://ghcr.io"
