"""Line-aware, bounded YAML loading.

PR content is untrusted, so every parse here is bounded: file size, nesting depth and the number
of nodes after alias expansion (a "billion laughs" document is rejected, not expanded). Documents
keep the line of every key and list item (from the composer's node marks), which is how findings
on rendered objects are mapped back to source lines.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

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

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:  # noqa: D102
        return self.construct_scalar(node)

    def construct_yaml_bool(self, node: yaml.ScalarNode) -> Any:  # noqa: D102
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
    return constructor.construct_scalar(cast(yaml.ScalarNode, node))


# types-PyYAML binds add_constructor's loader type variable to its own loader classes.
for _tag, _build in (("tag:yaml.org,2002:value", _construct_plain), (None, _construct_plain),
                     ("tag:yaml.org,2002:timestamp", _Constructor.construct_yaml_timestamp),
                     ("tag:yaml.org,2002:bool", _Constructor.construct_yaml_bool)):
    _Constructor.add_constructor(_tag, _build)  # type: ignore[type-var]


def _end_line(node: yaml.Node) -> int:
    """1-based last line of a node (block nodes end at column 0 of the following line)."""
    mark = node.end_mark
    return mark.line + 1 if mark.column > 0 else max(mark.line, node.start_mark.line + 1)


# A span node: (first line, last line, children); children are a dict for a mapping, a list for a
# sequence, None for a scalar.
_SpanNode = tuple[int, int, "dict[Any, _SpanNode] | list[_SpanNode] | None"]


class Spans:
    """The line span of every key and list item of one document, looked up by path.

    Stored as a tree whose subtrees are shared where the document repeats a node through an alias,
    so the table costs what the file holds, not what its aliases expand to (a small file of nested
    aliases would otherwise store hundreds of thousands of long paths).
    """

    __slots__ = ("_root",)

    def __init__(self, root: _SpanNode) -> None:
        self._root = root

    def _node(self, path: tuple) -> _SpanNode | None:
        cur: _SpanNode | None = self._root
        for seg in path:
            children = cur[2] if cur is not None else None
            if isinstance(children, dict):
                try:
                    cur = children.get(seg)
                except TypeError:
                    return None
            elif isinstance(children, list) and isinstance(seg, int) and 0 <= seg < len(children):
                cur = children[seg]
            else:
                return None
            if cur is None:
                return None
        return cur

    def get(self, path: tuple, default: tuple[int, int] | None = None) -> tuple[int, int] | None:
        node = self._node(path)
        return (node[0], node[1]) if node is not None else default

    def __contains__(self, path: object) -> bool:
        return isinstance(path, tuple) and self._node(path) is not None

    def sub(self, path: tuple) -> Spans | None:
        """The spans of the value at `path`, with paths relative to it."""
        node = self._node(path)
        return Spans(node) if node is not None else None


@dataclass
class YamlDoc:
    """One document of a file: its data and the line span of every key and list item."""

    data: Any
    index: int
    line: int
    end_line: int
    spans: Spans = field(repr=False)
    nodes: int = field(default=0, repr=False)  # nodes after alias expansion: what the data costs

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
        return self.spans.get(raw) or (self.line, self.end_line), n


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
    """Turns a composed node graph into Python data plus spans, counting expanded nodes.

    The data is expanded (rules read plain lists and dicts), and every expanded node is charged to
    the budget; the span children of a node are built once and shared by each alias to it.
    """

    def __init__(self, budget: int):
        self.budget = budget
        self.constructor = _Constructor()
        self._children: dict[int, Any] = {}  # id(node) -> its span children, for this document

    def document(self, node: yaml.Node) -> tuple[Any, _SpanNode]:
        self._children = {}
        data, children = self.build(node, 0)
        start = node.start_mark.line + 1
        return data, (start, max(start, _end_line(node)), children)

    def build(self, node: yaml.Node, depth: int, spans: bool = True) -> tuple[Any, Any]:
        """The node's data and, when `spans`, its span children."""
        if spans and id(node) in self._children:
            return self.build(node, depth, spans=False)[0], self._children[id(node)]
        self.budget -= 1
        if self.budget < 0:
            raise YamlError("document too large after alias expansion", node.start_mark.line + 1)
        if depth > MAX_DEPTH:
            raise YamlError(f"nesting deeper than {MAX_DEPTH}", node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            self.constructor.flatten_mapping(node)
            out: dict = {}
            kids: dict | None = {} if spans else None
            for knode, vnode in node.value:
                key = self.constructor.construct_object(knode, deep=True)
                if isinstance(key, (list, dict)):
                    raise YamlError("unhashable mapping key", knode.start_mark.line + 1)
                out[key], grand = self.build(vnode, depth + 1, spans)
                if kids is not None:
                    start = knode.start_mark.line + 1
                    kids[key] = (start, max(start, _end_line(vnode)), grand)
            result: tuple[Any, Any] = (out, kids)
        elif isinstance(node, yaml.SequenceNode):
            items: list = []
            seq: list | None = [] if spans else None
            for item in node.value:
                value, grand = self.build(item, depth + 1, spans)
                items.append(value)
                if seq is not None:
                    start = item.start_mark.line + 1
                    seq.append((start, max(start, _end_line(item)), grand))
            result = (items, seq)
        else:
            result = (self.constructor.construct_object(node, deep=True), None)
        if spans:
            self._children[id(node)] = result[1]
        return result


def _check_size(text: str | bytes, name: str) -> None:
    if len(text) > MAX_FILE_BYTES:
        raise YamlError(f"{name} is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")


def load_docs(text: str, name: str = "<input>") -> list[YamlDoc]:
    """All non-empty documents of `text`, with spans. Raises YamlError on bad or oversized input."""
    return cast(list[YamlDoc], _load(text, name, spans=True))


def load_data(text: str, name: str = "<input>") -> list[Any]:
    """Documents as plain data: the same bounds and errors, no spans built (a build's output needs
    none, and building them was half of reading it)."""
    return _load(text, name, spans=False)


def _load(text: str, name: str, spans: bool) -> list[Any]:
    _check_size(text, name)
    docs: list[Any] = []
    builder = _Builder(MAX_NODES)
    try:
        for i, node in enumerate(yaml.compose_all(text, Loader=_Loader)):
            if node is None:
                continue
            before = builder.budget
            if not spans:
                data = builder.build(node, 0, spans=False)[0]
                if data is not None:
                    docs.append(data)
                continue
            data, root = builder.document(node)
            if data is not None:
                docs.append(YamlDoc(data, i, root[0], root[1], Spans(root), before - builder.budget))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise YamlError(f"{name}: {exc.problem or exc}", mark.line + 1 if mark else None) from None
    except (yaml.YAMLError, RecursionError, ValueError, TypeError) as exc:
        if isinstance(exc, YamlError):
            raise
        raise YamlError(f"{name}: {exc}") from None
    return docs


PARSED_FORMAT = "1"  # the JSON form of documents below; part of every key they are kept under


def exact_json(value: Any, part: Callable[[Any], Any] = lambda v: v) -> str | None:
    """`value` as JSON text, for a cache C reads back many times faster than YAML parses; None when
    JSON cannot hold `part` of it exactly (keys that are not strings, a NaN, `!!binary`), so that
    what it holds is made again every time instead."""
    try:
        text = json.dumps(value, ensure_ascii=False)
        if part(json.loads(text)) != part(value):
            return None
    except (TypeError, ValueError):
        return None
    return text


def dump_docs(docs: list[YamlDoc]) -> bytes | None:
    """Documents as JSON (data, lines, spans), for a cache of parsed files; None when JSON cannot
    hold their data exactly (exact_json), so such a file is parsed every time."""
    text = exact_json([[d.data, d.index, d.line, d.end_line, d.spans._root, d.nodes] for d in docs],
                      lambda rows: [row[0] for row in rows])
    return text.encode() if text is not None else None


def dump_error(error: YamlError) -> bytes:
    """A file YAML refuses, for the same cache (chart templates are such files, in every check)."""
    return json.dumps({"error": [error.message, error.line]}, ensure_ascii=False).encode()


def undump_docs(data: bytes) -> list[YamlDoc] | None:
    """What dump_docs wrote; None for anything else (a cache entry that cannot be used is a miss).
    Raises the YamlError dump_error kept."""
    try:
        rows = json.loads(data)
        if isinstance(rows, dict):
            message, line = rows["error"]
            if isinstance(message, str) and isinstance(line, (int, type(None))):
                raise YamlError(message, line)
            return None
        docs = [YamlDoc(d, index, line, end, Spans(root), nodes) for d, index, line, end, root, nodes in rows]
    except YamlError:
        raise
    except (ValueError, TypeError, KeyError):
        return None
    if not all(isinstance(v, int) for doc in docs for v in (doc.index, doc.line, doc.end_line, doc.nodes)) or \
            not all(isinstance(doc.spans._root, list) and len(doc.spans._root) == 3 for doc in docs):
        return None
    return docs
