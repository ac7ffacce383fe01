"""A check from the caches says exactly what a cold one says (issue 15: the warm check): the render
cache keeps each build's output parsed, the parsed source files are kept by content, cached targets
are read on the calling thread, and Flux's post-build writes YAML only for objects it can change."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from conftest_paths import REPO
from trees import flux_kustomization, write

import bot.render.build as build
import bot.render.flux as flux
import bot.repo.tree as tree_module
from bench.generate import generate
from bot.config import Config
from bot.diskcache import BoundedFolder
from bot.fetch import FetchSettings
from bot.publish.jsonout import render_json
from bot.render.build import DiskCache, Renderer
from bot.repo.discover import RepoModel
from bot.repo.tree import RepoTree
from bot.review.pipeline import run_check
from bot.yamlpos import YamlError, dump_docs, dump_error, load_docs, undump_docs

CONFIG = replace(Config.default(), fetch_enabled=False)


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
