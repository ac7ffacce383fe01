"""A CustomResourceDefinition's `openAPIV3Schema`, as a strict JSON Schema (draft 2020-12) per served version.

The API server prunes and rejects what a structural schema does not declare; validating strictly means
an object with a field the schema does not list is an error, except below
`x-kubernetes-preserve-unknown-fields: true` (or where `additionalProperties` is given). OpenAPI v3's
`nullable` becomes a `null` type, `x-kubernetes-int-or-string` a string-or-integer, and an
`x-kubernetes-embedded-resource` gets `apiVersion`, `kind` and `metadata` even when it does not list them.
"""

from __future__ import annotations

from typing import Any

from bot.model import as_dict, as_list

JSON_SCHEMA = "https://json-schema.org/draft/2020-12/schema"
OPENAPI_ONLY = ("nullable", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string",
                "x-kubernetes-embedded-resource", "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
                "x-kubernetes-map-type", "x-kubernetes-validations", "x-kubernetes-patch-merge-key",
                "x-kubernetes-patch-strategy", "description", "example", "externalDocs")


def strict(node: Any, branch: bool = False) -> Any:
    """The JSON Schema of one OpenAPI v3 schema node, strict where it lists properties. A `branch` (an
    `allOf`/`anyOf`/`oneOf`/`not` member) only adds constraints to its parent, so it is never strict
    itself: `oneOf: [{required: [value]}, {properties: {type: ...}}]` must not forbid `value`."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in OPENAPI_ONLY:
            if key in ("x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-patch-merge-key"):
                out[key] = value  # kept: the validator checks keyed lists for duplicates
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {k: strict(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = strict(value)
        elif key == "not" and isinstance(value, dict):
            out[key] = strict(value, branch=True)
        elif key in ("allOf", "anyOf", "oneOf") and isinstance(value, list):
            out[key] = [strict(v, branch=True) for v in value]
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["type"] = ["integer", "string"]
    if node.get("x-kubernetes-embedded-resource"):
        props = out.setdefault("properties", {})
        for key in ("apiVersion", "kind"):
            props.setdefault(key, {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if node.get("nullable") and "type" in out:
        kinds = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*kinds, "null"] if "null" not in kinds else kinds
    if ("properties" in out and "additionalProperties" not in out and not branch
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def crd_schemas(crd: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) → strict JSON Schema, for each served version of a CRD that has a schema."""
    spec = as_dict(crd.get("spec"))
    group, kind = str(spec.get("group") or ""), str(as_dict(spec.get("names")).get("kind") or "")
    out: dict[tuple[str, str], dict[str, Any]] = {}
    if not group or not kind:
        return out
    for version in as_list(spec.get("versions")):
        version = as_dict(version)
        schema = as_dict(as_dict(version.get("schema")).get("openAPIV3Schema"))
        if not version.get("name") or not schema or version.get("served") is False:
            continue
        body = strict(schema)
        props = body.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
        out[(f"{group}/{version['name']}", kind)] = {"$schema": JSON_SCHEMA, **body}
    return out
