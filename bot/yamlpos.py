"""Line-aware, bounded YAML loading.

PR content is untrusted, so every parse here is bounded: file size, nesting depth and the number
of nodes after alias expansion (a "billion laughs" document is rejected, not expanded). Documents
keep the line of every key and list item (from the composer's node marks), which is how findings
on rendered objects are mapped back to source lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from bot.model import Segment

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - libyaml is present on every supported platform
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_NODES = 500_000
MAX_DEPTH = 128


class YamlError(ValueError):
    """A YAML file that cannot be used; `line` is 1-based where known."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.line = line


class _Constructor(SafeConstructor):
    """Kubernetes reads YAML 1.2-ish: timestamps stay strings and only true/false are booleans."""

    def construct_yaml_timestamp(self, node):  # noqa: D102
        return self.construct_scalar(node)

    def construct_yaml_bool(self, node):  # noqa: D102
        value = self.construct_scalar(node)
        low = value.lower()
        if low in ("true", "false"):
            return low == "true"
        return value


def _construct_plain(constructor: _Constructor, node: yaml.Node) -> Any:
    """Tags Kubernetes does not know (`=` is YAML 1.1's `value` tag, `!Ref`-style custom tags) are
    read as the plain scalar, list or mapping they hold, as kyaml does, instead of failing."""
    if isinstance(node, yaml.MappingNode):
        return constructor.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return constructor.construct_sequence(node, deep=True)
    return constructor.construct_scalar(node)


_Constructor.add_constructor("tag:yaml.org,2002:value", _construct_plain)
_Constructor.add_constructor(None, _construct_plain)
_Constructor.add_constructor("tag:yaml.org,2002:timestamp", _Constructor.construct_yaml_timestamp)
_Constructor.add_constructor("tag:yaml.org,2002:bool", _Constructor.construct_yaml_bool)


def _end_line(node: yaml.Node) -> int:
    """1-based last line of a node (block nodes end at column 0 of the following line)."""
    mark = node.end_mark
    return mark.line + 1 if mark.column > 0 else max(mark.line, node.start_mark.line + 1)


@dataclass
class YamlDoc:
    """One document of a file: its data and the line span of every key and list item."""

    data: Any
    index: int
    line: int
    end_line: int
    spans: dict[tuple, tuple[int, int]] = field(default_factory=dict, repr=False)

    def _raw(self, segments: tuple[Segment, ...] | list[Segment]) -> tuple[tuple, int]:
        """Resolve `[name]` selectors to indices; returns the raw path and how many segments resolved."""
        cur = self.data
        raw: list = []
        for i, seg in enumerate(segments):
            if isinstance(seg, tuple):
                if not isinstance(cur, list):
                    return tuple(raw), i
                idx = _select(cur, seg[0], seg[1])
                if idx is None:
                    return tuple(raw), i
                raw.append(idx)
                cur = cur[idx]
            elif isinstance(seg, int):
                if not isinstance(cur, list) or not 0 <= seg < len(cur):
                    return tuple(raw), i
                raw.append(seg)
                cur = cur[seg]
            else:
                if not isinstance(cur, dict) or seg not in cur:
                    return tuple(raw), i
                raw.append(seg)
                cur = cur[seg]
        return tuple(raw), len(segments)

    def span(self, segments: tuple[Segment, ...] | list[Segment]) -> tuple[int, int] | None:
        """Line span of the value at `segments`, or None if absent."""
        raw, n = self._raw(segments)
        if n != len(segments):
            return None
        return self.spans.get(raw)

    def nearest(self, segments: tuple[Segment, ...] | list[Segment]) -> tuple[tuple[int, int], int]:
        """Span of the deepest existing prefix of `segments` and that prefix's length."""
        raw, n = self._raw(segments)
        while raw and raw not in self.spans:
            raw = raw[:-1]
            n -= 1
        return self.spans.get(raw, (self.line, self.end_line)), n


def _select(items: list, key: str, value: str) -> int | None:
    """Index of the item whose `key` equals `value`; failing that, the item whose value is the
    longest part of it (a rendered name carries prefixes, suffixes or a hash the source lacks)."""
    best, best_len = None, 0
    for j, x in enumerate(items):
        if not isinstance(x, dict) or x.get(key) is None:
            continue
        name = str(x.get(key))
        if name == value:
            return j
        if len(name) > best_len and name in value:
            best, best_len = j, len(name)
    return best


class _Builder:
    """Turns a composed node graph into Python data plus spans, counting expanded nodes."""

    def __init__(self, budget: int):
        self.budget = budget
        self.constructor = _Constructor()

    def build(self, node: yaml.Node, path: tuple, spans: dict, depth: int, line: int | None) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise YamlError("document too large after alias expansion", node.start_mark.line + 1)
        if depth > MAX_DEPTH:
            raise YamlError(f"nesting deeper than {MAX_DEPTH}", node.start_mark.line + 1)
        start = line if line is not None else node.start_mark.line + 1
        spans[path] = (start, max(start, _end_line(node)))
        if isinstance(node, yaml.MappingNode):
            self.constructor.flatten_mapping(node)
            out: dict = {}
            for knode, vnode in node.value:
                key = self.constructor.construct_object(knode, deep=True)
                if isinstance(key, (list, dict)):
                    raise YamlError("unhashable mapping key", knode.start_mark.line + 1)
                out[key] = self.build(vnode, path + (key,), spans, depth + 1, knode.start_mark.line + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,), spans, depth + 1, None) for i, item in enumerate(node.value)]
        return self.constructor.construct_object(node, deep=True)


def _check_size(text: str | bytes, name: str) -> None:
    if len(text) > MAX_FILE_BYTES:
        raise YamlError(f"{name} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")


def load_docs(text: str, name: str = "<input>") -> list[YamlDoc]:
    """All non-empty documents of `text`, with spans. Raises YamlError on bad or oversized input."""
    _check_size(text, name)
    docs: list[YamlDoc] = []
    builder = _Builder(MAX_NODES)
    try:
        for i, node in enumerate(yaml.compose_all(text, Loader=_Loader)):
            if node is None:
                continue
            spans: dict[tuple, tuple[int, int]] = {}
            data = builder.build(node, (), spans, 0, None)
            if data is None:
                continue
            line, end = spans[()]
            docs.append(YamlDoc(data, i, line, end, spans))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise YamlError(f"{name}: {exc.problem or exc}", mark.line + 1 if mark else None) from None
    except (yaml.YAMLError, RecursionError, ValueError, TypeError) as exc:
        if isinstance(exc, YamlError):
            raise
        raise YamlError(f"{name}: {exc}") from None
    return docs


def load_data(text: str, name: str = "<input>") -> list[Any]:
    """Documents as plain data (same bounds, no spans kept)."""
    return [d.data for d in load_docs(text, name)]
