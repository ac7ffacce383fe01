"""The fields of Flux objects that infra-review reads, with the types Flux's CRDs give them.

The API server validates a Flux object against its CRD's schema, so a field of another type
(`postBuild.substitute: {replicas: 3}`, `images[].newTag: 1.25` unquoted, `patches: "x"`) makes Flux
reject the whole object. Each such field is a problem to report at its line; the spec the engine
keeps has it removed, so nothing downstream meets a value it cannot use.

Paths: `a.b` a mapping key, `a[]` every item of the list `a`, `a.*` every value of the mapping `a`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.model import type_name

_SCALAR = (str, int, float, bool)
_PATCH = {"[]": dict, "[].patch": str, "[].target": dict}
_IMAGES = {"[]": dict, "[].name": str, "[].newName": str, "[].newTag": str, "[].digest": str}
_REF = {"kind": str, "name": str, "namespace": str}
_STRING_MAP = {"": dict, ".*": str}

SCHEMAS: dict[str, dict[str, type | tuple[type, ...]]] = {}


def _under(prefix: str, table: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}{'' if not key or key[0] in '[.' else '.'}{key}": t for key, t in table.items()}


SCHEMAS["Kustomization"] = {
    "path": str, "sourceRef": dict, **_under("sourceRef", _REF), "targetNamespace": str,
    "components": list, "components[]": str, "patches": list, **_under("patches", _PATCH),
    "patchesStrategicMerge": list, "patchesJson6902": list, "patchesJson6902[]": dict,
    "images": list, **_under("images", _IMAGES),
    "postBuild": dict, **_under("postBuild.substitute", _STRING_MAP), "postBuild.substituteFrom": list,
    "postBuild.substituteFrom[]": dict, "postBuild.substituteFrom[].kind": str,
    "postBuild.substituteFrom[].name": str, "postBuild.substituteFrom[].optional": bool,
    "commonMetadata": dict, **_under("commonMetadata.labels", _STRING_MAP),
    **_under("commonMetadata.annotations", _STRING_MAP),
    "wait": bool, "prune": bool, "force": bool, "suspend": bool, "interval": str, "timeout": str,
    "retryInterval": str, "healthChecks": list, "healthChecks[]": dict, "dependsOn": list, "dependsOn[]": dict,
    "decryption": dict, "decryption.provider": str, "decryption.secretRef": dict,
}
SCHEMAS["HelmRelease"] = {
    "chart": dict, "chart.spec": dict, "chart.spec.chart": str, "chart.spec.version": str,
    "chart.spec.sourceRef": dict, **_under("chart.spec.sourceRef", _REF), "chart.spec.valuesFiles": list,
    "chart.spec.valuesFiles[]": str, "chartRef": dict, **_under("chartRef", _REF),
    "releaseName": str, "targetNamespace": str, "storageNamespace": str, "interval": str, "timeout": str,
    "suspend": bool, "values": dict, "valuesFrom": list, "valuesFrom[]": dict, "valuesFrom[].kind": str,
    "valuesFrom[].name": str, "valuesFrom[].valuesKey": str, "valuesFrom[].targetPath": str,
    "valuesFrom[].optional": bool, "install": dict, "install.crds": str, "test": dict, "test.enable": bool, "upgrade": dict, "postRenderers": list,
    "postRenderers[]": dict, "dependsOn": list, "dependsOn[]": dict,
}
SCHEMAS["GitRepository"] = {"url": str, "ref": dict, "interval": str, "suspend": bool}
SCHEMAS["OCIRepository"] = {"url": str, "ref": dict, "ref.tag": str, "ref.semver": str, "ref.digest": str,
                            "interval": str}
SCHEMAS["HelmRepository"] = {"url": str, "type": str, "interval": str}
SCHEMAS["HelmChart"] = {"chart": str, "version": str, "sourceRef": dict, **_under("sourceRef", _REF),
                        "valuesFiles": list, "valuesFiles[]": str, "interval": str}
SCHEMAS["ArtifactGenerator"] = {
    "sources": list, "sources[]": dict, **_under("sources[]", {"alias": str, **_REF}),
    "artifacts": list, "artifacts[]": dict, "artifacts[].name": str, "artifacts[].copy": list,
    "artifacts[].copy[]": dict, "artifacts[].copy[].from": str, "artifacts[].copy[].to": str,
}


@dataclass(frozen=True)
class SpecProblem:
    """A field of the wrong type: `field` as people write it, `segments` its path below `spec`."""

    field: str
    segments: tuple[str | int, ...]
    message: str


def _expected(schema: dict[str, Any], path: str) -> type | tuple[type, ...] | None:
    return schema.get(path)


def _walk(value: Any, path: str, segs: tuple[str | int, ...], schema: dict[str, Any],
          problems: list[SpecProblem]) -> Any:
    """`value` without the parts whose type the schema refuses (those are added to `problems`)."""
    if isinstance(value, dict):
        out = {}
        for key, child in value.items():
            sub = f"{path}.{key}" if path else str(key)
            want = _expected(schema, sub) or _expected(schema, f"{path}.*")
            pattern = sub if sub in schema else f"{path}.*"
            if want is not None and not _is(child, want):
                problems.append(_problem(segs + (key,), child, want))
                continue
            out[key] = _walk(child, pattern, segs + (key,), schema, problems)
        return out
    if isinstance(value, list):
        want = _expected(schema, f"{path}[]")
        items = []
        for i, child in enumerate(value):
            if want is not None and not _is(child, want):
                problems.append(_problem(segs + (i,), child, want))
                continue
            items.append(_walk(child, f"{path}[]", segs + (i,), schema, problems))
        return items
    return value


def _is(value: Any, want: type | tuple[type, ...]) -> bool:
    if value is None:
        return True  # an explicit null is the field left unset
    if isinstance(value, bool) and want in (int, float, str):
        return False
    return isinstance(value, want)


def _problem(segs: tuple[str | int, ...], value: Any, want: type | tuple[type, ...]) -> SpecProblem:
    wanted = type_name(want()) if isinstance(want, type) else "a " + " or ".join(t.__name__ for t in want)
    field = "spec" + "".join(f".{s}" if isinstance(s, str) else f"[{s}]" for s in segs)
    return SpecProblem(field, segs, f"`{field}` must be {wanted}, not {type_name(value)}")


def checked_spec(kind: str, spec: Any) -> tuple[dict[str, Any], tuple[SpecProblem, ...]]:
    """The spec of a Flux object of `kind` with wrongly typed fields removed, and those fields."""
    if not isinstance(spec, dict):
        problems = () if spec is None else (SpecProblem("spec", (), f"`spec` must be a mapping, not {type_name(spec)}"),)
        return {}, problems
    found: list[SpecProblem] = []
    clean = _walk(spec, "", (), SCHEMAS.get(kind, {}), found)
    return clean, tuple(found)
