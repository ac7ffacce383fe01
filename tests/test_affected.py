"""`affected()` tested by brute force on the real corpus: mutate one file (delete, change, rename),
rebuild every target, and check that every target whose output changed was reported.

The prediction is affected() on the original model united with affected() on the mutated one (see
bench/bruteforce.py for why). Recall must be 1.0; precision is printed.
"""

from __future__ import annotations

import random
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest_paths import CORPUS, needs

from bench.bruteforce import (
    MUTATION_KEY,
    TextRenderer,
    check_mutations,
    mutate_text,
    sample_files,
    target_id,
)
from bot.render.build import DiskCache
from bot.repo.discover import RepoModel
from bot.repo.tree import RepoTree

REPOS = sorted(p.name for p in CORPUS.iterdir() if p.is_dir()) if CORPUS.is_dir() else []
in_corpus = needs(CORPUS, "the real-repository corpus")
# The two large repositories rebuild a whole-cluster target on most mutations: smaller samples there.
SAMPLE = {"billimek__k8s-gitops": 5, "onedr0p__home-ops": 8}
DEFAULT_SAMPLE = 14
RENAMES = 3
WHOLE_TREE_TARGETS = 12


def _unexplained(repo: Path, summary) -> list[str]:
    """Every target whose output changed but that affected() did not list."""
    return [f"{o.mutation} {o.file}: missed {sorted(o.missed)}" for o in summary.outcomes if o.missed]


def _report(repo: str, label: str, summary) -> None:
    truth = sum(len(o.truth) for o in summary.outcomes)
    print(f"{repo} {label}: {len(summary.outcomes)} mutations, {truth} target changes, "
          f"recall {summary.recall:.3f} (original model alone {summary.recall_base_only:.3f}), "
          f"precision {summary.precision:.3f}, exact {summary.exact}/{len(summary.outcomes)}")


@in_corpus
@pytest.mark.slow
@pytest.mark.parametrize("repo", REPOS)
def test_affected_never_misses_a_changed_target(repo, tmp_path):
    root = CORPUS / repo
    files = sample_files(RepoModel(RepoTree(root)), SAMPLE.get(repo, DEFAULT_SAMPLE))
    assert len({c for _f, c in files}) >= 3, "the sample must cover several kinds of file"
    cache = DiskCache(None)
    summary = check_mutations(root, files, ("delete", "change"), tmp_path, cache)
    _report(repo, "delete+change", summary)
    assert sum(len(o.truth) for o in summary.outcomes) > 0, "no mutation changed any output: the check is blind"
    assert not _unexplained(root, summary)

    renames = check_mutations(root, [f for f in files if f[1] != "unread"][:RENAMES], ("rename",), tmp_path, cache)
    _report(repo, "rename", renames)
    assert not _unexplained(root, renames)


@in_corpus
@pytest.mark.slow
@pytest.mark.parametrize("repo", REPOS)
def test_inputs_are_complete(repo, tmp_path):
    """Rendering from a scratch copy of the whole repository gives the same output as from the files
    the graph lists: nothing outside a target's inputs influences it (the cache relies on this).
    Copying the whole tree per target is slow, so large repositories check a seeded sample."""

    class WholeTree(TextRenderer):
        def _materialize(self, target, files, scratch):
            return super()._materialize(target, list(self.model.tree.files), scratch)

    model = RepoModel(RepoTree(CORPUS / repo))
    targets = list(model.targets)
    if len(targets) > WHOLE_TREE_TARGETS:
        targets = [targets[0]] + random.Random(3).sample(targets[1:], WHOLE_TREE_TARGETS - 1)
    graph_only = TextRenderer(model, cache=DiskCache(None)).render_all(targets)
    whole = WholeTree(model, cache=DiskCache(None)).render_all(targets)
    for a, b in zip(graph_only, whole, strict=True):
        assert (a.ok, a.text, str(a.error or "")) == (b.ok, b.text, str(b.error or "")), target_id(a.target)


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


FLUX_APPS = """\
    apiVersion: kustomize.toolkit.fluxcd.io/v1
    kind: Kustomization
    metadata:
      name: apps
      namespace: flux-system
    spec:
      sourceRef:
        kind: {kind}
        name: {source}
      path: {path}
    """
APP_FILES = {
    "apps/prod/kustomization.yaml": "resources:\n  - cm.yaml\n",
    "apps/prod/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n",
}


def test_artifact_generator_is_an_input(tmp_path):
    """Found by the brute force on fluxcd__flux2-kustomize-helm-example (clusters/*/artifacts.yaml)."""
    root = _write(tmp_path, {
        **APP_FILES,
        "clusters/prod/apps.yaml": FLUX_APPS.format(kind="ExternalArtifact", source="apps", path="./prod"),
        "clusters/prod/artifacts.yaml": """\
            apiVersion: source.extensions.fluxcd.io/v1beta1
            kind: ArtifactGenerator
            metadata:
              name: flux-system
              namespace: flux-system
            spec:
              sources:
                - alias: monorepo
                  kind: GitRepository
                  name: flux-system
              artifacts:
                - name: apps
                  copy:
                    - from: "@monorepo/apps/**"
                      to: "@artifact/"
            """,
    })
    model = RepoModel(RepoTree(root))
    assert [t.path for t in model.targets] == ["apps/prod"]
    assert [t.path for t in model.affected(deleted=["clusters/prod/artifacts.yaml"])] == ["apps/prod"]
    assert [t.path for t in model.affected(changed=["clusters/prod/artifacts.yaml"])] == ["apps/prod"]


def test_git_repository_source_is_an_input(tmp_path):
    """Pointing a GitRepository at this repository's URL makes its Kustomizations targets."""
    repo_file = "clusters/prod/sources.yaml"
    sources = """\
        apiVersion: source.toolkit.fluxcd.io/v1
        kind: GitRepository
        metadata:
          name: flux-system
          namespace: flux-system
        spec:
          url: https://example.com/me/fleet
        ---
        apiVersion: source.toolkit.fluxcd.io/v1
        kind: GitRepository
        metadata:
          name: other
          namespace: flux-system
        spec:
          url: {url}
        """
    root = _write(tmp_path, {
        **APP_FILES,
        "clusters/prod/apps.yaml": FLUX_APPS.format(kind="GitRepository", source="other", path="./apps/prod"),
        repo_file: sources.format(url="https://example.com/me/fleet"),
    })
    model = RepoModel(RepoTree(root))
    assert [t.path for t in model.targets] == ["apps/prod"]
    assert [t.path for t in model.affected(changed=[repo_file])] == ["apps/prod"]


def test_mutations_change_every_document():
    text = "a: 1\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  annotations: {k: v}\n"
    docs = list(yaml.safe_load_all(mutate_text("x.yaml", text)))
    assert [d["metadata"]["annotations"][MUTATION_KEY] for d in docs] == ["1", "1"]
    assert docs[1]["metadata"]["annotations"]["k"] == "v"
    kust = yaml.safe_load(mutate_text("k/kustomization.yaml", "resources:\n  - a.yaml\n"))
    assert kust == {"resources": ["a.yaml"], "commonAnnotations": {MUTATION_KEY: "1"}}
    ops = yaml.safe_load(mutate_text("p.yaml", "- op: remove\n  path: /spec/x\n"))
    assert ops[0]["value"] == {MUTATION_KEY: "1"} and ops[1]["op"] == "remove"
    assert mutate_text("app.env", "A=1") == "A=1\nZZ_MUTATION=1\n"


def test_overlay_unreached_by_a_deleted_flux_kustomization_is_affected(tmp_path):
    """Found by `python -m bench.corpus --synthetic 100` (deleting clusters/<env>/<svc>.yaml)."""
    files = {
        "overlays/production/app/kustomization.yaml": "resources:\n  - cm.yaml\n",
        "overlays/production/app/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n",
        "clusters/production/app.yaml": FLUX_APPS.format(kind="GitRepository", source="flux-system",
                                                         path="./overlays/production/app"),
    }
    base = RepoModel(RepoTree(_write(tmp_path / "base", files)))
    head_root = _write(tmp_path / "head", files)
    (head_root / "clusters/production/app.yaml").unlink()
    head = RepoModel(RepoTree(head_root))
    assert [target_id(t) for t in head.targets] == ["overlays/production/app"]
    gone = ["clusters/production/app.yaml"]
    predicted = {target_id(t) for t in base.affected(deleted=gone, previous=head)
                 + head.affected(deleted=gone, previous=base)}
    assert "overlays/production/app" in predicted


def test_substitution_source_in_the_flux_file_still_counts(tmp_path):
    """An unchanged Flux spec lets an edit elsewhere in its file be ignored, unless that file also
    holds what the Kustomization reads (here the ConfigMap it substitutes from)."""
    flux = (
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: apps\n"
        "  namespace: flux-system\nspec:\n  sourceRef:\n    kind: GitRepository\n    name: flux-system\n"
        "  path: ./apps/prod\n  postBuild:\n    substituteFrom:\n      - kind: ConfigMap\n        name: vars\n"
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: vars\n  namespace: flux-system\n"
        "data:\n  REGION: {region}\n"
    )
    files = {"apps/prod/kustomization.yaml": "resources:\n  - cm.yaml\n",
             "apps/prod/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  r: ${REGION}\n"}
    base = RepoModel(RepoTree(_write(tmp_path / "base", {**files, "clusters/prod/apps.yaml": flux.format(region="eu")})))
    head = RepoModel(RepoTree(_write(tmp_path / "head", {**files, "clusters/prod/apps.yaml": flux.format(region="us")})))
    assert [t.path for t in head.affected(changed=["clusters/prod/apps.yaml"], previous=base)] == ["apps/prod"]
    unrelated = {**files, "clusters/prod/apps.yaml": flux.format(region="eu") + "# a comment\n"}
    other = RepoModel(RepoTree(_write(tmp_path / "other", unrelated)))
    assert [t.path for t in other.affected(changed=["clusters/prod/apps.yaml"], previous=base)] == ["apps/prod"]


def test_an_edit_beside_an_unchanged_flux_kustomization_is_not_a_change(tmp_path):
    flux = textwrap.dedent(FLUX_APPS.format(kind="GitRepository", source="flux-system", path="./apps/prod"))
    base = RepoModel(RepoTree(_write(tmp_path / "base", {**APP_FILES, "clusters/prod/apps.yaml": flux})))
    head = RepoModel(RepoTree(_write(tmp_path / "head", {
        **APP_FILES, "clusters/prod/apps.yaml": flux.replace("  name: apps\n", "  name: apps\n  labels: {a: b}\n")})))
    assert [t.path for t in head.targets] == ["apps/prod"]
    assert head.affected(changed=["clusters/prod/apps.yaml"], previous=base) == []
    assert [t.path for t in head.affected(changed=["clusters/prod/apps.yaml"])] == ["apps/prod"], \
        "without the other side, the Flux file counts"
