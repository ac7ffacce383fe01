"""build-error: an overlay that kustomize cannot build (repo scope)."""

from rules.base import Rule, all_envs, example

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
    edge_cases=(
        "Reported with kustomize's own error sentence (no log prefixes, timestamps or stack traces), at the "
        "`resources:`/`components:` entry or the field it names, in the kustomization where it happened (an id "
        "conflict in a base is at the base's entry); a crash, running out of memory (2 GiB) or the timeout is said "
        "in words, with the limit.",
        "Kustomizations that include each other (A → B → A) are an error on each target involved, naming the cycle "
        "at the entry that closes it.",
        "Before kustomize runs, every YAML file it would parse is read by our own bounded scan: a file nesting deeper "
        "than 128 levels, or inputs holding more than 250,000 YAML nodes once aliases are expanded (a file counted "
        "each time the build reads it), is refused at the line where it crosses the bound (an alias bomb costs "
        "kustomize gigabytes). Files a generator reads as data (`files:`, `envs:`) are not scanned.",
    ),
    example=example(
        {"base/kustomization.yaml": """\
            configMapGenerator:
              - name: web
                literals: [LOG_LEVEL=info]
            """,
         "overlays/production/kustomization.yaml": """\
            resources:
              - ../base  #-
              - ../../base  #+
            """},
        note="The overlay names its base by the right relative path.",
    ),
)
