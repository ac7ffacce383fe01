"""Hostile pull-request content (issue 15), the heavy families: size and shape bombs, hostile charts
and a pull request changing 5,000 overlays. Each case is a whole `check` run as the CLI in a child
(bounded in time, its peak memory measured, no secret from outside the repository in what it prints,
proxies at a closed port and `--offline`); see tests/hostile.py for what the guards cover. The path,
remote-URL and plugin families are in tests/test_hostile_content.py."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hostile import (
    CONFIGMAP,
    KFILE,
    OFFLINE,
    Layout,
    Ran,
    flux_repo,
    layout_fixture,
    network_guard_fixture,
    run_cli,
    timed,
)
from test_helm_releases import LOCAL, chart_files, release
from trees import write

from bot.model import Target
from bot.render.build import DiskCache, Renderer
from bot.repo.discover import RepoModel
from bot.repo.tree import RepoTree
from bot.review.pipeline import affected_pair, make_model, run_check

layout = pytest.fixture(name="layout")(layout_fixture)
network_guard = pytest.fixture(name="network_guard", autouse=True)(network_guard_fixture)


# --- family 4: size and shape bombs ----------------------------------------------------------------

def _cm(value: str, name: str = "bomb") -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: {value}\n"


def _laughs(levels: int = 9) -> str:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lol\n  annotations:\n    a0: &a0 lol\n"
    for i in range(1, levels + 1):
        text += f"    a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n"
    return text + "data:\n  k: v\n"


def _many_objects(total: int) -> str:
    """About `total` bytes of ConfigMaps, 64 KiB each."""
    value = "x" * 65_000
    return "".join(f"---\n{_cm(value, f'c{i}')}" for i in range(total // 65_000 + 1))


BYTES: dict[str, Callable[[], bytes]] = {
    "flow-nesting-10000": lambda: _cm("[" * 10_000 + "]" * 10_000).encode(),
    "block-nesting-10000": lambda: _cm("\n    " + "- " * 10_000 + "x").encode(),
    "manifest-50MB": lambda: _many_objects(50 * 2**20).encode(),
    "line-10MB": lambda: _cm("x" * (10 * 2**20)).encode(),
    "invalid-utf8": lambda: _cm("ok").encode() + b"  bad: \xff\xfe\xc3\x28\n",
    "nul-bytes": lambda: _cm("a\0b").encode() + b"  nul: \0\0\0\n",
    "duplicate-keys": lambda: _cm("one").encode() + b"  k: two\nmetadata:\n  name: again\n",
    "billion-laughs": lambda: _laughs().encode(),
}
# The build-error each makes, where, and what it says. A line where our own pre-scan or kustomize's
# sentence names one; kustomize's duplicate-key sentence and an output document past YAML's bound
# name none.
BOMB = "overlays/production/bomb.yaml"
EXPECT: dict[str, tuple[str, int | None, str]] = {
    "flow-nesting-10000": (BOMB, 6, "nests deeper than 128 levels"),
    "block-nesting-10000": (BOMB, 7, "nests deeper than 128 levels"),
    "manifest-50MB": (KFILE, None, "INFRA_REVIEW_MAX_TARGET_BYTES"),
    "line-10MB": (KFILE, None, "larger than 4 MiB"),
    "invalid-utf8": (KFILE, 2, "invalid leading UTF-8 octet"),
    "nul-bytes": (KFILE, 2, "control characters are not allowed"),
    "duplicate-keys": (KFILE, None, 'mapping key "metadata" already defined at line 3'),
    "billion-laughs": (BOMB, 12, "more than 250,000 YAML nodes"),
}


def _bomb_repo(layout: Layout, name: str) -> Path:
    write(layout.repo, {KFILE: "resources:\n- bomb.yaml\n"})
    (layout.repo / BOMB).write_bytes(BYTES[name]())
    return layout.repo


def _one_finding(ran: Ran, rules: tuple[str, ...], file: str, line: int | None = None) -> dict:
    found = [f for f in ran.findings(*rules) if f["file"] == file and (line is None or f["line"] == line)]
    assert found, (ran.doc["findings"], ran.stderr[-2000:])
    return found[0]


@pytest.mark.slow
@pytest.mark.parametrize("name", BYTES)
def test_a_size_or_shape_bomb_is_a_finding_in_bounded_time_and_memory(layout, name):
    file, line, says = EXPECT[name]
    finding = _one_finding(run_cli(_bomb_repo(layout, name)), ("build-error",), file, line)
    assert finding["line"] == line and says in finding["message"], finding


def test_two_inputs_over_the_yaml_bound_never_share_a_cached_build(tmp_path):
    """The cache key hashes every byte of every input: it once hashed a file over YAML's 4 MiB bound
    as `<missing>`, so another file of that name and size class got the first one's build."""
    cache = DiskCache(tmp_path / "cache")
    for value in "ab":
        root = write(tmp_path / value, {KFILE: "resources:\n- bomb.yaml\n", BOMB: _cm(value * (5 * 2**20))})
        out = Renderer(RepoModel(RepoTree(root)), cache=cache).render(Target("overlays/production", None, None))
        assert not out.cached and f"k: {value}" in out.text[:200], out.error


@pytest.mark.slow
@pytest.mark.parametrize("name", ["flow-nesting-10000", "billion-laughs", "duplicate-keys"])
def test_a_bomb_in_the_kustomization_itself_is_an_error_at_it(layout, name):
    text = BYTES[name]().decode().replace("data:\n", "resources: []\ndata:\n", 1)
    (layout.repo / "overlays/production").mkdir(parents=True)
    (layout.repo / KFILE).write_text(text)
    ran = run_cli(layout.repo)
    _one_finding(ran, ("build-error",), KFILE)


@pytest.mark.slow
def test_a_tree_of_100000_files_is_a_clear_error(layout):
    write(layout.repo, {KFILE: "resources:\n- cm.yaml\n", "overlays/production/cm.yaml": CONFIGMAP})
    for d in range(100):
        folder = layout.repo / "junk" / f"d{d}"
        folder.mkdir(parents=True)
        for i in range(1000):
            (folder / f"f{i}").write_bytes(b"")
    ran = run_cli(layout.repo)
    assert ran.returncode == 2 and "repository has more than 50000 files" in ran.stderr, (ran.returncode, ran.stderr[-2000:])


# --- family 5: hostile charts ----------------------------------------------------------------------

HELM_TIMEOUT = 5


def _template(body: str) -> str:
    return ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hostile\ndata:\n  k: |\n"
            + textwrap.indent(body, "    ") + "\n")


TEMPLATES = {
    "range-until-10M": _template("{{- range $i := until 10000000 }}{{ $i }},{{ end }}"),
    "repeat-100M": _template('{{ repeat 100000000 "x" }}'),
    "include-itself": '{{- define "loop" }}{{ include "loop" . }}{{- end }}' + _template('{{ include "loop" . }}'),
    "endless-loop": _template("{{- range until 1000000 }}{{- range until 1000000 }}{{ end }}{{ end }}"),
}


def _chart_repo(layout: Layout, templates: dict[str, str], chart: dict[str, str] | None = None) -> Path:
    files = {**(chart or chart_files()), "deploy/kustomization.yaml": "resources:\n- release.yaml\n",
             "deploy/release.yaml": release(LOCAL)}
    files.update({f"charts/app/templates/{name}": text for name, text in templates.items()})
    return flux_repo(layout, files)


def _helm(root: Path) -> Ran:
    return run_cli(root, env={"INFRA_REVIEW_HELM_TIMEOUT": str(HELM_TIMEOUT)})


@pytest.mark.slow
@pytest.mark.parametrize("name", TEMPLATES)
def test_a_hostile_template_is_a_chart_error_within_the_helm_timeout(layout, name):
    root = _chart_repo(layout, {"hostile.yaml": TEMPLATES[name]})
    ran = _helm(root)
    finding = _one_finding(ran, ("chart-error",), "deploy/release.yaml")
    assert ran.seconds < 4 * HELM_TIMEOUT + 30, f"{ran.seconds:.0f} s"
    assert finding["line"] is not None, finding
    if name == "endless-loop":
        assert "INFRA_REVIEW_HELM_TIMEOUT" in finding["message"], finding["message"]


@pytest.mark.slow
def test_a_chart_reads_nothing_outside_itself(layout):
    """`.Files.Get` of paths out of the chart, a template symlinked outside and a dependency at a
    `file://` path outside: the secret beside the repository is never rendered."""
    root = _chart_repo(layout, {
        "files.yaml": _template('{{ .Files.Get "../../../outside/secret.yaml" }}{{ .Files.Get "/etc/passwd" }}'
                                '{{ .Files.Get "../../outside/secret.env" }}{{ range $p, $_ := .Files.Glob "../**" }}'
                                '{{ $p }}{{ end }}'),
    })
    (root / "charts/app/templates/link.yaml").symlink_to(layout.outside / "secret.yaml")
    (root / "charts/app/files").symlink_to(layout.outside)
    ran = _helm(root)
    assert not ran.findings("chart-error"), ran.findings("chart-error")
    assert any(f["rule"] == "missing-labels" and f["file"].startswith("charts/app/templates/files.yaml")
               for f in ran.doc["findings"]), "the chart was rendered"


@pytest.mark.slow
def test_a_chart_dependency_outside_the_repository_is_a_chart_error(layout):
    chart = {**chart_files(), "charts/app/Chart.yaml": "apiVersion: v2\nname: app\nversion: 1.0.0\ndependencies:\n"
                                               f"- name: stolen\n  version: 1.0.0\n  repository: file://{layout.outside}/chart\n"}
    root = _chart_repo(layout, {"cm.yaml": _template("ok")}, chart)
    finding = _one_finding(_helm(root), ("chart-error",), "deploy/release.yaml")
    assert "missing in charts/" in finding["message"], finding


# --- family 6: a pull request changing 5,000 overlays ----------------------------------------------

OVERLAYS = 5000
# Measured on 2 cores (this suite's machine): the whole check takes 269 s (362 s before builds ran with
# Go's collector off), of which discovery and `affected` (both sides) 3.6 s. Each side builds every
# overlay, one `kubectl kustomize` process each, about 50 ms, most of it the process's start
# (`kubectl version` alone takes 40-50 ms): 10,000 builds are minutes on 2 cores however fast the
# rest is, so a minute needs many targets per kustomize process, not a fix here. Not run: it would
# take four and a half minutes.
MEASURED = "269 s on 2 cores (10,000 kustomize builds at about 50 ms each)"


def _overlays(root: Path, count: int, value: str) -> frozenset[str]:
    changed = []
    for i in range(count):
        folder = root / f"overlays/o{i}"
        folder.mkdir(parents=True)
        (folder / "kustomization.yaml").write_text("resources:\n- cm.yaml\n")
        (folder / "cm.yaml").write_text(CONFIGMAP.replace("name: c", f"name: c{i}").replace("k: v", f"k: {value}"))
        changed += [f"overlays/o{i}/kustomization.yaml", f"overlays/o{i}/cm.yaml"]
    return frozenset(changed)


@pytest.fixture(scope="module")
def five_thousand(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, frozenset[str]]:
    root = tmp_path_factory.mktemp("many")
    changed = _overlays(root / "head", OVERLAYS, "new")
    _overlays(root / "base", OVERLAYS, "old")
    return root / "head", root / "base", changed


@pytest.mark.slow
def test_5000_changed_overlays_are_found_affected_quickly(five_thousand):
    """What is ours in a large pull request: discovery of both sides and which targets the change
    reaches (every changed path was once asked about every target: 50 million questions)."""
    head, base, changed = five_thousand
    with timed(30):
        affected = affected_pair(make_model(head, OFFLINE), make_model(base, OFFLINE), changed)
    assert [len(side or ()) for side in affected] == [OVERLAYS, OVERLAYS]


@pytest.mark.slow
@pytest.mark.xfail(run=False, strict=True, reason=f"measured {MEASURED}: 10,000 kustomize builds on 2 cores")
def test_5000_changed_overlays_are_checked_under_a_minute(five_thousand):
    head, base, changed = five_thousand
    started = time.monotonic()
    report = run_check(head, base, OFFLINE, changed=changed, affected_only=True, cache=DiskCache(None))
    assert len(report.targets) == OVERLAYS
    assert time.monotonic() - started < 60
