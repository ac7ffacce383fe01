"""What the Flux kustomize-controller does around `kustomize build`.

Before the build (fluxcd/pkg/kustomize's generator): create a kustomization listing every YAML
file when the path has none, then write `targetNamespace`, `patches`, `components`, the deprecated
patch fields and `images` into it. After the build (the controller): apply `commonMetadata` to
every resource, then `postBuild` variable substitution. Values these steps set are attributed to
the Flux Kustomization's own lines.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from bot.model import Origin, ResourceId, Target, as_dict, concrete_path, format_path, get_path, parse_path
from bot.objects import RenderedObject
from bot.render import substitute
from bot.repo.graph import generated_resources
from bot.repo.kustomization import BuildError, is_remote
from bot.repo.manifest import Kustomization, kustomization, kustomization_of
from bot.repo.tree import KUSTOMIZATION_NAMES
from bot.yamlpos import YamlError, exact_json, load_data

if TYPE_CHECKING:
    from bot.render.build import Rendered
    from bot.repo.discover import RepoModel

DISABLED = "kustomize.toolkit.fluxcd.io/substitute"


def generate(model: RepoModel, target: Target, top: Path) -> None:
    """Write the kustomization Flux would build in the scratch copy of `target.path`."""
    flux = kustomization(target.flux) if target.flux else kustomization_of({})
    kfile = next((top / n for n in KUSTOMIZATION_NAMES if (top / n).is_file()), None)
    if kfile is None:
        prefix = "" if target.path == "." else target.path + "/"
        resources = ["./" + r[len(prefix):] for r in generated_resources(model.tree, target.path)]
        data: dict[str, Any] = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                                "resources": resources}
        kfile = top / "kustomization.yaml"
    else:
        source = model.tree.kustomization_file(target.path) or target.path
        try:
            data = (load_data(kfile.read_text(encoding="utf-8", errors="replace")) or [{}])[0]
        except YamlError as exc:
            raise BuildError(exc.message, source, exc.line) from None
        if not isinstance(data, dict):
            raise BuildError("a kustomization file must hold one YAML mapping", source, 1)
        if not flux.edits_kustomization:
            return
    if flux.target_namespace:
        data["namespace"] = flux.target_namespace
    for p in flux.patches:
        entry = {"patch": p.get("patch", "")}
        if p.get("target"):
            entry["target"] = p["target"]
        data.setdefault("patches", []).append(entry)
    for i, comp in enumerate(flux.components):
        if is_remote(comp) or comp.startswith("/"):
            ref = target.flux
            doc = model.flux_document(ref) if ref else None
            span = doc.span(("spec", "components", i)) if doc else None
            raise BuildError(f"component path {comp!r} must be local and relative", ref.file if ref else None,
                             span[0] if span else (ref.line if ref else None))
        data.setdefault("components", []).append(comp)
    for p in flux.patches_strategic_merge:
        data.setdefault("patchesStrategicMerge", []).append(yaml.safe_dump(p, sort_keys=False))
    for p in flux.patches_json6902:
        data.setdefault("patchesJson6902", []).append(
            {"patch": yaml.safe_dump(p.get("patch") or []), "target": p.get("target") or {}})
    for image in flux.images:
        images = data.setdefault("images", [])
        new = {k: image[k] for k in ("name", "newName", "newTag", "digest") if k in image}
        idx = next((i for i, im in enumerate(images) if isinstance(im, dict) and im.get("name") == image.get("name")), None)
        if idx is None:
            images.append(new)
        else:
            images[idx] = new
    kfile.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def _lookup(model: RepoModel):
    """Find a ConfigMap/Secret manifest defined in the repository (substituteFrom sources)."""
    def lookup(kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        fallback = None
        for _rel, obj in model.source_objects():
            meta = obj.get("metadata") or {}
            if obj.get("kind") == kind and meta.get("name") == name:
                if not namespace or meta.get("namespace") in (None, "", namespace):
                    return obj
                fallback = fallback or obj
        return fallback
    return lookup


def post_build(model: RepoModel, rendered: Rendered, kept: Any = None) -> tuple[Rendered, str | None]:
    """Apply commonMetadata and postBuild substitution; re-emit the output text when either changed
    something (otherwise it stays byte for byte what kustomize printed).

    Substitution writes each object holding a `$` as YAML, substitutes and parses it again: what it
    made is returned (JSON, None when there is nothing to keep) for the render cache to keep beside
    the build, and `kept`, what an earlier call returned for the same build, is used instead of
    substituting again when it was made with the same variables."""
    ref = rendered.target.flux
    if ref is None:
        return rendered, None
    flux = kustomization(ref)
    fdoc = model.flux_document(ref)

    def fline(*segs: Any) -> int:
        span = fdoc.span(segs) if fdoc else None
        return span[0] if span else ref.line

    common = {"labels": flux.common_labels, "annotations": flux.common_annotations} if flux.common_metadata else {}
    post = flux.post_build
    variables: dict[str, str] = {}
    var_lines: dict[str, int] = {}
    if post:
        variables, problems = substitute.collect_vars(post, _lookup(model), ref.namespace or "flux-system")
        rendered.notes.extend(str(p) for p in problems)
        for name in (post.get("substitute") or {}):
            var_lines[name] = fline("spec", "postBuild", "substitute", name)
        from_line = fline("spec", "postBuild", "substituteFrom")
        for name in variables:
            var_lines.setdefault(name, from_line)
    digest = hashlib.sha256(json.dumps(variables, sort_keys=True).encode()).hexdigest()
    made = _substituted(kept, digest, len(rendered.objects)) if post else None
    fresh = made is None
    if made is None:
        made = ([], [])
    results, notes = made
    reported: set[str] = set()
    new_objects: list[RenderedObject] = []
    rewritten = False
    for i, ro in enumerate(rendered.objects):
        if not common and not post:
            ro.locate = _overlay(ro.locate, {}, flux, ref.file, fline, ro.obj)
            new_objects.append(ro)
            continue
        obj = dict(ro.obj)  # what changes is copied below; the build's object is never altered
        meta = obj["metadata"] = dict(as_dict(obj.get("metadata")))
        changed: dict[str, Origin] = {}
        for key in ("labels", "annotations"):
            extra = as_dict(common.get(key))
            if extra:
                meta[key] = {**as_dict(meta.get(key)), **{k: str(v) for k, v in extra.items()}}
                for k in extra:
                    changed[format_path(("metadata", key, k))] = Origin(
                        ref.file, fline("spec", "commonMetadata", key, k), None, "flux", "commonMetadata")
        if post:
            if fresh:
                results.append(_substitute(obj, variables, ref.file, reported, notes))
            substituted = results[i]
            if substituted is not None:
                for path in _diff_paths(ro.obj, substituted):
                    var = _var_in(get_path(ro.obj, path))
                    changed[path] = Origin(ref.file, var_lines.get(var or "", fline("spec", "postBuild")),
                                           None, "flux", f"postBuild ${{{var}}}" if var else "postBuild")
                obj = substituted
        rewritten = rewritten or obj != ro.obj
        new_ro = RenderedObject(obj, ResourceId.of(obj), rendered.target)
        new_ro.locate = _overlay(ro.locate, changed, flux, ref.file, fline, obj)
        new_ro.places = ro.places
        new_objects.append(new_ro)
    rendered.notes.extend(notes)
    rendered.objects = new_objects
    if rewritten:
        rendered.output = lambda: "---\n".join(dump(o.obj, allow_unicode=True) for o in new_objects)
    if not (post and fresh):
        return rendered, None
    return rendered, exact_json({"variables": digest, "objects": results, "notes": notes}, lambda m: m["objects"])


def _substitute(obj: dict[str, Any], variables: dict[str, str], file: str, reported: set[str],
                notes: list[str]) -> dict[str, Any] | None:
    """The object as Flux's substitution leaves it, None when it leaves it as it was (or cannot read
    what it made); what it could not do is said in `notes`, each undefined variable once."""
    meta = as_dict(obj.get("metadata"))
    if not _mentions_dollar(obj) or "disabled" in (as_dict(meta.get("annotations")).get(DISABLED),
                                                   as_dict(meta.get("labels")).get(DISABLED)):
        return None
    text = dump(obj)
    new_text, unresolved = substitute.substitute_text(text, variables)
    for u in unresolved:
        name = getattr(u, "name", str(u))
        if name not in reported:
            reported.add(name)
            notes.append(f"variable ${{{name}}} is not defined (left as is)")
    if new_text == text:
        return None
    try:
        return load_data(new_text, file)[0]
    except (YamlError, IndexError):
        notes.append(f"substitution made {ResourceId.of(obj)} unreadable; kept as built")
        return None


def _substituted(kept: Any, digest: str, count: int) -> tuple[list[dict[str, Any] | None], list[str]] | None:
    """What post_build returned to be kept, as new objects, when it was made with these variables for
    `count` objects."""
    if not isinstance(kept, str):
        return None
    try:
        memo = json.loads(kept)
    except ValueError:
        return None
    if not isinstance(memo, dict) or memo.get("variables") != digest:
        return None
    results, notes = memo.get("objects"), memo.get("notes")
    if (not isinstance(results, list) or len(results) != count or not isinstance(notes, list)
            or not all(r is None or isinstance(r, dict) for r in results) or not all(isinstance(n, str) for n in notes)):
        return None
    return results, notes


def _mentions_dollar(obj: dict[str, Any]) -> bool:
    """Whether any key or value of `obj` holds a `$`, without which substitution changes nothing
    (it rewrites `${...}` and `$$`): most objects are then spared being written out as YAML."""
    try:
        return "$" in json.dumps(obj, ensure_ascii=False)
    except (TypeError, ValueError):
        return True  # a value JSON cannot hold (`!!binary`): let the substitution itself look


# libyaml's emitter where PyYAML has it: re-serialising every object of a Flux target was a fifth of a
# warm check's time with the pure-Python one, and both write the same YAML.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def dump(obj: Any, allow_unicode: bool = False) -> str:
    return yaml.dump(obj, Dumper=_DUMPER, sort_keys=True, allow_unicode=allow_unicode)


def _var_in(value: Any) -> str | None:
    m = re.search(r"\$\{([_a-zA-Z][_a-zA-Z0-9]*)", str(value)) if value is not None else None
    return m.group(1) if m else None


def _diff_paths(before: Any, after: Any, prefix: tuple = ()) -> list[str]:
    """Field paths of scalars that differ between two versions of an object."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[str] = []
        for k in after:
            out.extend(_diff_paths(before.get(k), after[k], prefix + (k,)))
        return out
    if isinstance(before, list) and isinstance(after, list):
        out = []
        for i, item in enumerate(after):
            out.extend(_diff_paths(before[i] if i < len(before) else None, item, prefix + (i,)))
        return out
    return [format_path(prefix)] if before != after and prefix else []


def _overlay(locate, changed: dict[str, Origin], flux: Kustomization, file: str, fline, obj: dict):
    """Provenance after the build: values Flux's post-build steps set (commonMetadata, substitutions)
    and `targetNamespace` point at the Flux Kustomization's lines; its patches and images are the
    outermost layer of the build's own provenance."""

    def find(path: str) -> Origin:
        try:
            concrete = format_path(concrete_path(obj, parse_path(path))) if path else path
        except ValueError:
            concrete = path
        if concrete in changed:
            return changed[concrete]
        if path == "metadata.namespace" and flux.target_namespace:
            return Origin(file, fline("spec", "targetNamespace"), None, "flux", "targetNamespace")
        return locate(path)
    return find
