r"""What every rule module is made of: the `Rule` record and the helpers several rules share.

Rules judge rendered objects, so the helpers here walk what Flux would apply: workloads by their
real API group, their pod specs and containers, each with the field path that `RenderedObject.origin`
maps back to a source line.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from bot.model import SEVERITIES, Finding, Suggestion, format_path, parse_path
from bot.objects import EnvContext, RenderedObject
from bot.quantity import parse_quantity as parse_quantity  # re-exported: rules compare quantities with it

T = TypeVar("T")

if TYPE_CHECKING:
    from rules.repo_checks import RepoScope

# Values that are placeholders for a secret kept elsewhere (Flux/kustomize substitution, 1Password,
# Vault, argocd-vault-plugin, vals), not the secret itself.
SECRET_REFERENCE = re.compile(r"^\s*(?:(?:\$\{[^}]+\}|\$\([^)]+\))+|op://\S+|vault:\S+|<path:[^>]+>|ref\+\w+://\S+)\s*$")

Check = Callable[[EnvContext, "Rule"], Iterable[Finding]]
RepoCheck = Callable[["RepoScope", "Rule"], Iterable[Finding]]
FromBase = Callable[[Finding, RenderedObject, RenderedObject, list[str]], "Suggestion | None"]
FALLBACK_ENVIRONMENT = "production"


@dataclass(frozen=True)
class Example:
    """A bad and a fixed version of a small repository (repository-relative path → file text), or of
    plain manifests, judged as `environment`; `explain` and docs/rules.md show it, and a test checks
    that the rule flags `bad` and not `good` (rules.examples.check_example)."""

    bad: dict[str, str]
    good: dict[str, str]
    environment: str = FALLBACK_ENVIRONMENT
    note: str = ""  # one sentence on what the fix changed


_SIDE_MARK = re.compile(r"[ \t]+#([-+])$")


def _one_side(text: str, dropped: str) -> str:
    """`text` dedented, without the lines marked `dropped` and without the other lines' marks."""
    kept = []
    for line in textwrap.dedent(text).lstrip("\n").splitlines():
        mark = _SIDE_MARK.search(line)
        if mark is None or mark.group(1) != dropped:
            kept.append(line[: mark.start()] if mark else line)
    return "".join(f"{line}\n" for line in kept)


def example(files: dict[str, str], note: str = "", added: dict[str, str] | None = None,
            environment: str = FALLBACK_ENVIRONMENT) -> Example:
    """An Example from each file written once, as a diff: a line ending in ` #-` is only in the bad
    version, one ending in ` #+` only in the good one, so a module states the fix once and the two
    versions cannot drift apart. `added`: whole files that only the good version has."""
    bad = {path: _one_side(text, "+") for path, text in files.items()}
    good = {path: _one_side(text, "-") for path, text in {**files, **(added or {})}.items()}
    return Example({p: t for p, t in bad.items() if t}, {p: t for p, t in good.items() if t}, environment, note)


def example_lines(text: str, indent: int) -> list[str]:
    """A part of an example file (dedented, marked as `example` reads) as lines indented by `indent`."""
    return [" " * indent + line for line in textwrap.dedent(text).strip("\n").splitlines()]


def example_file(*lines: str) -> str:
    return "".join(f"{line}\n" for line in lines)


def example_deployment(container: str = "", image: str = "image: ghcr.io/example/web:1.4.2",
                       replicas: str = "replicas: 3") -> str:
    """The Deployment most examples start from, with its `replicas:` and `image:` lines replaced and
    `container` lines added to its one container."""
    return example_file(
        "apiVersion: apps/v1", "kind: Deployment", "metadata:", "  name: web", "spec:", *example_lines(replicas, 2),
        "  selector:", "    matchLabels: {app: web}", "  template:", "    metadata:", "      labels: {app: web}",
        "    spec:", "      containers:", "        - name: web", *example_lines(image, 10),
        *example_lines(container, 10))


def example_configmap(data: str = "LOG_LEVEL: info", metadata: str = "") -> str:
    """The ConfigMap of the examples about any object, with these `data` lines and more `metadata` lines."""
    return example_file("apiVersion: v1", "kind: ConfigMap", "metadata:", "  name: web", *example_lines(metadata, 2),
                        "data:", *example_lines(data, 2))


@dataclass(frozen=True, eq=False)
class Rule:
    """One rule of the catalogue. `severity[env] is None` means the rule is off there.

    A rule judges through the functions it sets (bot.review.run_rules calls them): `check`, per
    rendered environment with an EnvContext (environment scope), and `check_repo`, once per
    repository with a RepoScope (repository scope; an environment rule may have a repository part
    too, as hardcoded-secret does for files no target renders). A rule with neither (build-error,
    remote-unchecked) is made by the pipeline from what the renderer reports.
    """

    id: str
    title: str
    rationale: str
    remediation: str
    severity: dict[str, str | None]
    params: dict[str, Any] = field(default_factory=dict)
    scope: str = "env"
    check: Check | None = None
    check_repo: RepoCheck | None = None
    edge_cases: tuple[str, ...] = ()
    # A suggestion for a new finding taken from the base revision (the tag the image had there):
    # (finding, object now, object on the base, lines of the finding's file now) -> Suggestion.
    from_base: FromBase | None = None
    # Judges the team's own workloads (labels, defaults, replicas, probes, resources): objects from
    # vendored or generated files are not judged (rules.thirdparty). Security rules leave this off.
    own_workloads: bool = False
    example: Example | None = None

    def severity_for(self, environment: str | None) -> str | None:
        """Default severity in an environment; an environment the table does not name is judged
        as production (fail safe: a custom environment gets the strictest column)."""
        if environment in self.severity:
            return self.severity[environment]
        return self.severity.get(FALLBACK_ENVIRONMENT)


def all_envs(severity: str | None) -> dict[str, str | None]:
    return {"production": severity, "staging": severity, "development": severity}


def per_env(production: str | None, staging: str | None, development: str | None) -> dict[str, str | None]:
    return {"production": production, "staging": staging, "development": development}


# --- kinds -------------------------------------------------------------------------------

# Kinds count only with their real API group: `apiVersion: v1` + `kind: Deployment` is not a
# Deployment (the API server would reject it), and OpenShift's DeploymentConfig is not in the list.
WORKLOAD_GROUPS: dict[str, frozenset[str]] = {
    "Deployment": frozenset({"apps", "extensions"}),
    "StatefulSet": frozenset({"apps"}),
    "DaemonSet": frozenset({"apps", "extensions"}),
    "ReplicaSet": frozenset({"apps", "extensions"}),
    "Job": frozenset({"batch"}),
    "CronJob": frozenset({"batch"}),
    "Pod": frozenset({""}),
}
SHORT_LIVED = frozenset({"Job", "CronJob"})


def indexed(ctx: EnvContext, name: str, build: Callable[[EnvContext], T]) -> T:
    """`build(ctx)`, once per environment: an index a rule consults for each object (which HPAs scale
    a workload, what a namespace enforces) costs one pass over the objects, not one per question."""
    if name not in ctx.memo:
        ctx.memo[name] = build(ctx)
    return ctx.memo[name]


def is_kind(obj: RenderedObject, kind: str, *groups: str) -> bool:
    return obj.id.kind == kind and obj.id.group in groups


def is_workload(obj: RenderedObject) -> bool:
    return obj.id.group in WORKLOAD_GROUPS.get(obj.id.kind, ())


def is_long_running(obj: RenderedObject) -> bool:
    return is_workload(obj) and obj.id.kind not in SHORT_LIVED


def pod_spec_path(kind: str) -> str:
    if kind == "Pod":
        return "spec"
    if kind == "CronJob":
        return "spec.jobTemplate.spec.template.spec"
    return "spec.template.spec"


def pod_meta_path(kind: str) -> str:
    """Field path of the pod template's metadata (the resource's own for a Pod)."""
    spec = pod_spec_path(kind)
    return "metadata" if spec == "spec" else spec[: -len(".spec")] + ".metadata"


@dataclass(frozen=True)
class PodSpec:
    obj: RenderedObject
    spec: dict[str, Any]
    path: str

    @property
    def labels(self) -> dict[str, Any]:
        meta = get(self.obj.obj, pod_meta_path(self.obj.kind))
        labels = meta.get("labels") if isinstance(meta, dict) else None
        return labels if isinstance(labels, dict) else {}


@dataclass(frozen=True)
class Container:
    pod: PodSpec
    data: dict[str, Any]
    path: str
    init: bool

    @property
    def name(self) -> str:
        return str(self.data.get("name") or "")

    @property
    def obj(self) -> RenderedObject:
        return self.pod.obj


def get(data: Any, path: str) -> Any:
    cur = data
    for key in path.split("."):
        cur = cur.get(key) if isinstance(cur, dict) else None
    return cur


def workloads(objects: Iterable[RenderedObject], long_running: bool = False) -> Iterator[PodSpec]:
    """Pod specs of the workloads among `objects`, with their field-path prefix."""
    for obj in objects:
        if not (is_long_running(obj) if long_running else is_workload(obj)):
            continue
        path = pod_spec_path(obj.kind)
        spec = get(obj.obj, path)
        if isinstance(spec, dict):
            yield PodSpec(obj, spec, path)


_UNSAFE_NAME = re.compile(r'[\[\]".]|^\d+$')


def containers(pod: PodSpec, init: bool = True) -> Iterator[Container]:
    """Containers (then init containers) with paths like `spec.template.spec.containers[api]`."""
    keys = ("containers", "initContainers") if init else ("containers",)
    for key in keys:
        items = pod.spec.get(key)
        if not isinstance(items, list):
            continue
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            name = str(item.get("name") or "")
            sel = f"[{name}]" if name and not _UNSAFE_NAME.search(name) else f"[{i}]"
            yield Container(pod, item, f"{pod.path}.{key}{sel}", key == "initContainers")


def key_path(prefix: str, key: str) -> str:
    """`prefix` (a field path) followed by one literal key, quoted where it needs to be."""
    return format_path(list(parse_path(prefix)) + [key]) if prefix else format_path([key])


# --- findings ----------------------------------------------------------------------------


def finding(
    rule: Rule,
    ctx: EnvContext,
    obj: RenderedObject,
    field: str,
    message: str,
    remediation: str | None = None,
    container: str | None = None,
    suggestion: Suggestion | None = None,
    locate_path: str | None = None,
    severity: str | None = None,
) -> Finding:
    """A finding on `obj` at field path `field`, located at `locate_path` (default: `field`)."""
    return Finding(
        rule=rule.id,
        severity=severity or rule.severity_for(ctx.environment) or "notice",
        environment=ctx.environment,
        message=message,
        remediation=remediation or rule.remediation,
        target=obj.target.path if obj.target else None,
        resource=obj.id,
        container=container,
        field=field or None,
        origin=obj.origin(locate_path if locate_path is not None else field),
        suggestion=suggestion,
        located=locate_path if locate_path is not None else field,
    )


def at_most(rule: Rule, ctx: EnvContext, cap: str) -> str:
    """The rule's default severity in the context's environment, lowered to `cap` where it is stronger
    (what the repository cannot show, e.g. an object managed elsewhere, is never more than a warning).
    A repository's own severity for the rule still replaces it (bot.review.run_rules)."""
    default = rule.severity_for(ctx.environment) or "notice"
    return max(default, cap, key=SEVERITIES.index)


def env_policy(ctx: EnvContext) -> dict[str, Any]:
    """The environment-table row of the context's environment (production's row if unnamed)."""
    table = ctx.policy.get("environments") or {}
    row = table.get(ctx.environment) or table.get(FALLBACK_ENVIRONMENT) or {}
    return row if isinstance(row, dict) else {}


def source_line(ctx: EnvContext, file: str | None, line: int | None) -> str | None:
    if not file or not line:
        return None
    try:
        lines = ctx.read_lines(file)
    except OSError:
        return None
    if not 0 < line <= len(lines):
        return None
    return lines[line - 1].rstrip("\r\n")


def environments_reading(ctx: EnvContext, file: str) -> frozenset[str]:
    """The environments whose targets read `file` (computed once per repository)."""
    model = ctx.repo
    if model is None:
        return frozenset({ctx.environment})
    key = ("environments-reading",)
    index = model.tree.memo.get(key)
    if index is None:
        index = {}
        for target in model.targets:
            for rel in model.inputs(target).files:
                index.setdefault(rel, set()).add(target.environment or FALLBACK_ENVIRONMENT)
        model.tree.memo[key] = index
    return frozenset(index.get(file) or {ctx.environment})


def only_this_environment(ctx: EnvContext, file: str | None) -> bool:
    """Whether an environment's own value (its replicas, its sizing) may be written into `file`: only
    when no other environment reads it, or the suggestion would change those too."""
    return file is not None and environments_reading(ctx, file) <= {ctx.environment}


def replace_scalar_line(ctx: EnvContext, obj: RenderedObject, path: str, new_value: str) -> Suggestion | None:
    """Suggest `key: new_value` for the single source line that set the scalar at `path` (this
    environment's value: only in a file no other environment reads). A kustomization field is
    rewritten only where its line holds the same key (a label map's `key: value`). A value a chart
    printed from a HelmRelease's values (`via == "values"`) is rewritten at that values key
    (`replicaCount: 3` for `spec.replicas`)."""
    origin = obj.origin(path)
    where = origin.span()
    if origin.via not in ("manifest", "patch", "kustomization", "values") or where is None or where[2] != where[1]:
        return None
    file, line, _ = where
    if not only_this_environment(ctx, file):
        return None
    text = source_line(ctx, file, line)
    key = parse_path(origin.detail if origin.via == "values" else path)[-1]
    m = re.match(
        r"^(\s*(?:-\s+)?)(['\"]?)" + re.escape(str(key)) + r"\2(\s*:\s*)([^#]*?)(\s*#.*)?$", text or ""
    )
    if not m or not m.group(4):
        return None
    comment = m.group(5) or ""
    return Suggestion(file, line, line, f"{m.group(1)}{m.group(2)}{key}{m.group(2)}{m.group(3)}{new_value}{comment}")


# --- secrets-safe display ----------------------------------------------------------------


def describe_value(value: str) -> str:
    """How a secret-looking value may be shown: its length, and a 4-character prefix only when
    that is well under half of it."""
    if len(value) >= 12:
        return f"value starting {value[:4]!r}…, {len(value)} characters"
    return f"value of {len(value)} characters"


FLUX_SYSTEM = "flux-system"


def opaque_namespaces(ctx: EnvContext) -> set[str]:
    """Namespaces whose objects we cannot all see: those a HelmRelease whose chart was not rendered
    installs into, and `flux-system` (Flux's own controllers and Services come from its install)."""
    out = {FLUX_SYSTEM}
    for obj in ctx.objects:
        if obj.kind == "HelmRelease" and obj.id.group == "helm.toolkit.fluxcd.io" and obj.id not in ctx.rendered_releases:
            spec = obj.obj.get("spec")
            target = spec.get("targetNamespace") if isinstance(spec, dict) else None
            out.add(str(target or obj.namespace or "default"))
    return out
