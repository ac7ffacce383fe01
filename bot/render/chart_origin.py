"""Provenance of chart output: which line of the repository set a value that a chart template printed.

Helm keeps no origin annotations, so a value is traced back through the values it was made from:

1. a value the release's values set (an image tag, `replicaCount`, a `resources` block) points at
   that line of the HelmRelease's `spec.values`, of the `valuesFrom` ConfigMap that set it, or of the
   chart's own `values.yaml`/`valuesFiles` (a chart in the repository) — matched by value and by the
   names of the keys on both sides (`spec.replicas` ↔ `replicaCount`, `containers[web].image` ↔
   `image.tag`, `env[LOG_LEVEL].value` ↔ `logLevel`), never by value alone unless it is distinctive;
2. otherwise, for a chart in the repository, the template line that printed the key;
3. otherwise the HelmRelease's `spec.chart` line.

An absent field (no probe, no limits) is located where adding it fixes it: the template of a chart in
the repository, else the HelmRelease's `spec.values` where the chart reads a key of that name from its
values (its `values.yaml` has one), else the HelmRelease.

`Origin.via` says which: `values` (a values line whose value is the rendered value: a suggestion may
rewrite it), `values-part` (part of it: the tag of an image), `chart-default` (a fetched chart's own
default, located at the HelmRelease's `spec.values` where overriding it fixes it), `template`, `chart`,
`enclosing`.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from bot.model import UNKNOWN, Origin, Segment, format_path, parse_path, split_image
from bot.objects import RenderedObject
from bot.render.values import Layer, Leaf, MergedValues
from bot.repo.tree import RepoTree
from bot.yamlpos import YamlError, load_docs

DISTINCTIVE = 6  # characters a value needs before it is traced by value alone


@dataclass(frozen=True)
class Setting:
    """One key of the merged values (a leaf, or a map as a whole) and the line that set it."""

    leaf: Leaf
    value: Any
    origin: Origin
    priority: int  # spec.values 3, valuesFrom 2, the chart's defaults 1


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _names(segments: tuple[Segment, ...]) -> list[str]:
    """Key names of a rendered path, a list item's name included (`env[LOG_LEVEL]` → `loglevel`)."""
    out = []
    for seg in segments:
        if isinstance(seg, str):
            out.append(_squash(seg))
        elif isinstance(seg, tuple):
            out.append(_squash(seg[1]))
    return out


def _related(a: str, b: str) -> bool:
    """Two key names that mean the same thing: equal, or one the stem of the other (`replicas` and
    `replicaCount`, `port` and `servicePort`)."""
    stem_a, stem_b = a.rstrip("s"), b.rstrip("s")
    return bool(stem_a and stem_b) and (stem_a in stem_b or stem_b in stem_a) and min(len(stem_a), len(stem_b)) >= 3


def _score(leaf: Leaf, names: list[str]) -> int:
    """How well a values key matches a rendered path: the number of trailing key names they share,
    or 1 when their last names are related."""
    keys = [_squash(k) for k in leaf if not k.isdigit()]
    n = 0
    while n < min(len(keys), len(names)) and keys[-1 - n] == names[-1 - n]:
        n += 1
    if n:
        return n
    return 1 if keys and names and _related(keys[-1], names[-1]) else 0


def _leaves(values: Any, prefix: Leaf = ()) -> Iterator[tuple[Leaf, Any]]:
    """Every key of the values: maps as a whole too (a `resources` block)."""
    if isinstance(values, dict):
        for k, v in values.items():
            leaf = prefix + (str(k),)
            yield leaf, v
            yield from _leaves(v, leaf)


class ChartOrigins:
    """Locates the values of one release's output. `hr` is the HelmRelease as rendered; `lookup`
    finds the object a `valuesFrom` entry names; `tree` is the repository;
    `chart_folder` is the chart's folder in the repository ("" for a fetched chart); `defaults`
    the chart's own values and `defaults_file` where they are written (a chart in the repository)."""

    def __init__(self, hr: RenderedObject, merged: MergedValues, *, value_sources: list[tuple[str, str, str]],
                 lookup: Callable[[str, str, str], RenderedObject | None],
                 tree: RepoTree, chart_folder: str = "",
                 defaults: dict[str, Any] | None = None, defaults_files: tuple[str, ...] = ()):
        self.hr = hr
        self.merged = merged
        self.lookup = lookup
        self.tree = tree
        self.chart_folder = chart_folder
        self.defaults = defaults or {}
        self.value_sources = value_sources  # (kind, name, valuesKey) of each valuesFrom entry, by index
        self.defaults_files = defaults_files
        self._settings: list[Setting] | None = None

    # --- where each values key was set ------------------------------------------------------
    def settings(self) -> list[Setting]:
        if self._settings is None:
            out: list[Setting] = []
            for leaf, value in _leaves(self.defaults):
                if self.merged.setter(leaf) is None:
                    out.append(Setting(leaf, value, self._default_origin(leaf), 1))
            for leaf, value in _leaves(self.merged.values):
                found = self.merged.setter(leaf)
                if found is not None and found[1] == leaf:
                    layer = found[0]
                    out.append(Setting(leaf, value, self._layer_origin(layer, leaf),
                                       3 if layer.kind == "values" else 2))
                elif found is not None:  # inside a map a layer set as a whole
                    out.append(Setting(leaf, value, self._layer_origin(found[0], leaf), 2))
            self._settings = [s for s in out if s.origin.file]
        return self._settings

    def _default_origin(self, leaf: Leaf) -> Origin:
        """The line of the chart's values file that holds a default; for a fetched chart, whose files are
        not the team's, the HelmRelease's `spec.values`, where overriding it fixes it (`chart-default`)."""
        for file in reversed(self.defaults_files):
            span = self._span(file, leaf)
            if span is not None:
                return Origin(file, span[0], span[1], "values", format_path(leaf))
        if self.defaults_files:
            return UNKNOWN
        return self._release_values_line(leaf, "chart-default") or self._enclosing(self.chart_line())

    def _span(self, file: str, leaf: Leaf, offset: int = 0, text: str | None = None) -> tuple[int, int] | None:
        try:
            docs = load_docs(text, file) if text is not None else self.tree.docs(file)
        except (YamlError, OSError):
            return None
        span = docs[0].span(leaf) if docs else None
        return (span[0] + offset, span[1] + offset) if span else None

    def _layer_origin(self, layer: Layer, leaf: Leaf) -> Origin:
        if layer.kind == "values":
            origin = self.hr.origin(format_path(("spec", "values", *leaf)))
            return Origin(origin.file, origin.line, origin.end_line, "values", format_path(leaf)) \
                if origin.via in ("manifest", "patch") else origin
        if layer.kind == "valuesFrom" and 0 <= layer.index < len(self.value_sources):
            kind, name, key = self.value_sources[layer.index]
            source = self.lookup(kind, self.hr.namespace, name)
            if source is None:
                return UNKNOWN
            origin = source.origin(format_path(("data", key)))
            text = (source.obj.get("data") or {}).get(key) if isinstance(source.obj.get("data"), dict) else None
            if origin.via == "manifest" and origin.line and isinstance(text, str):
                # A block scalar under `key: |` starts on the next line.
                span = self._span(origin.file or "", leaf, origin.line, text)
                if span is not None and span[1] <= (origin.end_line or origin.line):
                    return Origin(origin.file, span[0], span[1], "values", format_path(leaf))
            return origin
        return UNKNOWN

    # --- locating a rendered value ------------------------------------------------------------
    def locate(self, obj: RenderedObject, template: str, path: str) -> Origin:
        """Where the value at `path` of `obj` (printed by `template`, `<chart>/templates/x.yaml`) was set."""
        try:
            segments = parse_path(path)
        except ValueError:
            return self.chart_line()
        if not segments:
            return self._template_line(template, ()) or self.chart_line()
        value = obj.value(path)
        if value is None:
            return self._absent(obj, template, segments)
        return self._traced(value, segments) or self._template_line(template, segments) or self.chart_line()

    def _traced(self, value: Any, segments: tuple[Segment, ...]) -> Origin | None:
        names = _names(segments)
        best: tuple[int, int, Origin] | None = None
        for s in self.settings():
            how = _matches(s.value, value, names)
            if how is None:
                continue
            score = _score(s.leaf, names) + (1 if how == "tag" else 0)
            if score == 0 and not _distinctive(value):
                continue
            if best is None or (score, s.priority) > best[:2]:
                via = "values" if how == "equal" else "values-part"
                best = (score, s.priority, Origin(s.origin.file, s.origin.line, s.origin.end_line,
                                                  via if s.origin.via == "values" else s.origin.via, s.origin.detail))
        return best[2] if best else None

    def _template_file(self, template: str) -> str | None:
        if not self.chart_folder or "/" not in template:
            return None
        rel = template.split("/", 1)[1]
        return rel if self.chart_folder == "." else posixpath.join(self.chart_folder, rel)

    def _template_line(self, template: str, segments: tuple[Segment, ...], via: str = "template") -> Origin | None:
        """The line of the chart's template that writes the path's last key (the first such line)."""
        file = self._template_file(template)
        if file is None:
            return None
        keys = [s for s in segments if isinstance(s, str)]
        try:
            lines = [ln.rstrip("\n") for ln in self.tree.lines(file)]
        except OSError:
            return None
        for key in reversed(keys or ["kind"]):
            pattern = re.compile(rf"^\s*(?:-\s+)?['\"]?{re.escape(key)}['\"]?\s*:")
            for n, text in enumerate(lines, 1):
                if pattern.match(text):
                    return Origin(file, n, n, via, template)
        return Origin(file, 1, 1, via, template) if lines else None

    def _absent(self, obj: RenderedObject, template: str, segments: tuple[Segment, ...]) -> Origin:
        n = len(segments)
        while n > 0 and obj.value(format_path(segments[:n])) is None:
            n -= 1
        in_chart = self._template_line(template, segments[:n] if n else segments[:1], "enclosing")
        if in_chart is not None:
            return in_chart
        key = self._values_key(segments, n)
        if key is not None:
            return key
        return self._enclosing(self.chart_line())

    def _values_key(self, segments: tuple[Segment, ...], n: int) -> Origin | None:
        """Where in the HelmRelease's `spec.values` to set a field the chart reads from its values: the
        chart's values hold a key named like the missing field or its deepest present parent
        (`resources: {}` for a container without limits; `redis.resources` for the redis container).
        Located at the deepest part of that key the HelmRelease already writes, `detail` naming the keys
        to add below it (`values:redis.resources`)."""
        wanted = {_squash(s) for s in segments[max(n - 1, 0):] if isinstance(s, str)}
        present = _names(segments[:n])
        candidates = [leaf for leaf, _v in _leaves(self.defaults) if _squash(leaf[-1]) in wanted]
        if not candidates:
            return None
        return self._release_values_line(max(candidates, key=lambda c: (_score(c, present), -len(c))), "enclosing")

    def _release_values_line(self, leaf: Leaf, via: str) -> Origin | None:
        """The line of the HelmRelease's `spec.values` under which `leaf` is (or would be) written: the
        deepest part of it the release already writes; `detail` is `values:` and the keys still to add."""
        written = self.hr.value("spec.values")
        depth = 0
        while depth < len(leaf) and isinstance(written, dict) and leaf[depth] in written:
            written = written[leaf[depth]]
            depth += 1
        origin = self.hr.origin(format_path(("spec", "values", *leaf[:depth])))
        if not origin.file or origin.via == "enclosing":
            return None
        return Origin(origin.file, origin.line, origin.line, via, "values:" + ".".join(leaf[depth:]))

    @staticmethod
    def _enclosing(origin: Origin) -> Origin:
        return Origin(origin.file, origin.line, origin.line, "enclosing", origin.detail) if origin.file else origin

    def chart_line(self) -> Origin:
        origin = self.hr.origin("spec.chart")
        if origin is UNKNOWN or not origin.file or origin.via == "enclosing":
            origin = self.hr.origin("spec.chartRef")
        if not origin.file or origin.via == "enclosing":
            origin = self.hr.origin("")
        return Origin(origin.file, origin.line, origin.end_line, "chart", origin.detail) if origin.file else origin


def _distinctive(value: Any) -> bool:
    return isinstance(value, str) and len(value) >= DISTINCTIVE and value.lower() not in ("true", "false", "null")


def _matches(setting: Any, rendered: Any, names: list[str]) -> str | None:
    """"equal" when a values key holds the rendered value, "tag"/"part" when it holds the tag or the
    repository of a rendered image, else None."""
    if isinstance(setting, dict | list) or isinstance(rendered, dict | list):
        return "equal" if setting == rendered else None  # `resources: {}` too: _traced wants its key's name
    if setting is None or isinstance(setting, bool) != isinstance(rendered, bool):
        return None
    if str(setting) == str(rendered):
        return "equal"
    if names and names[-1] == "image" and isinstance(rendered, str) and str(setting):
        name, tag, digest = split_image(rendered)
        if str(setting) in (tag, digest, digest.removeprefix("sha256:")):
            return "tag"
        if str(setting) == name or (len(str(setting)) >= 3 and name.endswith("/" + str(setting))):
            return "part"
    return None
