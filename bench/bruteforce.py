"""Brute-force check of `RepoModel.affected()`: mutate one file, rebuild every target, compare.

The truth for one mutation is the set of targets whose output (text and error) differs between the
original tree and the mutated copy, plus targets that appear or disappear. The prediction is
`affected()` on the original model united with `affected()` on the mutated model: a pull request
has both states, and a target that only exists after the change (an overlay a deleted Flux
Kustomization no longer reaches) can only be named by the mutated model.
"""

from __future__ import annotations

import posixpath
import random
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from bot.fetch.resources import Placed
from bot.model import ResourceId, Target
from bot.objects import RenderedObject
from bot.render.build import DiskCache, Pairs, Rendered, Renderer
from bot.repo.discover import RepoModel
from bot.repo.kustomization import BuildError, load_kustomization
from bot.repo.tree import KUSTOMIZATION_NAMES, YAML_SUFFIXES, RepoTree

MUTATION_KEY = "zz-mutation.infra-review.test/probe"
ENV_SUFFIXES = (".env", ".properties")
CATEGORIES = ("kustomization", "flux", "patch", "generator", "resource", "unread")
PATCH_FIELDS = ("patches", "patchesStrategicMerge", "patchesJson6902")


class TextRenderer(Renderer):
    """A Renderer whose objects carry no provenance: the oracle needs text and errors only, and
    provenance is most of the cost of a warm render."""

    def _objects(self, target: Target, pairs: Pairs, placed: list[Placed]) -> list[RenderedObject]:
        return [RenderedObject(obj, ResourceId.of(obj), target) for obj, _origin in pairs]


def target_id(t: Target) -> str:
    """A unique name for a target; `Target.key` alone is not unique (one Flux name in two clusters)."""
    return f"{t.key} [{t.flux.file}]" if t.flux else t.key


Outputs = dict[str, tuple[bool, str, str]]


def outputs(model: RepoModel, cache: DiskCache) -> Outputs:
    rendered: list[Rendered] = TextRenderer(model, cache=cache).render_all(model.targets)
    return {target_id(r.target): (r.ok, r.text, str(r.error or "")) for r in rendered}


# --- mutations ----------------------------------------------------------------------------------
def _lookup(node: MappingNode, key: str):
    return next((v for k, v in node.value if isinstance(k, ScalarNode) and k.value == key), None)


def _snippet_block(path: list[str], col: int) -> list[str]:
    out = [" " * (col + 2 * i) + f"{k}:" for i, k in enumerate(path[:-1])]
    out.append(" " * (col + 2 * (len(path) - 1)) + f'{path[-1]}: "1"')
    return out


def _snippet_flow(path: list[str]) -> str:
    text = f'{path[-1]}: "1"'
    for k in reversed(path[:-1]):
        text = f"{k}: {{{text}}}"
    return text


def _add_entry(node: MappingNode, path: list[str], edits: list) -> bool:
    """Plan the text edit that adds `path` (nested keys, last one set to "1") under a mapping node."""
    child = _lookup(node, path[0])
    if child is not None:
        if len(path) == 1 or not isinstance(child, MappingNode):
            return False
        return _add_entry(child, path[1:], edits)
    if node.flow_style:
        m = node.start_mark
        edits.append((m.line, 1, m.column + 1, _snippet_flow(path) + (", " if node.value else "")))
        return True
    if not node.value:
        return False
    first = node.value[0][0].start_mark
    edits.append((first.line, 0, 0, _snippet_block(path, first.column)))
    return True


def _apply(text: str, edits: list) -> str:
    lines = text.splitlines(keepends=True)
    for line, kind, col, payload in sorted(edits, key=lambda e: (e[0], e[1], e[2]), reverse=True):
        if kind == 0:
            lines[line:line] = [p + "\n" for p in payload]
        else:
            lines[line] = lines[line][:col] + payload + lines[line][col:]
    return "".join(lines)


def mutate_yaml(text: str, kustomization: bool) -> str:
    """Add a `commonAnnotations` entry to a kustomization, an annotation to every other document's
    metadata, an annotation-setting op to a JSON 6902 patch; edits the text so nothing else moves."""
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError:
        nodes = []
    edits: list = []
    for node in nodes:
        if isinstance(node, MappingNode):
            path = ["commonAnnotations", MUTATION_KEY] if kustomization else ["metadata", "annotations", MUTATION_KEY]
            _add_entry(node, path, edits)
        elif isinstance(node, SequenceNode) and node.value and not node.flow_style:
            first = node.start_mark
            op = f'- {{op: add, path: /metadata/annotations, value: {{{MUTATION_KEY}: "1"}}}}'
            edits.append((first.line, 0, 0, [" " * first.column + op]))
    if not edits:
        return text + ("" if text.endswith("\n") or not text else "\n") + f'{MUTATION_KEY}: "1"\n'
    return _apply(text, edits)


def mutate_text(rel: str, text: str) -> str:
    """A semantic change to one file, by kind of file."""
    name = posixpath.basename(rel)
    if rel.endswith(YAML_SUFFIXES) or name == "Kustomization":
        return mutate_yaml(text, name in KUSTOMIZATION_NAMES)
    sep = "" if text.endswith("\n") or not text else "\n"
    if rel.endswith(ENV_SUFFIXES):
        return text + sep + "ZZ_MUTATION=1\n"
    return text + sep + "zz mutation\n"


def apply_mutation(root: Path, rel: str, kind: str) -> str | None:
    """Mutate `rel` under `root` in place; returns the new path for a rename."""
    path = root / rel
    if kind == "delete":
        path.unlink()
        return None
    if kind == "rename":
        stem, ext = posixpath.splitext(rel)
        new = f"{stem}-renamed{ext}"
        path.rename(root / new)
        return new
    path.write_text(mutate_text(rel, path.read_text(encoding="utf-8", errors="replace")), encoding="utf-8")
    return None


# --- sampling -----------------------------------------------------------------------------------
def classify(model: RepoModel) -> dict[str, str]:
    """Each file's role, first match in CATEGORIES order."""
    patches: set[str] = set()
    generated: set[str] = set()
    for d in model.kustomization_dirs:
        try:
            kust = load_kustomization(model.tree, d)
        except BuildError:
            continue
        for ref in kust.refs:
            if ref.path and ref.field in PATCH_FIELDS:
                patches.add(ref.path)
            elif ref.path and ref.field.startswith(("configMapGenerator", "secretGenerator")):
                generated.add(ref.path)
    flux_files = {f.file for f in model.flux_objects}
    read: set[str] = set()
    for t in model.targets:
        read |= model.inputs(t).files
    out: dict[str, str] = {}
    for rel in model.tree.files:
        if posixpath.basename(rel) in KUSTOMIZATION_NAMES:
            out[rel] = "kustomization"
        elif rel in flux_files:
            out[rel] = "flux"
        elif rel in patches:
            out[rel] = "patch"
        elif rel in generated:
            out[rel] = "generator"
        elif rel in read:
            out[rel] = "resource"
        else:
            out[rel] = "unread"
    return out


def sample_files(model: RepoModel, n: int, seed: int = 7) -> list[tuple[str, str]]:
    """Up to `n` (file, category) pairs, drawn round-robin across categories, deterministic."""
    rng = random.Random(seed)
    by_cat: dict[str, list[str]] = {c: [] for c in CATEGORIES}
    for rel, cat in classify(model).items():
        by_cat[cat].append(rel)
    for files in by_cat.values():
        rng.shuffle(files)
    out: list[tuple[str, str]] = []
    while len(out) < n and any(by_cat.values()):
        for cat in CATEGORIES:
            if by_cat[cat] and len(out) < n:
                out.append((by_cat[cat].pop(), cat))
    return out


# --- the check ----------------------------------------------------------------------------------
@dataclass
class Outcome:
    file: str
    category: str
    mutation: str
    truth: set[str]
    predicted: set[str]
    predicted_base: set[str]

    @property
    def missed(self) -> set[str]:
        return self.truth - self.predicted


@dataclass
class Summary:
    outcomes: list[Outcome] = field(default_factory=list)

    def _recall(self, predicted: str) -> float:
        truth = sum(len(o.truth) for o in self.outcomes)
        hit = sum(len(o.truth & getattr(o, predicted)) for o in self.outcomes)
        return hit / truth if truth else 1.0

    @property
    def recall(self) -> float:
        return self._recall("predicted")

    @property
    def recall_base_only(self) -> float:
        return self._recall("predicted_base")

    @property
    def precision(self) -> float:
        pred = sum(len(o.predicted) for o in self.outcomes)
        hit = sum(len(o.truth & o.predicted) for o in self.outcomes)
        return hit / pred if pred else 1.0

    @property
    def exact(self) -> int:
        return sum(o.truth == o.predicted for o in self.outcomes)


def changed_targets(before: Outputs, after: Outputs) -> set[str]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def _predict(model: RepoModel, rel: str, kind: str, new: str | None, previous: RepoModel | None = None) -> set[str]:
    if kind == "delete":
        hits = model.affected(deleted=[rel], previous=previous)
    elif kind == "rename":
        hits = model.affected(renamed=[(rel, new or rel)], previous=previous)
    else:
        hits = model.affected(changed=[rel], previous=previous)
    return {target_id(t) for t in hits}


def check_mutations(repo: Path, files: Iterable[tuple[str, str]], kinds: Iterable[str], workdir: Path,
                    cache: DiskCache | None = None) -> Summary:
    """Run every (file, kind) mutation on a fresh copy of `repo` and compare truth with affected()."""
    cache = cache or DiskCache(None)
    base = RepoModel(RepoTree(repo))
    before = outputs(base, cache)
    summary = Summary()
    for i, (rel, category) in enumerate(files):
        for kind in kinds:
            copy = workdir / f"m{i}-{kind}"
            shutil.copytree(repo, copy, symlinks=True)
            try:
                new = apply_mutation(copy, rel, kind)
                head = RepoModel(RepoTree(copy))
                truth = changed_targets(before, outputs(head, cache))
                from_base = _predict(base, rel, kind, new)
                predicted = _predict(base, rel, kind, new, head) | _predict(head, rel, kind, new, base)
            finally:
                shutil.rmtree(copy, ignore_errors=True)
            summary.outcomes.append(Outcome(rel, category, kind, truth, predicted, from_base))
    return summary
