"""One object's problems as the API server would see them, each at a field path, in plain words.

From the schema (jsonschema-rs): unknown fields (with the nearest known name: `livenessprobe` → did you
mean `livenessProbe`?), wrong types, missing required fields, values outside an enum. Beside the schema,
what it cannot say: quantities that do not parse (`cpu: 500 m`; the schema lets any string through), and
two items of a keyed list with the same key (two containers, env vars, volumes, ports), which the API
server refuses and a strategic-merge patch silently collapses.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bot.model import Segment, format_path
from bot.quantity import parse_quantity
from bot.validate.schemas import Catalog, Compiled

QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
MAX_PROBLEMS = 20  # per object: a wholly wrong object says the first ones, not hundreds


@dataclass(frozen=True)
class Problem:
    """`segments`: the field path (list items by name where they have one); `rename`: (wrong, right)
    for an unknown field whose fix is a rename."""

    segments: tuple[Segment, ...]
    message: str
    kind: str  # unknown | type | required | enum | quantity | duplicate | invalid
    rename: tuple[str, str] | None = None

    @property
    def path(self) -> str:
        return format_path(self.segments)


def named_path(obj: Any, raw: list[str | int]) -> tuple[Segment, ...]:
    """A concrete path with list items named where they have a `name` (`containers[api]`)."""
    out: list[Segment] = []
    node = obj
    for part in raw:
        if isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
            item = node[part]
            name = item.get("name") if isinstance(item, dict) else None
            names = [i.get("name") for i in node if isinstance(i, dict)]
            out.append(("name", str(name)) if isinstance(name, str) and names.count(name) == 1 else part)
            node = item
        else:
            out.append(part)
            node = node.get(part) if isinstance(node, dict) else None
    return tuple(out)


def _shown(segments: tuple[Segment, ...]) -> str:
    return format_path(segments) or "the object"


def nearest(name: str, known: list[str]) -> str | None:
    """The known field a misspelt one most likely meant: the same letters in another case, else the
    closest by difflib."""
    for k in known:
        if k.lower() == name.lower():
            return k
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    return close[0] if close else None


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "null"


_EXPECTED = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
             "array": "a list", "object": "a mapping"}


def schema_problems(catalog: Catalog, compiled: Compiled, obj: dict[str, Any]) -> Iterator[Problem]:
    for error in compiled.validator.iter_errors(obj):
        kind = type(error.kind).__name__
        at = named_path(obj, list(error.instance_path))
        details = error.kind.as_dict() if hasattr(error.kind, "as_dict") else {}
        if kind == "AdditionalProperties":
            parent = catalog.resolve(compiled, list(error.schema_path)[:-1]) or {}
            known = sorted((parent.get("properties") or {}) if isinstance(parent, dict) else {})
            for name in details.get("unexpected") or []:
                near = nearest(str(name), known)
                hint = f" — did you mean `{near}`?" if near else ""
                yield Problem((*at, str(name)), f"`{_shown((*at, str(name)))}`: unknown field{hint}", "unknown",
                              (str(name), near) if near else None)
        elif kind == "Type":
            wanted = [t for t in details.get("types") or [] if t != "null"]
            said = " or ".join(_EXPECTED.get(t, t) for t in wanted) or "another type"
            yield Problem(at, f"`{_shown(at)}`: {_type_name(error.instance)} ({_short(error.instance)}) where "
                              f"{said} belongs", "type")
        elif kind == "Required":
            name = str(details.get("property") or "")
            yield Problem(at, f"`{_shown(at)}`: the required field `{name}` is missing", "required")
        elif kind == "Enum" and compiled.vendored and at and at[-1] == "kind":
            # The kinds an Alert or Receiver may name are widened in the cluster's copy of the CRD by the
            # controllers that send events (a documented patch; the Flux Operator's FluxInstance, tofu-
            # controller's Terraform): our vendored copy cannot say those are wrong.
            continue
        elif kind == "Enum":
            options = ", ".join(f"`{o}`" for o in details.get("options") or [] if o is not None)
            yield Problem(at, f"`{_shown(at)}`: {_short(error.instance)} is not one of {options}", "enum")
        else:
            yield Problem(at, f"`{_shown(at)}`: {error.message}", "invalid")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def walked_problems(catalog: Catalog, compiled: Compiled, obj: dict[str, Any],
                    duplicates: bool = True) -> Iterator[Problem]:
    """What the schema cannot say, found by walking the object with its schema: quantities that do
    not parse, and (with `duplicates`) repeated keys in keyed lists."""
    yield from _walk(catalog, compiled, compiled.root, obj, obj, [], duplicates, 0)


def _walk(catalog: Catalog, compiled: Compiled, schema: Any, value: Any, obj: dict[str, Any],
          raw: list[str | int], duplicates: bool, depth: int) -> Iterator[Problem]:
    if depth > 64 or not isinstance(schema, dict):
        return
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.endswith("/" + QUANTITY):
        if value is not None and parse_quantity(value) is None:
            at = named_path(obj, raw)
            yield Problem(at, f"`{_shown(at)}`: {_short(value)} is not a Kubernetes quantity (such as `500m`, "
                              f"`1.5`, `128Mi`, `1Gi`)", "quantity")
        return
    schema = catalog.deref(compiled, schema)
    if not isinstance(schema, dict):
        return
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, sub in value.items():
            node = props.get(key) if isinstance(props, dict) and key in props else extra
            if isinstance(node, dict):
                yield from _walk(catalog, compiled, node, sub, obj, [*raw, key], duplicates, depth + 1)
    elif isinstance(value, list):
        items = schema.get("items")
        if duplicates:
            yield from _duplicates(schema, value, obj, raw)
        if isinstance(items, dict):
            for i, item in enumerate(value):
                yield from _walk(catalog, compiled, items, item, obj, [*raw, i], duplicates, depth + 1)


DEFAULT_KEYS = {"protocol": "TCP"}  # a list-map key the API server defaults before comparing


def _duplicates(schema: dict[str, Any], items: list[Any], obj: dict[str, Any], raw: list[str | int]) -> Iterator[Problem]:
    keys = schema.get("x-kubernetes-list-map-keys") if schema.get("x-kubernetes-list-type") == "map" else None
    if not keys:
        return
    seen: dict[tuple[Any, ...], int] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        key = tuple(item.get(k, DEFAULT_KEYS.get(k)) for k in keys)
        if None in key:
            at = named_path(obj, [*raw, i])
            missing = ", ".join(f"`{k}`" for k, v in zip(keys, key, strict=True) if v is None)
            yield Problem(at, f"`{_shown(at)}` has no {missing}, the key of its list", "unkeyed")
            continue
        if key in seen:
            at = named_path(obj, raw)
            yield Problem((*at, i), f"`{_shown(at)}` holds {same(keys, key)} twice (items {seen[key]} and {i}): "
                                    f"the API server refuses the object", "duplicate")
        else:
            seen[key] = i


def same(keys: list[str], values: tuple[Any, ...]) -> str:
    """How two items of a keyed list are the same, for people: `the name 'api'`."""
    return " and ".join(f"the {k} {v!r}" for k, v in zip(keys, values, strict=True))


def problems(catalog: Catalog, obj: dict[str, Any], duplicates: bool = True) -> list[Problem] | None:
    """Every problem of `obj` (at most MAX_PROBLEMS); None when its kind has no schema here."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return None
    compiled = catalog.compiled(api_version, kind)
    if compiled is None:
        return None
    if "sops" in obj:  # SOPS metadata: Flux decrypts the document and removes it before applying
        obj = {k: v for k, v in obj.items() if k != "sops"}
    out: list[Problem] = []
    for problem in (*schema_problems(catalog, compiled, obj), *walked_problems(catalog, compiled, obj, duplicates)):
        out.append(problem)
        if len(out) >= MAX_PROBLEMS:
            break
    return out
