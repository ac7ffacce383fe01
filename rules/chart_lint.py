"""chart-lint: what `helm lint` says of a chart in the repository (repository scope; made by the pipeline).

The seed validates its charts with `helm lint charts/<name>`; the pipeline runs Helm's own lint on every
chart folder of the repository (those a pull request changed, in a review) and turns each message into a
finding with `findings()`: Helm's errors are errors, its warnings notices, its informational messages
left out. A finding sits at the chart file and line Helm names, else at the chart's Chart.yaml.
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

from bot.model import Finding, Origin
from rules.base import Rule, all_envs, example
from rules.chart_error import example_chart, example_release

if TYPE_CHECKING:
    from bot.config import Config
    from bot.render.helm import LintResult

RULE = Rule(
    id="chart-lint",
    title="Chart that `helm lint` rejects",
    rationale="`helm lint` is the seed's validation of a chart: a template that does not render with the chart's "
    "own values, a malformed Chart.yaml or values.schema.json, or YAML Helm cannot parse fails every release of the "
    "chart, in every environment that installs it. Its errors are errors; its warnings (a deprecated API, a "
    "missing recommended field) are notices.",
    remediation="Fix what Helm names at that line, then run `helm lint <chart folder>` to confirm.",
    severity=all_envs("error"),
    scope="repo",
    check=None,
    edge_cases=(
        "Linted with the chart's own `values.yaml` and the configured Kubernetes version, in the sandbox; a chart "
        "folder is copied without symlinks first.",
        "In a review, only the charts whose files the pull request changed are linted, on both sides.",
        "Helm's informational messages (`icon is recommended`) are not reported.",
    ),
    example=example(
        {**example_chart("""\
            LOG_LEVEL: {{ .Values.logLevel | qoute }}  #-
            LOG_LEVEL: {{ .Values.logLevel | quote }}  #+
            """),
         "overlays/production/kustomization.yaml": "resources: [release.yaml]\n",
         "overlays/production/release.yaml": example_release()},
        note="The template calls Helm's `quote`, which it misspelt.",
    ),
)

SEVERITY = {"error": "error", "warning": "notice"}


def findings(folder: str, result: LintResult, config: Config) -> list[Finding]:
    """The lint messages of the chart in `folder` as findings (none when the rule is off)."""
    if config.severity_for(RULE, None) is None:
        return []
    chart_file = posixpath.join(folder, "Chart.yaml") if folder != "." else "Chart.yaml"
    if not result.ok:
        return [Finding(RULE.id, "error", None, f"`helm lint {folder}` could not run: {result.error}.",
                        RULE.remediation, origin=Origin(chart_file, 1, 1, "manifest"))]
    out = []
    for m in result.messages:
        severity = SEVERITY.get(m.severity)
        if severity is None:
            continue
        file = posixpath.normpath(posixpath.join(folder, m.path)) if m.path else chart_file
        out.append(Finding(RULE.id, severity, None,
                           f"`helm lint {folder}` reports a{'n error' if m.severity == 'error' else ' warning'}: "
                           f"{m.message}. Every release of this chart is affected.",
                           RULE.remediation, origin=Origin(file, m.line or 1, m.line or 1, "manifest")))
    return out
