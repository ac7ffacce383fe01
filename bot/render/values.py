"""A HelmRelease's values, merged as helm-controller merges them.

Order (fluxcd/pkg chartutil.ChartValuesFromReferences): each `valuesFrom` entry in turn (a
ConfigMap or Secret key read as YAML and deep-merged; with `targetPath`, `spec.values` is merged
first and the raw value is set at that path with Helm's `--set` parser), then `spec.values` last.
The chart's own defaults (its `values.yaml`, or its `valuesFiles` merged) are applied by Helm.

Beside the values, which layer set each leaf: the provenance of a value a chart template prints.
No I/O: objects are looked up through a function the caller gives.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from bot.model import as_dict, secret_data
from bot.repo.manifest import HelmRelease, ValuesReference

Lookup = Callable[[str, str, str], dict[str, Any] | None]  # (kind, namespace, name) -> the object
Leaf = tuple[str, ...]
SPEC_VALUES = "values"


@dataclass(frozen=True)
class Layer:
    """Where values came from: `spec.values`, a `valuesFrom` entry (its index), or a values file."""

    kind: str  # "values" | "valuesFrom" | "valuesFile"
    index: int = -1
    file: str = ""


@dataclass(frozen=True)
class ValuesProblem:
    """A `valuesFrom` entry Flux could not use: fatal unless `optional`; `unknown` when the object is
    there but its content cannot be read here (a SOPS-encrypted Secret), which is not Flux's failure."""

    ref: ValuesReference
    message: str
    fatal: bool
    unknown: bool = False


@dataclass
class MergedValues:
    values: dict[str, Any]
    problems: list[ValuesProblem] = field(default_factory=list)
    setters: dict[Leaf, Layer] = field(default_factory=dict)

    def setter(self, path: Leaf) -> tuple[Layer, Leaf] | None:
        """The layer that set `path` or its nearest ancestor that a layer set as a whole."""
        for n in range(len(path), 0, -1):
            hit = self.setters.get(path[:n])
            if hit is not None:
                return hit, path[:n]
        return None


def merge_maps(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Helm's MergeMaps: maps merge key by key, anything else in `b` replaces what `a` had."""
    out = dict(a)
    for key, value in b.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_maps(out[key], value)
        else:
            out[key] = value
    return out


def _leaves(values: Any, prefix: Leaf = ()) -> list[Leaf]:
    if isinstance(values, dict) and values:
        return [leaf for k, v in values.items() for leaf in _leaves(v, prefix + (str(k),))]
    return [prefix] if prefix else []


def _record_leaf(setters: dict[Leaf, Layer], leaf: Leaf, layer: Layer) -> None:
    for known in [k for k in setters if k[:len(leaf)] == leaf and k != leaf]:
        del setters[known]  # a scalar replaced a map
    setters[leaf] = layer


def _record(setters: dict[Leaf, Layer], values: dict[str, Any], layer: Layer) -> None:
    for leaf in _leaves(values):
        _record_leaf(setters, leaf, layer)


def _data(obj: dict[str, Any], ref: ValuesReference) -> tuple[str | None, bool]:
    """(text of the key, whether it is unreadable here). A Secret's `stringData` wins over `data`,
    as the API server merges them; a SOPS-encrypted value is unreadable."""
    if obj.get("kind") == "Secret":
        if "sops" in obj:
            return None, True
        plain = as_dict(obj.get("stringData"))
        if ref.values_key in plain:
            return str(plain[ref.values_key]), False
        raw = as_dict(obj.get("data")).get(ref.values_key)
        if raw is None:
            return None, False
        text = secret_data(str(raw))
        return (text, False) if text is not None else (None, True)
    value = as_dict(obj.get("data")).get(ref.values_key)
    if isinstance(value, str) and value.startswith("ENC["):
        return None, True
    return (None, False) if value is None else (str(value), False)


def merge_release_values(hr: HelmRelease, lookup: Lookup) -> MergedValues:
    result: dict[str, Any] = {}
    out = MergedValues(result)
    for ref in hr.values_from:
        where = f"{ref.kind} {hr.namespace}/{ref.name}"
        if ref.kind not in ("ConfigMap", "Secret"):
            out.problems.append(ValuesProblem(ref, f"`valuesFrom` kind {ref.kind!r} is not ConfigMap or Secret",
                                              fatal=True))
            continue
        obj = lookup(ref.kind, hr.namespace, ref.name)
        if obj is None:
            out.problems.append(ValuesProblem(ref, f"{where} is not defined in this repository", not ref.optional))
            continue
        text, unreadable = _data(obj, ref)
        if unreadable:
            out.problems.append(ValuesProblem(ref, f"{where} is encrypted: its values are not known here",
                                              fatal=False, unknown=True))
            continue
        if text is None:
            out.problems.append(ValuesProblem(ref, f"{where} has no key {ref.values_key!r}", not ref.optional))
            continue
        layer = Layer("valuesFrom", ref.index)
        if ref.target_path:
            result = copy.deepcopy(merge_maps(result, hr.values))
            try:
                path = set_path(result, ref.target_path, text)
            except ValueError as exc:
                out.problems.append(ValuesProblem(ref, f"`targetPath` {ref.target_path!r}: {exc}", fatal=True))
                continue
            _record_leaf(out.setters, path, layer)
            continue
        try:
            loaded = yaml.safe_load(text) if text.strip() else {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem", None) or "not valid YAML"
            out.problems.append(ValuesProblem(ref, f"{where} key {ref.values_key!r} is not valid YAML: {mark}",
                                              fatal=True))
            continue
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            out.problems.append(ValuesProblem(ref, f"{where} key {ref.values_key!r} holds no YAML mapping",
                                              fatal=True))
            continue
        result = merge_maps(result, loaded)
        _record(out.setters, loaded, layer)
    out.values = merge_maps(result, hr.values)
    _record(out.setters, hr.values, Layer(SPEC_VALUES))
    return out


# --- Helm's `--set` parser, for `targetPath` ---------------------------------------------------

_INDEX = re.compile(r"^(.*)\[(\d+)\]$")


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i + 1])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def typed_value(raw: str, as_string: bool = False) -> Any:
    """strvals' typedVal: true/false/null and base-10 integers without a leading zero are typed."""
    if as_string:
        return raw
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "null":
        return None
    if raw == "0":
        return 0
    if raw and raw[0] != "0" and re.fullmatch(r"[+-]?\d+", raw):
        return int(raw)
    return raw


def set_path(values: dict[str, Any], path: str, raw: str) -> Leaf:
    """Set `path` (dots between keys, `\\.` a literal dot, `name[i]` a list item) to `raw` as
    helm-controller's ReplacePathValue does: a quoted value is a string, else typed; a list in
    braces (`{a,b}`) is a list. Returns the leaf path set."""
    as_string = len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\""
    value: Any
    if as_string:
        value = raw.strip("'\"")
    elif raw.startswith("{") and raw.endswith("}"):
        value = [typed_value(v) for v in _split_unescaped(raw[1:-1], ",") if v != ""]
    else:
        pieces = _split_unescaped(raw, ",")
        if len(pieces) > 1:
            raise ValueError(f"key {pieces[1].split('=', 1)[0]!r} has no value (Helm reads a comma as the next key)")
        value = typed_value(raw)
    keys = _split_unescaped(path, ".")
    if not keys or any(k == "" for k in keys):
        raise ValueError("a path needs a key between every two dots")
    cur: Any = values
    leaf: list[str] = []
    for n, key in enumerate(keys):
        last = n == len(keys) - 1
        m = _INDEX.match(key)
        name, index = (m.group(1), int(m.group(2))) if m else (key, None)
        leaf.append(name)
        if index is None:
            if last:
                cur[name] = value
            else:
                if not isinstance(cur.get(name), dict):
                    cur[name] = {}
                cur = cur[name]
            continue
        if index > 65536:
            raise ValueError(f"index {index} is larger than Helm's limit of 65536")
        items = cur.get(name) if isinstance(cur.get(name), list) else []
        items = items + [None] * (index + 1 - len(items))
        cur[name] = items
        leaf.append(str(index))
        if last:
            items[index] = value
        else:
            if not isinstance(items[index], dict):
                items[index] = {}
            cur = items[index]
    return tuple(leaf)
