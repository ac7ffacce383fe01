"""Base and head, compared as Flux would apply them.

For each target (matched by its key: the Flux Kustomization, or the overlay folder) the objects it
applies, its HelmReleases' output included, are keyed by resource id and compared after
normalisation, so only what changes on the cluster shows:
- metadata the cluster owns (`status`, `resourceVersion`, `uid`, `creationTimestamp`, `generation`,
  `managedFields`, `last-applied-configuration`, Kustomize's own origin annotations) is dropped;
- key order and formatting never show: both sides are compared as data and dumped with sorted keys;
- a generator's hash-suffixed object renamed by a content change (`app-config-5g2k` →
  `app-config-9h7m`) is one change of that object, not a removal and an addition;
- secrets are masked first (bot.diff.mask).
"""

from __future__ import annotations

import copy
import difflib
import re
import time
from collections.abc import Iterable
from typing import Any

import yaml

from bot.diff.mask import Masker
from bot.diff.meaning import meaning
from bot.diff.model import Changes, EnvironmentChanges, ObjectChange, TargetChanges
from bot.model import ResourceId
from bot.objects import RenderedObject
from bot.publish.report import env_order
from bot.render.build import Rendered

CLUSTER_METADATA = ("creationTimestamp", "resourceVersion", "uid", "generation", "managedFields", "selfLink",
                    "deletionTimestamp", "deletionGracePeriodSeconds")
CLUSTER_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration", "deployment.kubernetes.io/revision",
                       "config.kubernetes.io/origin")
CLUSTER_ANNOTATION_PREFIXES = ("internal.config.kubernetes.io/",)
_HASH_SUFFIX = re.compile(r"^(.+)-[bcdfghkmt2456789]{10}$")  # kustomize's generator suffix alphabet
CONTEXT_LINES = 2
Key = tuple[str, str, str, str]


def normalise(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without what the cluster owns (a deep copy)."""
    return _drop_owned(copy.deepcopy(obj))


def _drop_owned(out: dict[str, Any]) -> dict[str, Any]:
    out.pop("status", None)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for key in CLUSTER_METADATA:
            meta.pop(key, None)
        notes = meta.get("annotations")
        if isinstance(notes, dict):
            for key in [k for k in notes if k in CLUSTER_ANNOTATIONS or k.startswith(CLUSTER_ANNOTATION_PREFIXES)]:
                del notes[key]
            if not notes:
                del meta["annotations"]
    return out


def dump(obj: dict[str, Any]) -> str:
    return yaml.safe_dump(obj, sort_keys=True, default_flow_style=False, allow_unicode=True, width=1000)


def _key(rid: ResourceId) -> Key:
    return (rid.group, rid.kind, rid.namespace, rid.name)


def _stem(rid: ResourceId) -> Key | None:
    m = _HASH_SUFFIX.match(rid.name)
    return (rid.group, rid.kind, rid.namespace, m.group(1)) if m and rid.kind in ("ConfigMap", "Secret") else None


def unified(before: str, after: str) -> str:
    """A compact unified diff: hunks with two lines of context, no file header."""
    lines = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=CONTEXT_LINES)
    return "\n".join(line for line in lines if not line.startswith(("---", "+++")))


def diff_objects(before: Iterable[RenderedObject], after: Iterable[RenderedObject], masker: Masker
                 ) -> tuple[list[ObjectChange], list[ObjectChange], list[ObjectChange]]:
    """(added, removed, changed) between two sets of objects one target applies."""
    old = {_key(ro.id): ro for ro in before}
    new = {_key(ro.id): ro for ro in after}
    gone = {k: old[k] for k in old.keys() - new.keys()}
    came = {k: new[k] for k in new.keys() - old.keys()}
    pairs: list[tuple[RenderedObject, RenderedObject, str | None]] = [
        (old[k], new[k], None) for k in sorted(old.keys() & new.keys())]
    stems = {_stem(ro.id): k for k, ro in gone.items() if _stem(ro.id)}
    for k, ro in sorted(came.items()):
        was = stems.pop(_stem(ro.id), None) if _stem(ro.id) else None
        if was is not None:
            pairs.append((gone.pop(was), came.pop(k), was[3]))
    changed = []
    for b, a, renamed in pairs:
        if b.obj == a.obj:  # most objects of a target: nothing to mask, dump or compare
            continue
        mb, ma = _drop_owned(masker.mask(b.obj)), _drop_owned(masker.mask(a.obj))  # mask() returns a copy
        if mb != ma:
            changed.append(ObjectChange(a.id, "changed", unified(dump(mb), dump(ma)), meaning(mb, ma),
                                        renamed_from=renamed))
    added = [ObjectChange(ro.id, "added") for _, ro in sorted(came.items())]
    removed = [ObjectChange(ro.id, "removed") for _, ro in sorted(gone.items())]
    return added, removed, changed


def compare_rendered(head: Iterable[Rendered], base: Iterable[Rendered], masker: Masker,
                     default_environment: str = "production") -> Changes:
    """Per environment, per target, what changes between the base's rendering and the head's. A target
    only one side has adds or removes everything it applies; one that failed to build on either side
    is left out (its build-error finding says so)."""
    start = time.perf_counter()
    heads = {r.target.key: r for r in head}
    bases = {r.target.key: r for r in base}
    by_env: dict[str, list[TargetChanges]] = {}
    for key in sorted(heads.keys() | bases.keys(), key=str):
        h, b = heads.get(key), bases.get(key)
        if (h is not None and not h.ok) or (b is not None and not b.ok):
            continue
        target = (h or b).target  # type: ignore[union-attr]
        added, removed, changed = diff_objects(b.applied if b else (), h.applied if h else (), masker)
        if added or removed or changed:
            env = target.environment or default_environment
            by_env.setdefault(env, []).append(TargetChanges(target.path, env, tuple(added), tuple(removed),
                                                            tuple(changed)))
    envs = tuple(EnvironmentChanges(env, tuple(by_env[env])) for env in sorted(by_env, key=env_order))
    return Changes(envs, seconds=time.perf_counter() - start)
