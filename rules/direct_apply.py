"""direct-apply: changes that bypass Flux (repo scope)."""

from rules.base import Rule, per_env

RULE = Rule(
    id="direct-apply",
    title="Change applied outside GitOps",
    rationale=(
        "Flux reconciles the cluster to git; anything applied by hand drifts, is undone on the next "
        "reconcile or, worse, is never reviewed. Error in production and staging, warning in development."
    ),
    remediation="Reach the overlay from a Flux `Kustomization` under `clusters/<env>/`, and replace "
    "`kubectl apply`/`helm upgrade` in scripts and CI with a commit that Flux reconciles.",
    severity=per_env("error", "error", "warning"),
    scope="repo",
    check=None,
    edge_cases=(
        "(a) an overlay under `overlays/<env>/` that no Flux Kustomization reaches.",
        "(b) a changed script, Makefile or CI workflow line running `kubectl apply/create/replace/patch/edit/"
        "delete/scale/set` or `helm install/upgrade` against the cluster: error where it names production, "
        "warning otherwise.",
    ),
)
