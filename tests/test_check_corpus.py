"""`check` on the eight real repositories: it completes, and every finding is one a person can act on."""

from __future__ import annotations

from collections import Counter

import pytest
from conftest_paths import CORPUS, needs

from bot.config import Config
from bot.render.build import DiskCache
from bot.review.pipeline import run_check

REPOS = sorted(p.name for p in CORPUS.iterdir() if p.is_dir()) if CORPUS.is_dir() else []
pytestmark = [needs(CORPUS, "the real-repository corpus"), pytest.mark.slow]


@pytest.mark.parametrize("name", REPOS)
def test_check_completes_with_actionable_findings(name):
    root = CORPUS / name
    report = run_check(root, None, Config.default(), cache=DiskCache(None))
    counts = Counter(f.rule for f in report.findings)
    print(f"{name}: {len(report.targets)} targets, {dict(counts.most_common())}")
    assert report.targets and all(t.status == "ok" for t in report.targets)
    for f in report.findings:
        assert f.message and f.remediation and f.severity in ("error", "warning", "notice")
        assert f.origin.file and f.origin.line, f"{f.rule} {f.message[:80]} has no place in a file"
        lines = (root / f.origin.file).read_text().splitlines()
        assert 1 <= f.origin.line <= len(lines), f"{f.origin} is not a line of the file"
    fps = Counter(f.fingerprint for f in report.findings)
    assert not [fp for fp, n in fps.items() if n > 1], "two findings share a fingerprint"
    assert "build-error" not in counts
