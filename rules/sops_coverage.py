"""sops-coverage: Secret manifests must fall under a `.sops.yaml` creation rule (repo scope)."""

from rules.base import Rule, per_env

RULE = Rule(
    id="sops-coverage",
    title="Secret file not covered by .sops.yaml",
    rationale=(
        "`sops -e` picks keys from the first `creation_rules[].path_regex` matching the file; a Secret "
        "file that matches none cannot be encrypted for the environment's cluster, so it ends up "
        "committed in clear or encrypted with the wrong key. Error in production and staging, warning "
        "in development."
    ),
    remediation="Add a `creation_rules` entry to `.sops.yaml` whose `path_regex` matches the file (with the "
    "environment's age/KMS key), or move the file under a covered path.",
    severity=per_env("error", "error", "warning"),
    scope="repo",
    check=None,
    edge_cases=("No `.sops.yaml` at all means no Secret file is covered.",),
)
