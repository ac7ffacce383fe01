"""missing-labels: the six `app.kubernetes.io/` labels on every rendered resource."""

from __future__ import annotations

from collections.abc import Iterator

from bot.model import Finding
from bot.objects import EnvContext
from rules.base import Rule, all_envs, example, example_configmap, finding, key_path, replace_scalar_line

INSTANCE = "app.kubernetes.io/instance"
MANAGED_BY = "app.kubernetes.io/managed-by"
HELM = "Helm"


FLUX_GROUP_SUFFIXES = (".toolkit.fluxcd.io", ".extensions.fluxcd.io")


def is_flux_toolkit(obj) -> bool:
    """Flux's own objects (GitRepository, Kustomization, HelmRelease...) describe how the cluster is
    reconciled, not an application; `flux bootstrap` writes them without these labels."""
    return obj.id.group.endswith(FLUX_GROUP_SUFFIXES)


def _suffixes(ctx: EnvContext) -> list[str]:
    """`-<environment>` and `-<alias>` for every alias of the environment."""
    aliases = ctx.policy.get("aliases") or {}
    names = [ctx.environment] + sorted(a for a, env in aliases.items() if env == ctx.environment)
    return [f"-{n}" for n in names]


def check(ctx: EnvContext, rule: Rule) -> Iterator[Finding]:
    spec = ctx.policy.get("labels") or {}
    required = [str(x) for x in spec.get("required") or []]
    managed_by = spec.get("managed_by")
    for obj in ctx.objects:
        if is_flux_toolkit(obj):
            continue
        labels = {str(k): v for k, v in obj.labels.items()}
        missing = [k for k in required if labels.get(k) in (None, "")]
        if missing:
            short = ", ".join(k.removeprefix("app.kubernetes.io/") for k in missing)
            yield finding(
                rule,
                ctx,
                obj,
                "metadata.labels",
                f"{obj.id} lacks the label{'s' if len(missing) > 1 else ''} {short} "
                f"(app.kubernetes.io/). Dashboards, cost reports, NetworkPolicies and `kubectl` queries "
                f"select by these labels, so this object is invisible to them in {ctx.environment}.",
                remediation="Add the missing labels (`labels:` with `includeSelectors: false` in the overlay's "
                "kustomization sets them on every resource).",
            )
        # Helm installs chart output and adopts only objects labelled `managed-by: Helm`: right there.
        accepted = {managed_by, HELM} if obj.id in ctx.from_charts else {managed_by}
        if (
            managed_by
            and MANAGED_BY in labels
            and labels[MANAGED_BY] not in (None, "")
            and str(labels[MANAGED_BY]) not in accepted
        ):
            yield finding(
                rule,
                ctx,
                obj,
                key_path("metadata.labels", MANAGED_BY),
                f"{obj.id} says it is managed by {labels[MANAGED_BY]!r}, not {managed_by!r}: every "
                f"object in this repository is applied by {managed_by}, and tools that trust this label will "
                f"leave it alone or fight over it.",
                remediation=f"Set `{MANAGED_BY}: {managed_by}`.",
            )
        instance = labels.get(INSTANCE)
        if (
            INSTANCE in required
            and instance not in (None, "")
            and not any(str(instance).endswith(s) for s in _suffixes(ctx))
        ):
            yield finding(
                rule,
                ctx,
                obj,
                key_path("metadata.labels", INSTANCE),
                f"{obj.id}: {INSTANCE} {instance!r} does not end in -{ctx.environment}, so "
                f"instances of the same app in different environments cannot be told apart.",
                remediation=f"Set `{INSTANCE}: <name>-{ctx.environment}` in the overlay.",
                suggestion=replace_scalar_line(ctx, obj, key_path("metadata.labels", INSTANCE),
                                               f"{instance}-{ctx.environment}"),
                severity="warning",
            )


RULE = Rule(
    id="missing-labels",
    title="Resource without the standard app.kubernetes.io labels",
    rationale=(
        "The six recommended labels (name, instance, version, component, part-of, managed-by) are how "
        "people and tools find what belongs to which app and who applied it; `managed-by: flux` marks "
        "objects that must only change through git. Error in every environment."
    ),
    remediation="Add all six `app.kubernetes.io/` labels, with `managed-by: flux` and "
    "`instance: <name>-<environment>` (kustomize `labels:` in the overlay sets them everywhere).",
    severity=all_envs("error"),
    check=check,
    own_workloads=True,
    edge_cases=(
        "Flux toolkit objects (`*.toolkit.fluxcd.io`: GitRepository, Kustomization, HelmRelease...) are "
        "exempt: they configure reconciliation rather than run an application, and `flux bootstrap` writes "
        "them without these labels.",
        "Every other rendered resource, whatever its kind (Namespaces, CRDs and OpenShift kinds included); the "
        "labels are read from the resource's own `metadata.labels`, not its pod template.",
        "An empty label value counts as missing.",
        "`managed-by` other than `flux` (the label-set parameter) is a separate finding; on what a HelmRelease's "
        "chart installs, `Helm` is right too (Helm adopts only objects labelled so).",
        "Not run on what charts from outside the repository install (`helm.vendor_charts.skip_rules`): their "
        "labels are the vendor's.",
        "`instance` not ending in `-<environment>` (or `-<alias>` of it, e.g. `-prod`) is a warning.",
    ),
    example=example(
        {"configmap.yaml": example_configmap(metadata="""\
            labels:
              app.kubernetes.io/name: web
              app.kubernetes.io/instance: web-production  #+
              app.kubernetes.io/version: 1.4.2  #+
              app.kubernetes.io/component: frontend  #+
              app.kubernetes.io/part-of: shop  #+
              app.kubernetes.io/managed-by: flux  #+
            """)},
        note="The object carries all six labels, `instance` ending in the environment and `managed-by: flux`.",
    ),
)
