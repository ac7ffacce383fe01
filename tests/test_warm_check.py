"""A check from the caches says exactly what a cold one says (issue 15: the warm check): the render
cache keeps each build's output parsed, the parsed source files are kept by content, cached targets
are read on the calling thread, and Flux's post-build writes YAML only for objects it can change."""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from conftest_paths import CORPUS, REPO, needs
from trees import flux_kustomization, write

import bot.render.build as build
import bot.render.flux as flux
import bot.repo.kustomization as kustomization_module
import bot.repo.tree as tree_module
import bot.review.pipeline as pipeline
import bot.review.verdicts as verdicts
from bench.bruteforce import apply_mutation, sample_files
from bench.generate import generate
from bot.config import Config
from bot.diskcache import BoundedFolder
from bot.fetch import FetchSettings
from bot.model import ResourceId
from bot.objects import RenderedObject
from bot.process import THRESHOLDS
from bot.publish.jsonout import render_json
from bot.render.build import DiskCache, Renderer
from bot.repo.discover import RepoModel
from bot.repo.tree import RepoTree
from bot.review.pipeline import run_check
from bot.yamlpos import YamlError, dump_docs, dump_error, load_docs, undump_docs
from rules import creators, sops_coverage
from rules.repo_checks import RepoScope

CONFIG = replace(Config.default(), fetch_enabled=False)
REPOS = sorted(p.name for p in CORPUS.iterdir() if p.is_dir()) if CORPUS.is_dir() else []
in_corpus = needs(CORPUS, "the real-repository corpus")


def _report(root: Path, cache: Path) -> str:
    return render_json(run_check(root, None, CONFIG, cache=DiskCache(cache)))


@pytest.mark.parametrize("repo", ["generated", "example"])
def test_a_check_from_the_caches_reports_what_a_cold_check_reports(tmp_path, repo, monkeypatch):
    root = tmp_path / "repo"
    if repo == "generated":
        generate(3, root)  # Flux targets with postBuild substitution, as bench/perf.py measures
    else:
        shutil.copytree(REPO / "examples" / "repo", root)
    cold = _report(root, tmp_path / "cache")
    monkeypatch.setattr(build, "_output_docs", lambda *_a: pytest.fail("a cached build's output was parsed again"))
    monkeypatch.setattr(tree_module, "load_docs", lambda *_a: pytest.fail("a source file was parsed again"))
    assert _report(root, tmp_path / "cache") == cold


def test_an_edited_file_is_parsed_again_and_its_change_reported(tmp_path):
    root = tmp_path / "repo"
    generate(3, root)
    before = _report(root, tmp_path / "cache")
    patch = root / "overlays/production/svc0001/patch-deployment.yaml"
    patch.write_text(patch.read_text().replace("          env:", "          securityContext: {privileged: true}\n"
                                                                 "          env:"))
    after = _report(root, tmp_path / "cache")
    def privileged(report: str) -> list[dict]:
        return [f for f in json.loads(report)["findings"] if "a privileged container" in f["message"]]

    assert privileged(before) == []
    assert [(f["file"], f["environment"]) for f in privileged(after)] == [(str(patch.relative_to(root)), "production")]
    assert after == _report(root, tmp_path / "fresh-cache")


def test_parsed_documents_survive_json_with_their_lines():
    text = "a: 1\nb:\n  - x\n  - y: [1, 2]\n---\nc: {d: e}\n"
    docs = load_docs(text)
    dumped = dump_docs(docs)
    assert dumped is not None
    again = undump_docs(dumped)
    assert again is not None
    for one, two in zip(docs, again, strict=True):
        assert (one.data, one.line, one.end_line, one.nodes) == (two.data, two.line, two.end_line, two.nodes)
        for path in (("b", 1, "y", 1), ("b",), ("c", "d"), ("a",), ("missing",)):
            assert one.span(path) == two.span(path)


@pytest.mark.parametrize("text", ["1: one\n", "true: yes\n", "x: .nan\n", "x: !!binary aGk=\n"])
def test_documents_json_cannot_hold_exactly_are_not_kept(text):
    assert dump_docs(load_docs(text)) is None


def test_a_refusal_is_kept_with_its_line():
    with pytest.raises(YamlError) as caught:
        load_docs("a: [\n", "f.yaml")
    with pytest.raises(YamlError) as again:
        undump_docs(dump_error(caught.value))
    assert (again.value.message, again.value.line) == (caught.value.message, caught.value.line)


@pytest.mark.parametrize("data", [b"", b"{", b"[[1, 0, 1, 1, null, 0]]", b'[["x", "0", 1, 1, [1, 1, null], 0]]', b"[1]",
                                  b'{"error": 1}', b'{"error": [1, 2]}', b'{"other": []}'])
def test_an_unusable_parsed_entry_is_a_miss(data):
    assert undump_docs(data) is None


def test_a_tree_reads_a_parsed_file_back_until_its_text_changes(tmp_path, monkeypatch):
    write(tmp_path / "repo", {"a.yaml": "kind: ConfigMap\ndata:\n  k: v\n", "odd.yaml": "1: one\n"})
    folder = BoundedFolder(tmp_path / "parsed", ".json", 2**20, 3600)
    first = RepoTree(tmp_path / "repo", parsed=folder).docs("a.yaml")
    calls: list[str] = []
    real = tree_module.load_docs
    monkeypatch.setattr(tree_module, "load_docs", lambda text, name: calls.append(name) or real(text, name))
    again = RepoTree(tmp_path / "repo", parsed=folder)
    assert [d.data for d in again.docs("a.yaml")] == [d.data for d in first] and calls == []
    assert again.docs("a.yaml")[0].span(("data", "k")) == (3, 3)
    assert RepoTree(tmp_path / "repo", parsed=folder).docs("odd.yaml")[0].data == {1: "one"}
    assert calls == ["odd.yaml"]  # not kept: JSON would make its key a string
    (tmp_path / "repo" / "a.yaml").write_text("kind: ConfigMap\ndata:\n  k: w\n")
    assert RepoTree(tmp_path / "repo", parsed=folder).docs("a.yaml")[0].data["data"] == {"k": "w"}
    assert calls == ["odd.yaml", "a.yaml"]
    (tmp_path / "repo" / "bad.yaml").write_text("a: [\n")
    errors = []
    for _ in range(2):
        with pytest.raises(YamlError) as caught:
            RepoTree(tmp_path / "repo", parsed=folder).docs("bad.yaml")
        errors.append((caught.value.message, caught.value.line))
    assert calls == ["odd.yaml", "a.yaml", "bad.yaml"] and errors[0] == errors[1]  # refused once, then kept


FLUX_SUBSTITUTING = flux_kustomization("./apps").replace("  prune: true\n", """\
  prune: true
  commonMetadata:
    labels: {team: platform}
  postBuild:
    substitute: {REGION: eu-west-1}
""")


def _flux_repo(root: Path) -> RepoModel:
    write(root, {
        "clusters/production/apps.yaml": FLUX_SUBSTITUTING,
        "apps/kustomization.yaml": "resources: [plain.yaml, templated.yaml]\n",
        "apps/plain.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\ndata: {a: b}\n",
        "apps/templated.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: templated}\n"
                               "data: {region: '${REGION}', price: '$$5'}\n",
    })
    return RepoModel(RepoTree(root))


def test_post_build_writes_yaml_only_for_objects_holding_a_dollar(tmp_path, monkeypatch):
    model = _flux_repo(tmp_path / "repo")
    dumped: list[str] = []
    real = flux.dump
    monkeypatch.setattr(flux, "dump", lambda obj, **kw: dumped.append(obj["metadata"]["name"]) or real(obj, **kw))
    out = Renderer(model, cache=DiskCache(None), fetch=FetchSettings()).render(model.targets[0])
    assert out.ok, out.error
    by_name = {ro.name: ro for ro in out.objects}
    assert by_name["templated"].obj["data"] == {"region": "eu-west-1", "price": "$5"}
    assert by_name["plain"].obj["metadata"]["labels"] == {"team": "platform"}
    assert dumped == ["templated"]  # the output text is written only when asked for
    assert "region: eu-west-1" in out.text and "team: platform" in out.text
    assert by_name["templated"].origin("data.region").file == "clusters/production/apps.yaml"


def test_the_builds_object_is_not_changed_by_post_build(tmp_path):
    model = _flux_repo(tmp_path / "repo")
    renderer = Renderer(model, cache=DiskCache(tmp_path / "cache"), fetch=FetchSettings())
    first = renderer.render(model.targets[0])
    second = Renderer(model, cache=DiskCache(tmp_path / "cache"), fetch=FetchSettings()).render(model.targets[0])
    assert second.cached and [ro.obj for ro in second.objects] == [ro.obj for ro in first.objects]
    assert first.text == second.text


def test_what_substitution_made_is_kept_with_the_build_for_the_same_variables(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    _flux_repo(root)
    write(root, {
        "clusters/production/apps.yaml": FLUX_SUBSTITUTING.replace(
            "    substitute: {REGION: eu-west-1}\n",
            "    substitute: {REGION: eu-west-1}\n    substituteFrom: [{kind: ConfigMap, name: vars}]\n"),
        "clusters/production/vars.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: vars, namespace: flux-system}\n"
                                         "data: {ZONE: a}\n",
        "apps/templated.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: templated}\n"
                               "data: {region: '${REGION}', zone: '${ZONE}', missing: '${NOPE}'}\n",
    })

    def render() -> build.Rendered:
        model = RepoModel(RepoTree(root))
        target = next(t for t in model.targets if t.path == "apps")
        out = Renderer(model, cache=DiskCache(tmp_path / "cache"), fetch=FetchSettings()).render(target)
        assert out.ok, out.error
        return out

    cold = render()
    substituted: list[str] = []
    real = flux._substitute
    monkeypatch.setattr(flux, "_substitute", lambda obj, *a: substituted.append(obj["metadata"]["name"]) or real(obj, *a))
    warm = render()
    assert warm.cached and substituted == []
    assert [ro.obj for ro in warm.objects] == [ro.obj for ro in cold.objects] and warm.notes == cold.notes
    assert "variable ${NOPE} is not defined (left as is)" in warm.notes
    templated = next(ro for ro in warm.objects if ro.name == "templated")
    assert templated.obj["data"]["zone"] == "a"
    assert templated.origin("data.region") == next(ro for ro in cold.objects if ro.name == "templated").origin("data.region")
    (root / "clusters/production/vars.yaml").write_text(
        (root / "clusters/production/vars.yaml").read_text().replace("ZONE: a", "ZONE: b"))
    changed = render()  # the variables' sources are inputs of the build
    assert not changed.cached and substituted == ["plain", "templated"]
    assert next(ro for ro in changed.objects if ro.name == "templated").obj["data"]["zone"] == "b"
    substituted.clear()
    assert render().cached and substituted == []
    model = RepoModel(RepoTree(root))
    target = next(t for t in model.targets if t.path == "apps")
    entry = DiskCache(tmp_path / "cache").get(Renderer(model, cache=DiskCache(None)).input_key(target) or "")
    assert entry is not None and isinstance(entry.get("post"), str)
    other = json.dumps({**json.loads(entry["post"]), "variables": "made with other values"})
    _text, pairs = build._read(entry, target.path)
    built = [RenderedObject(doc, ResourceId.of(doc), target) for doc, _origin in pairs]
    for kept, again in ((entry["post"], []), (other, ["plain", "templated"]), ("{", ["plain", "templated"])):
        substituted.clear()
        out, made = flux.post_build(model, build.Rendered(target, objects=list(built)), kept)
        assert substituted == again and (made is None) == (again == [])
        assert [ro.obj for ro in out.objects] == [ro.obj for ro in changed.objects]


def test_a_parsed_output_json_cannot_hold_is_read_from_the_text():
    raw = {"rc": 0, "stdout": "x", "injected": False}
    assert build._with_parsed(raw, "1: one\n", [({1: "one"}, None)]) is raw
    kept = build._with_parsed(raw, "a: b\n", [({"a": "b"}, {"path": "x.yaml"})])
    assert build._parsed(kept) == ("a: b\n", [({"a": "b"}, {"path": "x.yaml"})])
    assert build._parsed(kept) is not build._parsed(kept)
    for broken in ("{", "[1]", '["t", [["a", null]]]', '[1, []]'):
        assert build._parsed({**raw, "parsed": broken}) is None


def test_cached_targets_are_read_without_threads(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    generate(2, root)
    model = RepoModel(RepoTree(root))
    cache = DiskCache(tmp_path / "cache")
    cold = Renderer(model, cache=cache, fetch=FetchSettings()).render_all(model.targets)
    submitted: list[object] = []
    real = build.ThreadPoolExecutor.submit
    monkeypatch.setattr(build.ThreadPoolExecutor, "submit", lambda self, fn, *a: submitted.append(a) or real(self, fn, *a))
    heard: list[str] = []
    warm = Renderer(RepoModel(RepoTree(root)), cache=DiskCache(tmp_path / "cache"),
                    fetch=FetchSettings()).render_all(model.targets, on_done=lambda r: heard.append(r.target.path))
    assert submitted == [] and all(r.cached for r in warm)
    assert [r.target for r in warm] == [r.target for r in cold] and sorted(heard) == sorted(t.path for t in model.targets)
    assert [[ro.obj for ro in r.objects] for r in warm] == [[ro.obj for ro in r.objects] for r in cold]


# --- environments judged by an earlier check (bot.review.verdicts) --------------------------------
def _without_verdicts(directory: Path) -> DiskCache:
    cache = DiskCache(directory)
    cache.verdicts = BoundedFolder(None, ".json", 0, 0)
    return cache


def _rendering(monkeypatch) -> list[str]:
    """The paths of the targets rendered from now on (environment/path)."""
    seen: list[str] = []
    real = Renderer.render

    def render(self, target):
        seen.append(f"{target.environment}:{target.path}")
        return real(self, target)
    monkeypatch.setattr(Renderer, "render", render)
    return seen


def _check(root: Path, cache: DiskCache, config: Config = CONFIG) -> str:
    return render_json(run_check(root, None, config, cache=cache))


def test_a_second_check_reuses_every_environment(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    generate(3, root)
    cold = _check(root, DiskCache(tmp_path / "cache"))
    rendered = _rendering(monkeypatch)
    assert _check(root, DiskCache(tmp_path / "cache")) == cold
    assert rendered == []


def test_a_production_patch_renders_production_alone_and_reports_what_a_full_check_reports(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    generate(3, root)
    _check(root, DiskCache(tmp_path / "cache"))
    patch = root / "overlays/production/svc0001/patch-deployment.yaml"
    patch.write_text(patch.read_text().replace("          env:", "          securityContext: {privileged: true}\n"
                                                                 "          env:"))
    rendered = _rendering(monkeypatch)
    warm = _check(root, DiskCache(tmp_path / "cache"))
    assert sorted(rendered) == [f"production:overlays/production/svc000{i}" for i in range(3)]
    assert warm == _check(root, _without_verdicts(tmp_path / "cache"))
    assert "a privileged container" in warm


@pytest.mark.parametrize("edit", [
    "base/svc0001/service.yaml",  # a Service: route-backend looks Services up across the repository
    "overlays/production/svc0001/kustomization.yaml",  # the build graph
    "clusters/production/svc0001.yaml",  # a Flux object
    "overlays/production/svc0001/new.yaml",  # a new file
    "docs/notes.md",  # a file nothing reads
])
def test_a_change_that_concerns_every_environment_renders_them_all(tmp_path, monkeypatch, edit):
    root = tmp_path / "repo"
    generate(3, root)
    _check(root, DiskCache(tmp_path / "cache"))
    path = root / edit
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((path.read_text() if path.exists() else "") + "# edited\n")
    rendered = _rendering(monkeypatch)
    warm = _check(root, DiskCache(tmp_path / "cache"))
    assert {r.split(":")[0] for r in rendered} == {"production", "staging", "development"}
    assert warm == _check(root, _without_verdicts(tmp_path / "cache"))


def test_another_configuration_or_engine_is_another_verdict(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    generate(2, root)
    _check(root, DiskCache(tmp_path / "cache"))
    rendered = _rendering(monkeypatch)
    stricter = replace(CONFIG, severities={"missing-probes": {"*": "error"}})
    assert _check(root, DiskCache(tmp_path / "cache"), stricter) == _check(root, _without_verdicts(tmp_path / "c2"),
                                                                           stricter)
    assert len([r for r in rendered if r.startswith("staging:")]) == 4  # both checks of the new configuration
    rendered.clear()
    monkeypatch.setattr(verdicts, "code_digest", lambda: "another engine")
    _check(root, DiskCache(tmp_path / "cache"))
    assert len(rendered) == 6


@pytest.mark.parametrize("tree", ["repo", "fleet"])
def test_the_examples_from_their_verdicts_read_as_checked(tmp_path, monkeypatch, tree):
    root = tmp_path / tree
    shutil.copytree(REPO / "examples" / tree, root)
    cold = _check(root, DiskCache(tmp_path / "cache"))
    assert _check(root, DiskCache(tmp_path / "cache")) == cold


def test_an_unreadable_verdict_is_checked_again(tmp_path):
    root = tmp_path / "repo"
    generate(2, root)
    cold = _check(root, DiskCache(tmp_path / "cache"))
    entries = list((tmp_path / "cache" / "verdicts").rglob("*.json"))
    assert len(entries) == 3
    for entry in entries:
        entry.write_text('{"statuses": []}')
    assert _check(root, DiskCache(tmp_path / "cache")) == cold


@in_corpus
@pytest.mark.slow
@pytest.mark.parametrize("repo", REPOS)
def test_verdicts_agree_with_a_full_check_on_the_corpus(repo, tmp_path):
    """Differential: after each sampled change (bench/bruteforce.py's), a check that reuses verdicts
    reports exactly what a check without them reports."""
    root = tmp_path / "repo"
    shutil.copytree(CORPUS / repo, root)
    files = sample_files(RepoModel(RepoTree(root)), 6)
    _check(root, DiskCache(tmp_path / "cache"))
    for rel, _category in files:
        apply_mutation(root, rel, "change")
        warm = _check(root, DiskCache(tmp_path / "cache"))
        assert warm == _check(root, _without_verdicts(tmp_path / "cache")), rel


@pytest.mark.parametrize("tree", ["generated", "repo", "fleet"])
def test_a_whole_check_reports_what_checking_every_target_reports(tmp_path, monkeypatch, tree):
    """check_whole (the verdicts' pipeline) against check_repository, the one reviews use."""
    root = tmp_path / tree
    if tree == "generated":
        generate(3, root)
    else:
        shutil.copytree(REPO / "examples" / tree, root)
    whole = _check(root, DiskCache(tmp_path / "cache"))
    monkeypatch.setattr(pipeline, "check_whole", lambda model, config, targets, **kw: pipeline.check_repository(
        model, config, targets=targets, **kw))
    assert _check(root, DiskCache(tmp_path / "cache")) == whole


def test_a_kept_finding_is_the_finding():
    from bot.model import Finding, Origin, ResourceId, Suggestion

    f = Finding("missing-probes", "error", "production", "m", "r", target="overlays/production",
                resource=ResourceId("apps", "v1", "Deployment", "shop", "api"), container="api", field="spec.x",
                origin=Origin("a.yaml", 3, 4, "patch", "d"), suggestion=Suggestion("a.yaml", 3, 4, "x: 1\n"),
                new=False, suppressed=True, suppression_reason="why", places=(("a.yaml", 1, 9),), located="spec.y")
    again = verdicts.finding_of(json.loads(json.dumps(verdicts.finding_data(f))))
    assert again == f and again.places == f.places and again.located == f.located
    assert set(verdicts.finding_data(f)) == {field.name for field in dataclasses.fields(Finding)}


# --- discovery parses only what can hold what it looks for ------------------------------------------
ESCAPED_FLUX = flux_kustomization("./apps").replace("apiVersion: kustomize.toolkit.fluxcd.io/v1",
                                                    'apiVersion: "kustomize.toolkit.\\x66luxcd.io/v1"')


def test_a_flux_object_behind_an_escape_is_found(tmp_path):
    write(tmp_path, {"clusters/production/apps.yaml": ESCAPED_FLUX, "apps/cm.yaml": "kind: ConfigMap\n"})
    model = RepoModel(RepoTree(tmp_path))
    assert [(f.kind, f.name) for f in model.flux_objects] == [("Kustomization", "apps")]
    assert [t.path for t in model.targets] == ["apps"]


def _parsed_files(monkeypatch) -> list[str]:
    """The files parsed from now on, in order."""
    parsed: list[str] = []
    real = RepoTree.docs
    monkeypatch.setattr(RepoTree, "docs", lambda self, rel: parsed.append(rel) or real(self, rel))
    return parsed


# Lookups of one kind across the repository: (apiVersion, kind, the kind behind a YAML escape, what the
# lookup finds, as the names of the objects it found).
LOOKUPS = {
    "crds": ("apiextensions.k8s.io/v1", "CustomResourceDefinition", "CustomResource\\x44efinition",
             lambda model: sorted(obj["metadata"]["name"] for _rel, obj in model.source_objects("CustomResourceDefinition"))),
    "sops-coverage": ("v1", "Secret", "Secr\\x65t", lambda model: sorted(
        f.resource.name for f in sops_coverage.check_repo(RepoScope(model, CONFIG), sops_coverage.RULE) if f.resource)),
    "creators": ("triggers.tekton.dev/v1beta1", "EventListener", "Event\\x4cistener", lambda model: sorted(
        name.removeprefix("el-") for kind, _ns, name in creators.repo_created(model) if kind == "Service")),
}


@pytest.mark.parametrize(("api", "kind", "escaped", "lookup"), LOOKUPS.values(), ids=LOOKUPS.keys())
def test_a_lookup_of_one_kind_parses_only_files_that_can_name_it(tmp_path, monkeypatch, api, kind, escaped, lookup):
    document = "apiVersion: {api}\nkind: {kind}\nmetadata: {{name: {name}, namespace: ci}}\nstringData: {{password: hunter2}}\n"
    write(tmp_path, {
        "overlays/production/plain.yaml": document.format(api=api, kind=kind, name="a"),
        "overlays/production/escaped.yaml": document.format(api=api, kind=f'"{escaped}"', name="b"),
        "overlays/production/deploy.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: c}\n",
    })
    model = RepoModel(RepoTree(tmp_path))
    parsed = _parsed_files(monkeypatch)
    assert lookup(model) == ["a", "b"]
    assert sorted(set(parsed)) == ["overlays/production/escaped.yaml", "overlays/production/plain.yaml"]


def test_a_kustomization_is_read_once_per_tree_and_its_error_every_time_asked(tmp_path, monkeypatch):
    write(tmp_path, {"a/kustomization.yaml": "resources: [cm.yaml]\n", "a/cm.yaml": "kind: ConfigMap\n",
                     "b/kustomization.yaml": "resources: [/etc/passwd]\n"})
    tree = RepoTree(tmp_path)
    loads: list[str] = []
    real = kustomization_module._load_kustomization
    monkeypatch.setattr(kustomization_module, "_load_kustomization",
                        lambda t, d: loads.append(d) or real(t, d))
    first = kustomization_module.load_kustomization(tree, "a")
    assert kustomization_module.load_kustomization(tree, "a") is first and [r.path for r in first.refs] == ["a/cm.yaml"]
    errors = []
    for _ in range(2):
        with pytest.raises(kustomization_module.BuildError) as caught:
            kustomization_module.load_kustomization(tree, "b")
        errors.append(caught.value)
    assert errors[0] is not errors[1] and str(errors[0]) == str(errors[1])
    assert "absolute path" in errors[0].message and (errors[0].file, errors[0].line) == ("b/kustomization.yaml", 1)
    assert loads == ["a", "b"]


def test_a_file_is_read_whole_even_when_it_grew_after_its_size_was_taken():
    reader, writer = os.pipe()
    os.write(writer, b"x" * 60_000)  # within a pipe's buffer
    os.close(writer)
    try:
        assert tree_module._read_all(reader, 10, 200_000) == b"x" * 60_000
    finally:
        os.close(reader)
    reader, writer = os.pipe()
    os.write(writer, b"y" * 5_000)
    os.close(writer)
    try:
        assert tree_module._read_all(reader, 10, 1_001) == b"y" * 1_001  # never past the limit
    finally:
        os.close(reader)


# --- what changed is built while the verdicts are looked up ------------------------------------------
def test_a_prefetched_build_is_the_one_rendered(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    generate(2, root)
    model = RepoModel(RepoTree(root))
    builds: list[str] = []
    real = build.run_build
    monkeypatch.setattr(build, "run_build", lambda kz, scratch, path, **kw: builds.append(path) or real(kz, scratch, path, **kw))
    renderer = Renderer(model, cache=DiskCache(tmp_path / "cache"), fetch=FetchSettings())
    renderer.prefetch(list(model.targets))
    out = renderer.render_all(model.targets[:3])
    renderer.finish()
    assert all(r.ok and not r.cached for r in out)
    again = Renderer(RepoModel(RepoTree(root)), cache=DiskCache(tmp_path / "cache"), fetch=FetchSettings())
    assert all(r.cached for r in again.render_all(RepoModel(RepoTree(root)).targets))  # the rest, built for the cache
    assert sorted(builds) == sorted(t.path for t in model.targets)  # each built once


def test_the_cli_leaves_no_temporary_folder_behind(tmp_path):
    """`python -m bot check` exits without tearing its objects down, after what must run at exit."""
    root = tmp_path / "repo"
    generate(1, root)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "INFRA_REVIEW_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "bot", "check", str(root), "--offline", "--format", "json"],
                         capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 1 and json.loads(out.stdout)["summary"]["errors"] > 0, out.stderr
    assert list(scratch.iterdir()) == []


def test_the_cli_collects_garbage_less_often_than_python_does(tmp_path):
    root = tmp_path / "repo"
    generate(1, root)
    env = {**os.environ, "INFRA_REVIEW_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    for argv, expected in ((["check", str(root), "--offline"], THRESHOLDS), (["rules"], gc.get_threshold())):
        program = ("import atexit, gc, sys\n"
                   "atexit.register(lambda: print('thresholds', *gc.get_threshold(), file=sys.stderr))\n"
                   "from bot.__main__ import main\n"
                   f"sys.argv = ['infra-review', *{argv!r}]\n"
                   "sys.exit(main())\n")
        out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, check=False)
        assert f"thresholds {' '.join(map(str, expected))}" in out.stderr.splitlines(), out.stderr
