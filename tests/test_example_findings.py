"""The findings listed in examples/README.md are exactly what `check` reports on the example PR."""

from __future__ import annotations

import re
import shutil
import subprocess

from conftest_paths import REPO

from bot.config import Config
from bot.review.pipeline import run_check

ROW = re.compile(r"^\| `([\w-]+)` \| (\w+) \| (\w+) \| `([^`]+):(\d+)`")


def expected() -> set[tuple]:
    out, new = set(), None
    for line in (REPO / "examples" / "README.md").read_text().splitlines():
        if line.startswith("### "):
            new = True if line.startswith("### New") else False if line.startswith("### Existing") else None
        m = ROW.match(line)
        if m and new is not None:
            rule, env, sev, file, ln = m.groups()
            out.add((rule, env, sev, file, int(ln), new))
    return out


def test_readme_tables_match_the_check(tmp_path):
    head = tmp_path / "head"
    shutil.copytree(REPO / "examples" / "repo", head)
    subprocess.run(["git", "apply", "--directory", "", str(REPO / "examples" / "pull-request.patch")],
                   cwd=head, check=True, capture_output=True)
    report = run_check(head, REPO / "examples" / "repo", Config.default())
    got = {(f.rule, f.environment, f.severity, f.origin.file, f.origin.line, f.new) for f in report.findings}
    want = expected()
    assert len(want) == 12
    assert got == want


def test_the_removed_limits_suggestion_restores_a_valid_block(tmp_path):
    """The example PR deletes production web's `limits:`; applying our suggestion puts the
    environment's defaults back and the file still parses."""
    import yaml

    from rules.testing import apply_suggestion

    head = tmp_path / "head"
    shutil.copytree(REPO / "examples" / "repo", head)
    subprocess.run(["git", "apply", str(REPO / "examples" / "pull-request.patch")], cwd=head, check=True,
                   capture_output=True)
    report = run_check(head, None, Config.default())
    (f,) = [f for f in report.findings if f.rule == "missing-resources" and f.environment == "production"]
    path = head / f.suggestion.file
    fixed = "\n".join(apply_suggestion(path.read_text().splitlines(), f.suggestion))
    container = yaml.safe_load(fixed)["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"cpu": "500m", "memory": "1Gi"}
    assert container["resources"]["requests"]["memory"] == "512Mi"


def test_findings_in_the_charts_output_are_fixed_in_the_helmreleases_values(tmp_path):
    """The search chart's Deployment is judged like any other; the fix is at the values key the chart
    reads, in the HelmRelease the pull request changed."""
    head = tmp_path / "head"
    shutil.copytree(REPO / "examples" / "repo", head)
    subprocess.run(["git", "apply", str(REPO / "examples" / "pull-request.patch")], cwd=head, check=True,
                   capture_output=True)
    report = run_check(head, REPO / "examples" / "repo", Config.default())
    search = {f.rule: f for f in report.findings if f.origin.file == "clusters/production/search.yaml"}
    assert set(search) == {"single-replica", "latest-tag"}
    replicas, tag = search["single-replica"], search["latest-tag"]
    assert replicas.resource is not None and str(replicas.resource) == "Deployment/production/search"
    assert replicas.suggestion is not None and replicas.suggestion.text == "    replicaCount: 3"
    assert "values key `replicaCount`" in replicas.message
    assert tag.suggestion is not None and tag.suggestion.text == '      tag: "1.4.2"'
    assert any("3 HelmReleases: 3 rendered" in note for note in report.notes)
