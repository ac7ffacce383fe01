"""build-error: an overlay that kustomize cannot build (repo scope)."""

from rules.base import Rule, all_envs

RULE = Rule(
    id="build-error",
    title="Overlay that cannot be built",
    rationale="Flux runs the same build; an overlay that fails it is never applied, so the environment "
    "silently stays on the previous revision. Error everywhere.",
    remediation="Fix the reported file and line (missing file, invalid YAML, id conflict, unsupported or "
    "forbidden feature) until `kubectl kustomize <overlay>` succeeds.",
    severity=all_envs("error"),
    scope="repo",
    check=None,
    edge_cases=("Reported at the source position with the builder's message.",),
)
