"""Which schema an object is validated against, compiled once per kind and reused.

Built-in kinds: the strict JSON schemas that the `kubernetes-validate` package ships for many Kubernetes
versions (the newest not newer than the configured one). Custom resources: Flux's and the Gateway API's
CRDs vendored in `bot/validate/crds/` (bot/validate/vendor_crds.py), and every CustomResourceDefinition
the repository itself holds (bot.validate.crd), which win over the vendored ones. Validation is
jsonschema-rs's (Rust): validating thousands of objects costs milliseconds, not seconds.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema_rs

from bot.validate.crd import crd_schemas

if TYPE_CHECKING:
    from bot.repo.discover import RepoModel

DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"
VENDORED = Path(__file__).with_name("crds")
_DIR = re.compile(r"^v(\d+)\.(\d+)\.\d+-local-strict$")


class NoSchemas(RuntimeError):
    """The schema package is missing, or has no schemas as old as the configured version."""


@cache
def _package_root() -> Path:
    spec = importlib.util.find_spec("kubernetes_validate")  # its data only: nothing of it is imported
    if spec is None or spec.origin is None:
        raise NoSchemas("the kubernetes-validate package is not installed: pip install kubernetes-validate")
    return Path(spec.origin).with_name("kubernetes-json-schema")


@cache
def schema_folder(kube_version: str) -> Path:
    """The strict schemas of the newest Kubernetes release not newer than `kube_version` (major.minor)."""
    m = re.match(r"v?(\d+)\.(\d+)", kube_version)
    if not m:
        raise NoSchemas(f"{kube_version!r} is not a Kubernetes version such as 1.33.0")
    wanted = (int(m.group(1)), int(m.group(2)))
    found = []
    for folder in _package_root().iterdir():
        dm = _DIR.match(folder.name)
        if dm and (int(dm.group(1)), int(dm.group(2))) <= wanted:
            found.append(((int(dm.group(1)), int(dm.group(2))), folder))
    if not found:
        raise NoSchemas(f"no Kubernetes schemas as old as {kube_version} in kubernetes-validate")
    return max(found)[1]


def builtin_group(api_version: str) -> bool:
    """Whether an apiVersion is one of Kubernetes' own groups (core, `apps`, `*.k8s.io`), not a CRD's."""
    group = api_version.rpartition("/")[0]
    return group == "" or "." not in group or group.endswith((".k8s.io", ".kubernetes.io"))


def _builtin_file(api_version: str, kind: str) -> str:
    """kubernetes-validate's name for a kind's schema: `deployment-apps-v1.json`, `role-rbac-v1.json`."""
    group, _, version = api_version.rpartition("/")
    prefix = f"{group.split('.', 1)[0]}-{version}" if group else version
    return f"{kind.lower()}-{prefix}.json"


@cache
def _definitions(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "_definitions.json").read_text(encoding="utf-8"))


@cache
def _registry(folder: Path) -> jsonschema_rs.Registry:
    return jsonschema_rs.Registry([(DEFINITIONS_ID, _definitions(folder))])


@cache
def vendored_crds() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) → schema of every CRD vendored in bot/validate/crds/."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(VENDORED.glob("*.json")):
        for key, schema in json.loads(path.read_text(encoding="utf-8")).get("schemas", {}).items():
            api_version, _, kind = key.partition("|")
            out[(api_version, kind)] = schema
    return out


CRD = "CustomResourceDefinition"


def repository_crds(model: RepoModel) -> list[dict[str, Any]]:
    """The CustomResourceDefinitions written in the repository (found once per tree)."""
    key = ("validate", "crds")
    if key not in model.tree.memo:
        model.tree.memo[key] = [obj for _rel, obj in model.source_objects(CRD) if obj.get("kind") == CRD]
    return model.tree.memo[key]  # type: ignore[return-value]


@dataclass
class Compiled:
    """A kind's validator and the document its schema paths are relative to."""

    validator: Any
    root: dict[str, Any]  # the kind's own schema
    definitions: dict[str, Any] | None = None  # built-in kinds: the shared `$defs` document
    vendored: bool = False  # a CRD of bot/validate/crds/, not the cluster's own copy


@cache
def _compiled_builtin(folder: Path, api_version: str, kind: str) -> Compiled | None:
    """A built-in kind's validator, compiled once per process (every catalogue of that version shares it)."""
    path = folder / _builtin_file(api_version, kind)
    if not path.is_file():
        return None
    root = json.loads(path.read_text(encoding="utf-8"))
    return Compiled(jsonschema_rs.Draft202012Validator(root, registry=_registry(folder)), root, _definitions(folder))


@lru_cache(maxsize=512)
def _compiled_crd(text: str, vendored: bool) -> Compiled | None:
    """A CRD version's validator, compiled once per schema text."""
    schema = json.loads(text)
    try:
        return Compiled(jsonschema_rs.Draft202012Validator(schema), schema, vendored=vendored)
    except (ValueError, jsonschema_rs.ReferencingError):
        return None  # a CRD whose schema is not one: the API server would refuse the CRD itself


@dataclass
class Catalog:
    """Validators for one Kubernetes version and one repository's CRDs; compiled on first use."""

    kube_version: str
    crds: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    _compiled: dict[tuple[str, str], Compiled | None] = field(default_factory=dict, repr=False)

    @classmethod
    def for_objects(cls, kube_version: str, objects: Iterable[dict[str, Any]]) -> Catalog:
        """The catalogue, with the CRDs among `objects` (rendered or written in the repository)."""
        crds: dict[tuple[str, str], dict[str, Any]] = {}
        for obj in objects:
            if obj.get("kind") == CRD and str(obj.get("apiVersion", "")).startswith(
                    "apiextensions.k8s.io/"):
                crds.update(crd_schemas(obj))
        return cls(kube_version, crds)

    def compiled(self, api_version: str, kind: str) -> Compiled | None:
        key = (api_version, kind)
        if key not in self._compiled:
            self._compiled[key] = self._compile(api_version, kind)
        return self._compiled[key]

    def _compile(self, api_version: str, kind: str) -> Compiled | None:
        schema = self.crds.get((api_version, kind))
        if schema is not None:
            return _compiled_crd(json.dumps(schema, sort_keys=True), vendored=False)
        if builtin_group(api_version):
            return _compiled_builtin(schema_folder(self.kube_version), api_version, kind)
        if (api_version, kind) in vendored_crds():
            return _compiled_crd(json.dumps(vendored_crds()[(api_version, kind)], sort_keys=True), vendored=True)
        return None

    def resolve(self, compiled: Compiled, schema_path: Iterable[str | int]) -> Any:
        """The schema node at a validation error's schema path."""
        path = list(schema_path)
        node: Any = compiled.root
        if path and path[0] == "$defs" and compiled.definitions is not None:
            node = compiled.definitions
        for part in path:
            if isinstance(node, dict):
                node = node.get(str(part))
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
            else:
                return None
        return node

    def deref(self, compiled: Compiled, node: Any) -> Any:
        """A schema node with its `$ref` (to the shared definitions) followed, once."""
        while isinstance(node, dict) and isinstance(node.get("$ref"), str) and compiled.definitions is not None:
            name = node["$ref"].rsplit("/", 1)[-1]
            node = compiled.definitions.get("$defs", {}).get(name)
        return node
