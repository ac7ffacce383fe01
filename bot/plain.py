"""Plain manifests (a file or a folder of YAML) as one rendered environment.

Used by `check` on a folder that is not a Kustomize/Flux repository, and by the peer-fixture tests.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from bot.model import Origin, ResourceId, parse_path
from bot.objects import RenderedObject
from bot.yamlpos import YamlDoc, load_docs

YAML_SUFFIXES = (".yaml", ".yml")


def locate_in_doc(doc: YamlDoc, file: str, path: str, via: str = "manifest") -> Origin:
    """Origin of `path` inside one source document.

    Present: the span of the value (its key line to its last line). Absent: the first line of
    the nearest enclosing object, preferring its `name:` line (a container's `- name:`, the
    resource's `metadata.name`).
    """
    segs = parse_path(path) if path else ()
    span = doc.span(segs) if segs else None
    if span:
        return Origin(file, span[0], span[1], via)
    (start, _end), depth = doc.nearest(segs)
    prefix = segs[:depth]
    for name_path in (prefix + ("name",), ("metadata", "name")) if prefix else (("metadata", "name"),):
        named = doc.span(name_path)
        if named and (name_path[0] != "metadata" or len(prefix) <= 1):
            return Origin(file, named[0], named[0], "enclosing")
    return Origin(file, start, start, "enclosing")


def load_plain(path: Path, root: Path | None = None) -> list[RenderedObject]:
    """Every Kubernetes object in a file or folder (recursively), with line provenance."""
    root = root or (path if path.is_dir() else path.parent)
    files = sorted(p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file()) if path.is_dir() else [path]
    objects: list[RenderedObject] = []
    for file in files:
        rel = file.relative_to(root).as_posix() if file.is_relative_to(root) else file.name
        for doc in load_docs(file.read_text(encoding="utf-8", errors="replace"), rel):
            if not isinstance(doc.data, dict) or "kind" not in doc.data:
                continue
            objects.append(
                RenderedObject(
                    obj=doc.data,
                    id=ResourceId.of(doc.data, "default"),
                    locate=partial(locate_in_doc, doc, rel),
                )
            )
    return objects
