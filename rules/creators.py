"""Objects that something in the repository creates without the repository writing them down.

The Flux Operator's `FluxInstance` makes the cluster's sync source and Kustomization, a Tekton
`EventListener` makes the Service `el-<name>`, cert-manager writes a Certificate's Secret. The
cross-object rules (`route-backend`, `service-selector`, `flux-config`'s `sourceRef`) count what these
create as defined, instead of claiming it does not exist. `GENERATORS` is the built-in table, each entry
with the documented reason; a repository adds its own with `creators:` in .github/infra-review.yml
(bot.config.Creator), whose templates read the same fields.

A template is text with `{name}`, `{namespace}` (the creator's own) and `{spec.some.field}` (any dotted
path of the creator) placeholders; a template whose fields are missing or empty gives nothing, and the
next one in `names` is tried (`spec.target.name`, else the ExternalSecret's own name).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from bot.model import ResourceId
from bot.objects import EnvContext

# (kind, namespace, name) of an object; namespace '' where the creator has none written.
Key = tuple[str, str, str]


@dataclass(frozen=True)
class Generator:
    """A kind (with its API group; None: any group) whose controller creates another object."""

    kind: str
    group: str | None
    creates: str  # the created kind, a template ("{spec.sync.kind}")
    names: tuple[str, ...]  # name templates, the first that resolves wins
    namespace: str = "{namespace}"  # the created object's namespace, a template
    requires: str | None = None  # a field path that must be set for the object to be created
    reason: str = ""  # why: what the controller's documentation says it creates

    def describe(self) -> str:
        return f"{self.kind}{f' (`{self.group}`)' if self.group else ''} → {self.made()}"

    def made(self) -> str:
        kind = f"`{self.creates}`" if "{" in self.creates else self.creates
        return f"{kind} {' or '.join(f'`{n}`' for n in self.names)}"


_FLUX_SYNC = (
    "the Flux Operator generates the cluster's sync source (`spec.sync.kind`: GitRepository, OCIRepository "
    "or Bucket) and a Flux Kustomization, both named `spec.sync.name`, by default the namespace of the "
    "FluxInstance, in that namespace (fluxoperator.dev, Flux Cluster Sync Configuration)"
)
_TEKTON = (
    "Tekton Triggers runs each EventListener as a Deployment and a Service named `el-<name>` "
    "(tekton.dev, EventListeners: \"if the EventListener name is foo, the Deployment and Service names are el-foo\")"
)

GENERATORS: tuple[Generator, ...] = (
    Generator("FluxInstance", "fluxcd.controlplane.io", "{spec.sync.kind}", ("{spec.sync.name}", "{namespace}"),
              requires="spec.sync", reason=_FLUX_SYNC),
    Generator("FluxInstance", "fluxcd.controlplane.io", "Kustomization", ("{spec.sync.name}", "{namespace}"),
              requires="spec.sync", reason=_FLUX_SYNC),
    # The Flux Operator's flux-instance chart makes a FluxInstance from `values.instance`, in the
    # release's namespace.
    Generator("HelmRelease", "helm.toolkit.fluxcd.io", "{spec.values.instance.sync.kind}",
              ("{spec.values.instance.sync.name}", "{spec.targetNamespace}", "{namespace}"),
              namespace="{spec.targetNamespace}", requires="spec.values.instance.sync",
              reason="the flux-instance chart of the Flux Operator installs a FluxInstance from `values.instance` "
              "in the release's namespace, so its sync source as above"),
    Generator("EventListener", "triggers.tekton.dev", "Service", ("el-{name}",), reason=_TEKTON),
    Generator("EventListener", "triggers.tekton.dev", "Deployment", ("el-{name}",), reason=_TEKTON),
    Generator("Certificate", "cert-manager.io", "Secret", ("{spec.secretName}",),
              reason="cert-manager stores the issued key pair in the Secret `spec.secretName` of the Certificate's "
              "namespace (cert-manager.io, Certificate resource)"),
    Generator("ExternalSecret", "external-secrets.io", "Secret", ("{spec.target.name}", "{name}"),
              reason="External Secrets Operator writes the Secret `spec.target.name`, by default the ExternalSecret's "
              "own name (external-secrets.io, ExternalSecret API)"),
    Generator("SealedSecret", "bitnami.com", "Secret", ("{name}",),
              reason="the sealed-secrets controller unseals into a Secret of the same name and namespace "
              "(bitnami-labs/sealed-secrets)"),
    Generator("Service", "serving.knative.dev", "Service", ("{name}",),
              reason="Knative Serving's Route, named like the Knative Service, keeps a placeholder Kubernetes Service "
              "of that name (knative.dev, Knative services; serving's MakeK8sPlaceholderService)"),
)

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


def _field(data: dict[str, Any], path: str) -> Any:
    if path in ("name", "namespace"):
        path = f"metadata.{path}"
    cur: Any = data
    for key in path.split("."):
        cur = cur.get(key) if isinstance(cur, dict) else None
    return cur


def expand(template: str, data: dict[str, Any]) -> str | None:
    """`template` with its placeholders filled from `data`; None when one is missing, empty or not a
    scalar (a mapping, a list, a boolean)."""
    missing = False

    def fill(m: re.Match[str]) -> str:
        nonlocal missing
        value = _field(data, m.group(1).strip())
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            missing = True
            return ""
        return str(value)

    out = _PLACEHOLDER.sub(fill, template)
    return None if missing or not out else out


def generators(extra: Iterable[Any] = ()) -> tuple[Generator, ...]:
    """The built-in table, then the repository's `creators:` (bot.config.Creator: kind, group,
    creates_kind, name), each creating in its creator's namespace."""
    added = tuple(
        Generator(c.kind, c.group, c.creates_kind, (c.name,), reason="`creators:` in .github/infra-review.yml")
        for c in extra
    )
    return GENERATORS + added


def created_by(docs: Iterable[Any], extra: Iterable[Any] = ()) -> dict[Key, str]:
    """(kind, namespace, name) of every object that the objects `docs` (manifests as mappings) create
    indirectly, each with the creator that makes it (`EventListener shop/hooks`)."""
    by_kind: dict[str, list[Generator]] = {}
    for gen in generators(extra):
        by_kind.setdefault(gen.kind, []).append(gen)
    out: dict[Key, str] = {}
    for data in docs:
        if not isinstance(data, dict) or str(data.get("kind") or "") not in by_kind:
            continue
        rid = ResourceId.of(data)
        for gen in by_kind[rid.kind]:
            if gen.group is not None and rid.group != gen.group:
                continue
            if gen.requires is not None and not _field(data, gen.requires):
                continue
            kind = expand(gen.creates, data)
            name = next((n for n in (expand(t, data) for t in gen.names) if n), None)
            if kind and name:
                namespace = expand(gen.namespace, data) or rid.namespace
                label = f"{rid.kind} {rid.namespace + '/' if rid.namespace else ''}{rid.name}"
                out.setdefault((kind, namespace, name), label)
    return out


def created_in(ctx: EnvContext) -> dict[Key, str]:
    """What the rendered objects of one environment create indirectly (the built-in table and the
    repository's `creators:`)."""
    return created_by((o.obj for o in ctx.objects), ctx.creators)


# --- the repository's own files ------------------------------------------------------------


def repo_documents(model: Any, kinds: Iterable[str] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(file, mapping) of every YAML document of the repository outside its ignored paths (RepoModel;
    files that do not parse are left out: build-error reports them). Parsed documents are the tree's
    own cache; nothing more is kept here. With `kinds`, only files whose text can name one of them
    are parsed (RepoModel.may_name)."""
    from bot.repo.tree import YAML_SUFFIXES
    from bot.yamlpos import YamlError

    ignored = getattr(model, "ignored", None)
    wanted = None if kinds is None else tuple(kinds)
    for rel in model.tree.files:
        if not rel.endswith(YAML_SUFFIXES) or (ignored is not None and ignored(rel)):
            continue
        if wanted is not None and not any(model.may_name(rel, kind) for kind in wanted):
            continue
        try:
            docs = model.tree.docs(rel)
        except YamlError:
            continue
        yield from ((rel, doc.data) for doc in docs if isinstance(doc.data, dict))


def repo_created(model: Any, extra: Iterable[Any] = ()) -> dict[Key, str]:
    """What the repository's files create indirectly, as written (before any kustomize namespace)."""
    extra = list(extra)
    kinds = {gen.kind for gen in generators(extra)}
    return created_by((data for _rel, data in repo_documents(model, kinds)), extra)


def files_defining(model: Any, kind: str, group: str, name: str) -> list[str]:
    """The repository files that hold a `kind` (of API `group`) named `name`, under any namespace
    (an index of every document's id, built once per repository)."""
    key = ("creators:ids",)
    index = model.tree.memo.get(key)
    if index is None:
        index = {}
        for rel, data in repo_documents(model):
            rid = ResourceId.of(data)
            files = index.setdefault((rid.kind, rid.group, rid.name), [])
            if rel not in files:
                files.append(rel)
        model.tree.memo[key] = index
    return list(index.get((kind, group, name), []))


def table_lines() -> Iterator[str]:
    """The built-in table in words, for the rules' documentation: one line per creator and reason."""
    groups: list[list[Generator]] = []
    for gen in GENERATORS:
        last = groups[-1][0] if groups else None
        if last is not None and (last.kind, last.group, last.reason) == (gen.kind, gen.group, gen.reason):
            groups[-1].append(gen)
        else:
            groups.append([gen])
    for group in groups:
        head = group[0]
        yield (f"{head.kind}{f' (`{head.group}`)' if head.group else ''} → "
               f"{' and '.join(g.made() for g in group)}, since {head.reason}")
