"""flux-config: Flux objects that cannot reconcile or reconcile unsafely (repo scope)."""

from rules.base import Rule, all_envs

RULE = Rule(
    id="flux-config",
    title="Broken or unsafe Flux Kustomization/HelmRelease",
    rationale=(
        "A Flux Kustomization whose path does not exist never applies anything; without `prune: true` "
        "deleted manifests linger in the cluster; without `sourceRef`/`interval` it does not reconcile; "
        "without health checks or `wait` a broken rollout is reported as success."
    ),
    remediation="Point `spec.path` at an existing directory and set `prune: true`, `sourceRef`, "
    "`interval` and `healthChecks` (or `wait: true`); point a HelmRelease's chart at an existing path or source.",
    severity=all_envs("error"),
    scope="repo",
    check=None,
    edge_cases=(
        "Error: a Kustomization `spec.path` or a HelmRelease chart path/source that does not exist.",
        "Warning: a Kustomization without `prune: true`, `sourceRef`, `interval`, or `healthChecks`/`wait`.",
    ),
)
