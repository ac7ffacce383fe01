"""chart-unavailable: a HelmRelease whose chart could not be had here, so what it installs was not
checked (repository scope, findings per environment; made by the pipeline from what the release renderer reports).

Never an error: Flux fetches the chart with its own credentials and network, so not having it here
says nothing about whether Flux can install it, only that infra-review did not look inside. The
static checks of the HelmRelease itself (`latest-tag` on its values) still run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.model import Finding
from rules.base import Rule, all_envs, example
from rules.chart_error import example_chart, example_release, release_findings

if TYPE_CHECKING:
    from bot.config import Config
    from bot.render.releases import Release

RULE = Rule(
    id="chart-unavailable",
    title="Chart not rendered",
    rationale="Most Flux repositories deploy their workloads through HelmReleases; when a chart cannot be "
    "fetched (fetching off, a private registry, a refused or unreachable address, a source that is not defined "
    "here), the objects it installs are not checked, and the review says so rather than pass them silently. A "
    "notice everywhere: Flux may well be able to fetch it.",
    remediation="Let infra-review fetch it: drop `--offline` / `fetch: {enabled: false}`, list the chart "
    "repository's URL prefix in `fetch: {allow: [...]}` of .github/infra-review.yml when it is http or on a private "
    "address, or define its source (HelmRepository, OCIRepository) in the repository.",
    severity=all_envs("notice"),
    scope="repo",
    check=None,
    edge_cases=(
        "Located at the HelmRelease's `spec.chart` (or `spec.chartRef`) line; the message says why: offline, "
        "refused by the fetch policy, not found in the index or registry, or a failed download.",
        "A chart from another Git repository is not fetched (only chart repositories and OCI registries are).",
        "A suspended HelmRelease (`spec.suspend: true`) is not rendered and gets no notice: Flux does not act on it.",
    ),
    example=example(
        {"overlays/production/kustomization.yaml": "resources: [release.yaml]\n",
         "overlays/production/release.yaml": example_release(chart="""\
            chart: web  #-
            version: 1.0.0  #-
            chart: ./charts/web  #+
            sourceRef:
              kind: HelmRepository  #-
              name: example  #-
              kind: GitRepository  #+
              name: flux-system  #+
              namespace: flux-system  #+
            """)},
        added=example_chart(),
        note="The chart is vendored into `charts/web`, so what it installs is rendered and checked (from a "
        "HelmRepository, only where the repository defines the source and infra-review can fetch the chart).",
    ),
)


def findings(releases: list[Release], config: Config) -> list[Finding]:
    """One notice per release whose chart was not rendered because it could not be had here."""
    return release_findings(RULE, "unavailable", releases, config, lambda r: (
        f"its chart was not rendered: {r.reason}. What it installs was not checked."))
