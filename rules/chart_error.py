"""chart-error: a HelmRelease that Flux's helm-controller would fail to install (repository scope, findings per environment).

The release renderer (bot.render.releases) reports it; the pipeline turns each into a finding with
`findings()`, at the HelmRelease field that is wrong: the chart (a template error, a chart folder
without Chart.yaml), a `valuesFrom` entry whose object or key is missing, a post-renderer Kustomize
cannot apply.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bot.model import Finding
from rules.base import FALLBACK_ENVIRONMENT, Rule, example, example_file, example_lines, per_env

if TYPE_CHECKING:
    from bot.config import Config
    from bot.render.releases import Release

EXAMPLE_CHART_SPEC = """\
    chart: ./charts/web
    sourceRef:
      kind: GitRepository
      name: flux-system
      namespace: flux-system
    """


def example_chart(data: str = "LOG_LEVEL: {{ .Values.logLevel | quote }}") -> dict[str, str]:
    """The chart of the chart rules' examples, `charts/web`: one ConfigMap with these `data` lines."""
    return {"charts/web/Chart.yaml": example_file("apiVersion: v2", "name: web", "version: 1.0.0"),
            "charts/web/templates/configmap.yaml": example_file(
                "apiVersion: v1", "kind: ConfigMap", "metadata:", "  name: {{ .Release.Name }}", "data:",
                *example_lines(data, 2))}


def example_release(chart: str = EXAMPLE_CHART_SPEC, spec: str = "") -> str:
    """The HelmRelease `web` of the chart rules' examples, with these `spec.chart.spec` lines and more
    `spec` lines."""
    return example_file(
        "apiVersion: helm.toolkit.fluxcd.io/v2", "kind: HelmRelease", "metadata:", "  name: web", "  namespace: web",
        "spec:", "  interval: 10m", "  chart:", "    spec:", *example_lines(chart, 6), *example_lines(spec, 2))


RULE = Rule(
    id="chart-error",
    title="HelmRelease that Flux cannot install",
    rationale="Flux renders a HelmRelease's chart with its values on the cluster; a template error, a missing "
    "non-optional `valuesFrom` source or a broken post-renderer fails the install or the upgrade after the merge, "
    "and the workload stays on its old version (or never starts). Helm's own engine renders the chart here the "
    "way helm-controller does, so the failure is seen in the pull request. Error in production and staging, "
    "warning in development.",
    remediation="Fix what Helm names: the template line, the values key the template reads, the ConfigMap or "
    "Secret a `valuesFrom` entry names (or mark it `optional: true`), or the post-renderer's patch.",
    severity=per_env("error", "error", "warning"),
    scope="repo",
    check=None,
    edge_cases=(
        "Located at the HelmRelease field at fault: `spec.chart` for the chart, `spec.valuesFrom[i]` for a values "
        "source, `spec.postRenderers[i]` for a post-renderer; a template error names the chart file and line too.",
        "A SOPS-encrypted `valuesFrom` Secret is not an error: its values are unknown here, and the chart is "
        "rendered without them.",
        "`lookup` returns nothing, as in `helm template`: a chart that fails without cluster state fails here.",
    ),
    example=example(
        {**example_chart(),
         "overlays/production/kustomization.yaml": "resources: [release.yaml, values.yaml]\n",
         "overlays/production/values.yaml": """\
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: web-values
              namespace: web
            data:
              values.yaml: |
                logLevel: info
            """,
         "overlays/production/release.yaml": example_release(spec="""\
            valuesFrom:
              - kind: ConfigMap
                name: web-value  #-
                name: web-values  #+
            """)},
        note="`valuesFrom` names the ConfigMap the overlay defines, `web-values`.",
    ),
)


def release_findings(rule: Rule, status: str, releases: list[Release], config: Config,
                     say: Callable[[Release], str]) -> list[Finding]:
    """One finding of `rule` per release of `status`, at the HelmRelease field its reason names."""
    out: list[Finding] = []
    for release in releases:
        env = release.target.environment or FALLBACK_ENVIRONMENT
        severity = config.severity_for(rule, env)
        if release.status != status or severity is None:
            continue
        out.append(Finding(rule=rule.id, severity=severity, environment=env, message=say(release),
                           remediation=rule.remediation, target=release.target.path, resource=release.hr_object.id,
                           field=release.at, origin=release.origin))
    return out


def findings(releases: list[Release], config: Config) -> list[Finding]:
    """One finding per release that could not be rendered because Flux would fail too."""
    return release_findings(RULE, "error", releases, config, lambda r: (
        f"it cannot be installed: {r.reason}. Flux's helm-controller would "
        f"fail the release, and nothing its chart installs was checked."))
