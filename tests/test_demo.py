"""`python -m bot demo` (what `make demo` runs): offline, from a clean checkout, leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_demo_prints_new_and_existing_findings_and_the_dry_run_review(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "bot", "demo"], cwd=REPO, capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    check, review = text.split("infra-review review --repo", 1)
    said = [line.split() for line in check.splitlines()]
    assert ["kustomization.yaml:12", "error", "latest-tag", "Deployment", "production/api,", "container", "api",
            "[production]", "NEW"] in said
    assert any(x[2:3] == ["single-replica"] and x[-1] == "NEW" for x in said if len(x) > 3)
    assert any(x[2:3] == ["env-defaults"] and x[-1] == "existing" for x in said if len(x) > 3)
    assert any(x[2:3] == ["missing-probes"] and x[-1] == "existing" for x in said if len(x) > 3)
    assert "== check run `infra-review`: failure ==" in review
    assert "- production: 8 objects change — Deployment/search: replicas 3 → 1, image 1.4.2 → latest" in review
    assert "text (its rendered diffs):" in review and "-  replicas: 3\n    +  replicas: 1" in review
    assert "== review (COMMENT," in review and "<!-- infra-review:fp=" in review
    assert "--- overlays/production/worker/patch-deployment.yaml:6" in review
    assert "fake-staging-pw-0000" not in text
    assert not list(tmp_path.glob("infra-review-demo-*")), "the demo's temporary repository was not removed"
