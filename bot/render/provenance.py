"""Provenance: which source line set a rendered value.

Kustomize's origin annotation says which file (or generator) each resource came from. From
there we walk the kustomization layers between the target and that file, outermost first (the
last transformation applied wins): the layer's fields that rewrite values (`images`, `replicas`,
`namespace`, `namePrefix`/`nameSuffix`, labels, annotations) and its patches (strategic merge and
JSON 6902) that target the resource. The first layer that sets the field is the origin; otherwise
the base manifest's line.

An absent field is reported where adding it fixes the problem: where a patch removed it (`null`,
`$patch: delete`, a JSON 6902 `remove`), else in the document holding its deepest existing ancestor,
the innermost such document on a tie (the base container, unless only an overlay has the block the
field belongs in). Components are layers of the kustomization that lists them, applied before its
own fields; a Flux Kustomization's `patches` and `images` are the outermost layer.

Objects from a fetched remote entry (bot.fetch.resources) come from files that are not in the
repository: their origin annotation names the folder the content was placed in, which maps back to
the `resources:` line naming the remote entry. The layers above that kustomization still apply (an
overlay's `images:` or patch over a remote base is located at its own line); any other value, and
an absent field, is located at that entry's line.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.model import (
    Origin,
    Segment,
    Target,
    as_dict,
    concrete_path,
    format_path,
    get_path,
    parse_path,
    split_image,
)
from bot.objects import RenderedObject
from bot.plain import locate_in_doc
from bot.repo.kustomization import BuildError, Kustomization, load_kustomization
from bot.yamlpos import YamlDoc, YamlError, load_docs

if TYPE_CHECKING:
    from bot.fetch.resources import Placed
    from bot.repo.discover import RepoModel

BUILD_METADATA_KEYS = ("config.kubernetes.io/origin", "alpha.config.kubernetes.io/transformations")
LABEL_MAPS = ("labels", "annotations", "matchLabels", "selector")
_IDENTITY = {("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace")}
IMAGE_PATH = re.compile(r"\.(?:initContainers|containers|ephemeralContainers)\[[^\]]+\]\.image$")


@dataclass
class Patch:
    """One patch of a layer: its documents (SMP) or operations (JSON 6902), with a line offset."""

    file: str
    line_offset: int
    docs: list[YamlDoc]
    target: dict[str, Any] | None
    json6902: bool
    entry_line: int


@dataclass
class Layer:
    """A kustomization on the path from the target to a resource's source file (or a component it
    lists, or the Flux Kustomization's own fields: `via="flux"`)."""

    kust: Kustomization
    patches: list[Patch] = field(default_factory=list)
    via: str | None = None
    label_maps: list[LabelMap] = field(default_factory=list)


@dataclass
class LabelMap:
    """A `transformers:` entry's LabelTransformer or AnnotationsTransformer: the labels (or
    annotations) it writes, located in its own file."""

    file: str
    line_offset: int
    doc: YamlDoc
    annotations: bool


def image_matches(image: str, entry: dict[str, Any]) -> bool:
    """Whether an `images:` entry (a kustomization's or a Flux Kustomization's) set this rendered
    image: Kustomize matches the entry's `name` exactly against the image's name, and the image then
    carries `newName` when the entry has one."""
    want = entry.get("newName") or entry.get("name")
    return bool(want) and split_image(image)[0] == str(want)


def _selector_matches(sel: dict[str, Any], obj: dict[str, Any], names: list[str]) -> bool:
    """Kustomize's patch target selector: kind/name are anchored regexes (we also accept a name that
    is part of a prefixed rendered name), group/version exact, label and annotation selectors in
    equality form (set-based clauses are not judged)."""
    if not isinstance(sel, dict):
        return False
    meta = as_dict(obj.get("metadata"))
    group, _, version = str(obj.get("apiVersion") or "").rpartition("/")
    if sel.get("kind") and not _full(str(sel["kind"]), str(obj.get("kind") or "")):
        return False
    if sel.get("group") and sel["group"] != group:
        return False
    if sel.get("version") and sel["version"] != version:
        return False
    if sel.get("namespace") and meta.get("namespace") and not _full(str(sel["namespace"]), str(meta["namespace"])):
        return False
    if sel.get("name"):
        pat = str(sel["name"])
        if not any(n == pat or _full(pat, n) or pat in n for n in names):
            return False
    return (_map_selects(sel.get("labelSelector"), meta.get("labels"))
            and _map_selects(sel.get("annotationSelector"), meta.get("annotations")))


def _map_selects(selector: Any, values: Any) -> bool:
    values = values if isinstance(values, dict) else {}
    for clause in str(selector or "").split(","):
        clause = clause.strip()
        if not clause or "(" in clause:
            continue
        if "!=" in clause:
            key, want = (x.strip() for x in clause.split("!=", 1))
            if str(values.get(key)) == want:
                return False
        elif "=" in clause:
            key, want = (x.strip() for x in clause.replace("==", "=").split("=", 1))
            if str(values.get(key)) != want:
                return False
        elif clause.startswith("!"):
            if clause[1:].strip() in values:
                return False
        elif clause not in values:
            return False
    return True


def _full(pattern: str, name: str) -> bool:
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error:
        return False


def _pointer(obj: Any, segs: tuple[Segment, ...]) -> str | None:
    """JSON pointer of a field path, selectors resolved against the rendered object."""
    raw = concrete_path(obj, segs)
    if any(isinstance(seg, tuple) for seg in raw):
        return None
    return "/" + "/".join(str(seg).replace("~", "~0").replace("/", "~1") for seg in raw)


class Provenance:
    """Origins for the objects of one target; `flux`: the target is built as Flux builds it."""

    def __init__(self, model: RepoModel, target: Target, flux: bool = False, remote: list[Placed] | None = None):
        self.model = model
        self.tree = model.tree
        self.target = target
        # Folders holding fetched content, longest first (nested fetched content before its parent).
        self._remote = sorted(remote or [], key=lambda p: -len(p.prefix))
        self._layers: dict[str, Layer | None] = {}
        self._chains: dict[str, list[str]] = {}
        self._outer = [layer for layer in (self._flux_layer(),) if layer is not None] if flux else []

    def _flux_layer(self) -> Layer | None:
        """The Flux Kustomization's `patches` and `images`, which Flux writes into the top
        kustomization: the outermost layer, located in the Flux file."""
        ref = self.target.flux
        doc = self.model.flux_document(ref) if ref is not None else None
        spans = doc.spans.sub(("spec",)) if doc is not None else None
        if ref is None or doc is None or spans is None:
            return None
        data: dict[str, Any] = {key: ref.spec[key] for key in ("patches", "images") if key in ref.spec}
        start, end = spans.get(()) or (ref.line, ref.line)
        kust = Kustomization(self.target.path, ref.file, data, YamlDoc(ref.spec, doc.index, start, end, spans))
        layer = Layer(kust, via="flux")
        for i, p in enumerate(data.get("patches") or []):
            if isinstance(p, dict):
                self._add_patch(layer, ("patches", i), None, p.get("patch"), p.get("target"), None)
        return layer

    # --- layers ----------------------------------------------------------------------------
    def layer(self, directory: str) -> Layer | None:
        if directory in self._layers:
            return self._layers[directory]
        try:
            kust = load_kustomization(self.tree, directory)
        except BuildError:
            self._layers[directory] = None
            return None
        layer = Layer(kust)
        data = kust.data
        for i, p in enumerate(data.get("patches") or []):
            if isinstance(p, dict):
                self._add_patch(layer, ("patches", i), p.get("path"), p.get("patch"), p.get("target"), None)
        for i, p in enumerate(data.get("patchesStrategicMerge") or []):
            if isinstance(p, str):
                is_inline = "\n" in p or ":" in p
                self._add_patch(layer, ("patchesStrategicMerge", i), None if is_inline else p,
                                p if is_inline else None, None, False)
        for i, p in enumerate(data.get("patchesJson6902") or []):
            if isinstance(p, dict):
                self._add_patch(layer, ("patchesJson6902", i), p.get("path"), p.get("patch"), p.get("target"), True)
        for i, t in enumerate(data.get("transformers") or []):
            if isinstance(t, str):
                self._add_transformer(layer, ("transformers", i), t)
        self._layers[directory] = layer
        return layer

    def _add_transformer(self, layer: Layer, segs: tuple, entry: str) -> None:
        """A builtin transformer configuration named (or written inline) under `transformers:`; they run
        after the kustomization's own fields, so they are checked first. Folders of transformer
        configurations and plugins are not followed."""
        kust = layer.kust
        try:
            if "\n" in entry:
                span = kust.doc.span(segs)
                docs, file, offset = load_docs(entry, kust.file), kust.file, span[0] if span else kust.line_of(*segs)
            else:
                rel = self.tree.resolve(kust.dir, entry)
                if not self.tree.is_file(rel):
                    return
                docs, file, offset = self.tree.docs(rel), rel, 0
        except (YamlError, ValueError, OSError):
            return
        for doc in docs:
            config = doc.data if isinstance(doc.data, dict) else {}
            kind = config.get("kind")
            if kind in ("LabelTransformer", "AnnotationsTransformer"):
                layer.label_maps.append(LabelMap(file, offset, doc, kind == "AnnotationsTransformer"))
            elif kind == "PatchTransformer" and (config.get("patch") or config.get("path")):
                self._add_config_patch(layer, file, offset, doc)

    def _add_config_patch(self, layer: Layer, file: str, offset: int, doc: YamlDoc) -> None:
        """A PatchTransformer configuration's patch (inline `patch:` or a `path:` beside the kustomization)."""
        config = doc.data
        target = config.get("target") if isinstance(config.get("target"), dict) else None
        entry_line = (doc.spans.get(("patch",)) or doc.spans.get(("path",)) or (doc.line, doc.line))[0] + offset
        try:
            if isinstance(config.get("path"), str):
                rel = self.tree.resolve(layer.kust.dir, config["path"])
                docs, pfile, poffset = self.tree.docs(rel), rel, 0
            elif isinstance(config.get("patch"), str):
                docs, pfile = load_docs(config["patch"], file), file
                poffset = offset + (doc.spans.get(("patch",)) or (doc.line, doc.line))[0]
            else:
                return
        except (YamlError, ValueError, OSError):
            return
        json6902 = bool(docs) and isinstance(docs[0].data, list)
        layer.patches.append(Patch(pfile, poffset, docs, target, json6902, entry_line))

    def _add_patch(self, layer: Layer, segs: tuple, path: Any, inline: Any, target: Any, j6902: bool | None) -> None:
        kust = layer.kust
        entry_line = kust.line_of(*segs)
        try:
            if isinstance(path, str):
                rel = self.tree.resolve(kust.dir, path)
                docs, file, offset = self.tree.docs(rel), rel, 0
            elif isinstance(inline, str):
                span = kust.doc.span(segs + ("patch",)) if segs[0] != "patchesStrategicMerge" else kust.doc.span(segs)
                docs, file = load_docs(inline, kust.file), kust.file
                offset = span[0] if span else entry_line
            else:
                return
        except (YamlError, ValueError, OSError):
            return
        if j6902 is None:
            j6902 = bool(docs) and isinstance(docs[0].data, list)
        layer.patches.append(Patch(file, offset, docs, target if isinstance(target, dict) else None, j6902, entry_line))

    def chain(self, source: str, generator: bool = False) -> list[str]:
        """Kustomization dirs from the target down to the one that lists `source` as a resource
        (or, for a generator, the one whose kustomization file is `source`), outermost first."""
        key = ("g:" if generator else "r:") + source
        if key in self._chains:
            return self._chains[key]
        start = self.target.path
        roots = [start] if self.tree.kustomization_file(start) else self._generated_children(start)
        best: list[str] = []
        for root in roots:
            found = self._dfs(root, source, generator, (), set())
            if found:
                best = found
                break
        self._chains[key] = best
        return best

    def _generated_children(self, directory: str) -> list[str]:
        from bot.repo.graph import generated_resources

        key = ("generated-dirs", directory)
        if key not in self.tree.memo:
            self.tree.memo[key] = [r for r in generated_resources(self.tree, directory) if self.tree.is_dir(r)]
        return self.tree.memo[key]  # type: ignore[return-value]

    def _dfs(self, cur: str, source: str, generator: bool, path: tuple[str, ...], seen: set[str]) -> list[str] | None:
        if cur in seen or len(path) > 64:
            return None
        seen.add(cur)
        path = path + (cur,)
        layer = self.layer(cur)
        if layer is None:
            return None
        if generator and layer.kust.file == source:
            return list(path)
        for ref in layer.kust.refs:
            if not generator and ref.path == source and ref.field in ("resources", "bases"):
                return list(path)
        for ref in layer.kust.refs:
            if ref.path and ref.field in ("resources", "bases", "components") and self.tree.is_dir(ref.path):
                found = self._dfs(ref.path, source, generator, path, seen)
                if found:
                    return found
        return None

    # --- sources -----------------------------------------------------------------------------
    def remote_entry(self, file: str | None) -> Placed | None:
        """The remote entry whose fetched content `file` (a path the origin annotation names) is."""
        if not file:
            return None
        return next((p for p in self._remote if file == p.prefix or file.startswith(p.prefix + "/")), None)

    def _fallback(self, src_file: str | None, absent: bool = False) -> Origin:
        """Where a value no layer sets is located when its document cannot be read: the remote entry
        naming fetched content, else the source file's first line."""
        entry = self.remote_entry(src_file)
        if entry is not None:
            return Origin(entry.file, entry.line, entry.line, "enclosing" if absent else "remote", entry.value)
        return Origin(src_file, 1 if src_file else None, None, "enclosing")

    def _source_doc(self, file: str, obj: dict[str, Any]) -> YamlDoc | None:
        try:
            docs = [d for d in self.tree.docs(file) if isinstance(d.data, dict)]
        except YamlError:
            return None
        kind = obj.get("kind")
        name = str((obj.get("metadata") or {}).get("name") or "")
        docs = [item for d in docs for item in _expand_list(d)]
        same_kind = [d for d in docs if d.data.get("kind") == kind]
        same_api = [d for d in same_kind if d.data.get("apiVersion") == obj.get("apiVersion")]
        same_kind = same_api or same_kind  # a talos.dev ServiceAccount beside a core one is another object
        best, best_len = None, -1
        for d in same_kind:
            n = str((d.data.get("metadata") or {}).get("name") or "")
            if n == name:
                return d
            if n and n in name and len(n) > best_len:
                best, best_len = d, len(n)
        return best or (same_kind[0] if len(same_kind) == 1 else (docs[0] if len(docs) == 1 else None))

    def _sources(self, obj: dict, annotation: dict[str, Any] | None):
        """Source file (or generator), its document, the layers above it and the resource's names."""
        top = self.target.path
        src_file: str | None = None
        generator: tuple[str, str] | None = None

        def rel(p: str) -> str:
            return posixpath.normpath(posixpath.join(top, p)) if top != "." else posixpath.normpath(p)

        if annotation and isinstance(annotation.get("path"), str):
            src_file = rel(annotation["path"])
        elif annotation and isinstance(annotation.get("configuredIn"), str):
            generator = (rel(annotation["configuredIn"]), str((annotation.get("configuredBy") or {}).get("kind") or ""))
        if generator and self.remote_entry(generator[0]):  # generated by a fetched kustomization
            src_file, generator = generator[0], None
        entry = self.remote_entry(src_file)
        doc = self._source_doc(src_file, obj) if src_file and entry is None else None
        if entry is not None:  # the layers down to the kustomization naming the remote entry
            chain = self.chain(entry.file, True)
        else:
            chain = self.chain(generator[0], True) if generator else (self.chain(src_file) if src_file else [])
        layers = self._outer + self._with_components(chain)
        names = [str((obj.get("metadata") or {}).get("name") or "")]
        if doc is not None:
            names.append(str((doc.data.get("metadata") or {}).get("name") or ""))
        return src_file, generator, doc, layers, names

    def _with_components(self, chain: list[str]) -> list[Layer]:
        """The chain's layers, outermost first, each followed by the components it lists (last
        listed first, each with its own components): Kustomize applies a kustomization's components
        to what it has accumulated, then its own fields."""
        out: list[Layer] = []
        seen: set[str] = set()

        def add(directory: str) -> None:
            layer = self.layer(directory)
            if layer is None or directory in seen:
                return
            seen.add(directory)
            out.append(layer)
            for ref in reversed(layer.kust.refs):
                if ref.field == "components" and ref.path:
                    add(ref.path)

        for directory in chain:
            add(directory)
        return out

    def placer(self, ro: RenderedObject, annotation: dict[str, Any] | None):
        """A `places() -> [(file, first, last)]` function: every document that defines or patches
        the object, where a review may anchor a comment about it."""
        def places() -> list[tuple[str, int, int]]:
            obj = ro.obj
            src_file, generator, doc, layers, names = self._sources(obj, annotation)
            out: list[tuple[str, int, int]] = []
            if doc is not None and src_file:
                out.append((src_file, doc.line, doc.end_line))
            entry = self.remote_entry(src_file)
            if entry is not None:
                out.append((entry.file, entry.line, entry.line))
            if generator:
                layer = self.layer(posixpath.dirname(generator[0]) or ".")
                if layer is not None:
                    fld = "secretGenerator" if generator[1] == "SecretGenerator" else "configMapGenerator"
                    idx = _generator_index(layer.kust, fld, names[0])
                    span = layer.kust.doc.span((fld, idx)) if idx is not None else None
                    if span:
                        out.append((layer.kust.file, span[0], span[1]))
            for layer in layers:
                for patch in layer.patches:
                    for pdoc in targeted_docs(patch, obj, names):
                        out.append((patch.file, pdoc.line + patch.line_offset, pdoc.end_line + patch.line_offset))
            return out
        return places

    def locator(self, ro: RenderedObject, annotation: dict[str, Any] | None):
        """A `locate(path) -> Origin` function for one rendered object."""
        obj = ro.obj
        src_file, generator, doc, layers, names = self._sources(obj, annotation)

        def locate(path: str) -> Origin:
            try:
                segs = parse_path(path) if path else ()
            except ValueError:
                segs = ()
            if segs and get_path(obj, segs) is None and not generator:
                return self._absent_origin(layers, obj, names, segs, doc, src_file)
            for layer in layers:
                hit = self._layer_origin(layer, obj, names, path, segs)
                if hit:
                    return self._through_vars(hit, layers)
            if generator:
                return self._generator_origin(generator, obj, segs)
            if doc is not None and src_file:
                return self._through_vars(locate_in_doc(doc, src_file, path), layers)
            return self._fallback(src_file)

        return locate

    def _absent_origin(self, layers: list[Layer], obj: dict, names: list[str], segs: tuple,
                       doc: YamlDoc | None, src_file: str | None) -> Origin:
        """Where adding an absent field fixes it: the patch that removed it (the outermost
        removal), else the document holding its deepest existing ancestor, innermost on a tie."""
        for layer in layers:
            for patch in reversed(layer.patches):
                hit = removal_origin(patch, obj, names, segs, layer.via)
                if hit:
                    return hit
        best: tuple[int, Origin] | None = None
        if doc is not None and src_file:
            best = (doc.nearest(segs)[1], locate_in_doc(doc, src_file, format_path(segs)))
        for layer in reversed(layers):  # innermost first, so a tie keeps the inner document
            for patch in layer.patches:
                found = ancestor_origin(patch, obj, names, segs, layer.via)
                if found and (best is None or found[0] > best[0]):
                    best = found
        return best[1] if best else self._fallback(src_file, absent=True)

    def _through_vars(self, origin: Origin, layers: list[Layer]) -> Origin:
        """A source line holding `$(VAR)` got its value from the `vars:` entry that defines VAR."""
        if origin.via not in ("manifest", "patch") or not origin.file or not origin.line:
            return origin
        lines = self.tree.lines(origin.file)
        text = lines[origin.line - 1] if origin.line <= len(lines) else ""
        for var in re.findall(r"\$\(([A-Za-z0-9_.\-]+)\)", text):
            for layer in self._all_layers(layers):
                for i, v in enumerate(layer.kust.data.get("vars") or []):
                    if isinstance(v, dict) and v.get("name") == var:
                        span = layer.kust.doc.span(("vars", i))
                        line = span[0] if span else layer.kust.doc.line
                        return Origin(layer.kust.file, line, span[1] if span else line, "kustomization", f"vars {var}")
        return origin

    def _all_layers(self, layers: list[Layer]) -> list[Layer]:
        """The chain's layers first, then every other kustomization the target reads (vars
        defined in a sibling base apply across the whole build)."""
        seen = {ly.kust.dir for ly in layers}
        rest = [self.layer(d) for d in sorted(self.model.inputs(self.target).dirs) if d not in seen]
        return layers + [ly for ly in rest if ly is not None]

    # --- per-layer checks ----------------------------------------------------------------------
    def _layer_origin(self, layer: Layer, obj: dict, names: list[str], path: str, segs: tuple) -> Origin | None:
        kust = layer.kust
        data = kust.data

        def at(*s: Any, detail: str = "") -> Origin:
            span = kust.doc.span(s)
            line = span[0] if span else kust.doc.line
            return Origin(kust.file, line, span[1] if span else line, layer.via or "kustomization",
                          detail or str(s[0]))

        if segs and segs[-1] == "namespace" and data.get("namespace") and (
                segs == ("metadata", "namespace") or _get(obj, segs) == data.get("namespace")):
            return at("namespace")
        if len(segs) == 3 and segs[:2] == ("metadata", "annotations") and segs[2] in BUILD_METADATA_KEYS \
                and data.get("buildMetadata"):
            return at("buildMetadata")
        if segs == ("metadata", "name"):
            for fld in ("namePrefix", "nameSuffix"):
                if data.get(fld):
                    return at(fld)
        if segs == ("spec", "replicas"):
            for i, r in enumerate(data.get("replicas") or []):
                if isinstance(r, dict) and r.get("name") in names:
                    return at("replicas", i, "count")
        if IMAGE_PATH.search(path):
            image = str(_get(obj, segs) or "")
            for i, im in enumerate(data.get("images") or []):
                if isinstance(im, dict) and image_matches(image, im):
                    key = next((k for k in ("digest", "newTag", "newName") if k in im), None)
                    return at("images", i, key) if key else at("images", i)
        if len(segs) >= 2 and isinstance(segs[-1], str) and segs[-2] in LABEL_MAPS:
            key = segs[-1]
            for lm in reversed(layer.label_maps):
                written = as_dict(lm.doc.data.get("annotations" if lm.annotations else "labels"))
                if lm.annotations == (segs[-2] == "annotations") and key in written \
                        and str(written[key]) == str(_get(obj, segs)):
                    span = lm.doc.spans.get(("annotations" if lm.annotations else "labels", key))
                    line = (span or (lm.doc.line, lm.doc.line))[0] + lm.line_offset
                    return Origin(lm.file, line, line, "kustomization", "transformers")
            src = "commonAnnotations" if segs[-2] == "annotations" else "commonLabels"
            if key in (data.get(src) or {}):
                return at(src, key)
            if src == "commonLabels":
                for i, lab in enumerate(data.get("labels") or []):
                    if isinstance(lab, dict) and key in (lab.get("pairs") or {}):
                        return at("labels", i, "pairs", key)
        if obj.get("kind") in ("ConfigMap", "Secret"):
            field_name = "configMapGenerator" if obj.get("kind") == "ConfigMap" else "secretGenerator"
            idx = _generator_index(kust, field_name, names[0])
            if idx is not None:
                hit = self._generator_key_origin(kust, field_name, idx, segs)
                if hit:
                    return hit
        for patch in reversed(layer.patches):
            hit = patch_origin(patch, obj, names, segs, layer.via)
            if hit:
                return hit
        return None

    def _generator_origin(self, generator: tuple[str, str], obj: dict, segs: tuple) -> Origin:
        kfile, kind = generator
        layer = self.layer(posixpath.dirname(kfile) or ".")
        if layer is None:
            return Origin(kfile, 1, 1, "generator")
        kust = layer.kust
        field_name = "secretGenerator" if kind == "SecretGenerator" else "configMapGenerator"
        idx = _generator_index(kust, field_name, str((obj.get("metadata") or {}).get("name") or ""))
        if idx is None:
            return Origin(kfile, kust.doc.line, kust.doc.line, "generator")
        hit = self._generator_key_origin(kust, field_name, idx, segs)
        if hit:
            return hit
        name_span = kust.doc.span((field_name, idx, "name")) or kust.doc.span((field_name, idx))
        line = name_span[0] if name_span else kust.doc.line
        return Origin(kfile, line, line, "generator")

    def _generator_key_origin(self, kust: Kustomization, field_name: str, idx: int, segs: tuple) -> Origin | None:
        """The literal, env-file line or file that put `data.KEY` into a generated object."""
        if not (len(segs) == 2 and segs[0] in ("data", "stringData", "binaryData") and isinstance(segs[1], str)):
            return None
        key = segs[1]
        gen = (kust.data.get(field_name) or [])[idx]
        for j, lit in enumerate(gen.get("literals") or []):
            if isinstance(lit, str) and lit.split("=", 1)[0].strip() == key:
                span = kust.doc.span((field_name, idx, "literals", j))
                if span:
                    return Origin(kust.file, span[0], span[1], "generator", "literal")
        for fld in ("envs", "files"):
            for item in gen.get(fld) or []:
                if not isinstance(item, str):
                    continue
                ref_key, _, ref_path = item.partition("=") if "=" in item else (posixpath.basename(item), "", item)
                try:
                    rel = self.tree.resolve(kust.dir, ref_path)
                except ValueError:
                    continue
                if fld == "files" and ref_key == key:
                    return Origin(rel, 1, 1, "generator", "file")
                if fld == "envs":
                    for n, line in enumerate(self.tree.lines(rel), 1):
                        if line.split("=", 1)[0].strip() == key:
                            return Origin(rel, n, n, "generator", "env")
        return None


def _generator_index(kust: Kustomization, field_name: str, name: str) -> int | None:
    """The generator entry whose name is (the longest) part of a rendered object's name."""
    idx, best = None, -1
    for i, g in enumerate(kust.data.get(field_name) or []):
        gname = str(g.get("name") or "") if isinstance(g, dict) else ""
        if gname and gname in name and len(gname) > best:
            idx, best = i, len(gname)
    return idx


def targeted_docs(patch: Patch, obj: dict, names: list[str]) -> Iterator[YamlDoc]:
    """The documents of `patch` that apply to `obj`: all of them when its target selects the object;
    without a target, a strategic-merge document of the object's kind and name."""
    if patch.target is not None and not _selector_matches(patch.target, obj, names):
        return
    for doc in patch.docs:
        d = doc.data
        if patch.json6902:
            if isinstance(d, list):
                yield doc
            continue
        if not isinstance(d, dict):
            continue
        if patch.target is None:
            pname = str((d.get("metadata") or {}).get("name") or "")
            if d.get("kind") != obj.get("kind") or not any(pname == n or (pname and pname in n) for n in names):
                continue
        yield doc


def _ops(patch: Patch, obj: dict, names: list[str], kinds: tuple[str, ...]) -> Iterator[tuple[YamlDoc, int, str]]:
    """(document, index, path) of the JSON 6902 operations of these kinds that apply to `obj`."""
    for doc in targeted_docs(patch, obj, names):
        for i, op in enumerate(doc.data):
            if isinstance(op, dict) and op.get("op") in kinds:
                yield doc, i, str(op.get("path") or "")


def _at(patch: Patch, span: tuple[int, int], via: str, detail: str = "") -> Origin:
    return Origin(patch.file, span[0] + patch.line_offset, span[1] + patch.line_offset, via, detail)


def _op_span(doc: YamlDoc, i: int) -> tuple[int, int]:
    """The lines of JSON 6902 operation `i`'s value (else of the operation, else of its document)."""
    return doc.spans.get((i, "value")) or doc.spans.get((i,)) or (doc.line, doc.end_line)


def _covers(target: str, pointer: str) -> bool:
    """Whether a JSON 6902 op on `target` sets the value at `pointer` (itself or an ancestor)."""
    return bool(target) and (pointer == target or pointer.startswith(target.rstrip("-").rstrip("/") + "/"))


def patch_origin(patch: Patch, obj: dict, names: list[str], segs: tuple, via: str | None = None) -> Origin | None:
    """The line of `patch` that sets `segs` on `obj`, if the patch targets it and sets that field."""
    if patch.json6902:
        pointer = _pointer(obj, segs)
        for doc, i, target in _ops(patch, obj, names, ("add", "replace", "copy", "move")) if pointer else ():
            if _covers(target, pointer or ""):
                return _at(patch, _op_span(doc, i), via or "json6902", target)
        return None
    if segs in _IDENTITY or not segs:
        return None
    for doc in targeted_docs(patch, obj, names):
        span = doc.span(segs)
        if span:
            return _at(patch, span, via or "patch")
    return None


def removal_origin(patch: Patch, obj: dict, names: list[str], segs: tuple, via: str | None = None) -> Origin | None:
    """The line of `patch` that removes the absent field `segs` or an ancestor of it: a JSON 6902
    `remove`, or a strategic-merge `null`, `$patch: delete` or `$patch: replace`."""
    prefixes = [segs[:k] for k in range(len(segs), 0, -1)]
    if patch.json6902:
        pointers = {_pointer(obj, p) for p in prefixes} - {None}
        for doc, i, target in _ops(patch, obj, names, ("remove",)):
            if target in pointers:
                return _at(patch, doc.spans.get((i,)) or (doc.line, doc.end_line), via or "json6902", target)
        return None
    for doc in targeted_docs(patch, obj, names):
        for prefix in prefixes:
            span = doc.span(prefix)
            value = get_path(doc.data, prefix) if span else None
            if span and (value is None or isinstance(value, dict) and value.get("$patch") in ("delete", "replace")):
                return _at(patch, span, via or "patch")
    return None


def ancestor_origin(patch: Patch, obj: dict, names: list[str], segs: tuple,
                    via: str | None = None) -> tuple[int, Origin] | None:
    """How deep into the absent field `segs` the patch reaches on `obj` (segments), and the line of
    that deepest ancestor; None when it holds no part of the path."""
    best: tuple[int, Origin] | None = None
    if patch.json6902:
        for doc, i, target in _ops(patch, obj, names, ("add", "replace")):
            for k in range(len(segs), 0, -1):
                if _pointer(obj, segs[:k]) == target:
                    if best is None or k > best[0]:
                        best = (k, _at(patch, _op_span(doc, i), via or "json6902", target))
                    break
        return best
    for doc in targeted_docs(patch, obj, names):
        depth = doc.nearest(segs)[1]
        if depth and (best is None or depth > best[0]):
            inner = locate_in_doc(doc, patch.file, format_path(segs), via or "patch")
            shifted = Origin(inner.file, (inner.line or 0) + patch.line_offset,
                             (inner.end_line or inner.line or 0) + patch.line_offset, inner.via)
            best = (depth, shifted)
    return best


def _expand_list(doc: YamlDoc) -> list[YamlDoc]:
    """A `kind: List` document stands for its items, each a document of its own."""
    items = doc.data.get("items") if str(doc.data.get("kind", "")).endswith("List") else None
    if not isinstance(items, list):
        return [doc]
    out = []
    for i, item in enumerate(items):
        if isinstance(item, dict):
            spans = doc.spans.sub(("items", i))
            if spans is None:
                continue
            line, end = spans.get(()) or (doc.line, doc.end_line)
            out.append(YamlDoc(item, doc.index, line, end, spans))
    return out


def _get(obj: Any, segs: tuple) -> Any:
    from bot.model import get_path

    return get_path(obj, segs)
