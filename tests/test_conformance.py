"""`bot build` reproduces `kustomize build` byte for byte on the 178 recorded conformance cases,
with provenance injection on (its annotations never leak), and error cases fail."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest_paths import CONFORMANCE, REPO, needs
from provenance_check import check_all

from bot.model import Target
from bot.render.build import DiskCache, Renderer
from bot.repo.discover import RepoModel
from bot.repo.tree import RepoTree

CASES = sorted(p.name for p in CONFORMANCE.iterdir() if (p / "case.json").is_file()) if CONFORMANCE.is_dir() else []
pytestmark = [needs(CONFORMANCE, "the Kustomize conformance cases"), pytest.mark.slow]


def _render(name: str):
    case = CONFORMANCE / name
    meta = json.loads((case / "case.json").read_text())
    build_dir = meta["build_dir"].removeprefix("input").strip("/") or "."
    model = RepoModel(RepoTree(case / "input"))
    return meta, model, Renderer(model, cache=DiskCache(None)).render(Target(build_dir, None, None))


@pytest.mark.parametrize("name", CASES)
def test_case_byte_for_byte(name):
    meta, _model, rendered = _render(name)
    if meta["expect_error"]:
        assert not rendered.ok, "an error case must fail"
        return
    assert rendered.ok, str(rendered.error)
    expected = (CONFORMANCE / name / "expected.yaml").read_text()
    assert rendered.text == expected
    assert "config.kubernetes.io/origin" not in rendered.text or "config.kubernetes.io/origin" in expected


def test_provenance_cites_lines_that_hold_the_value():
    """Every scalar of every output is attributed to a real line; count those whose line does not
    hold the value (nor is a kustomization field that produced it)."""
    renders = ((name, rendered, model.tree.lines) for name in CASES
               for meta, model, rendered in [_render(name)] if not meta["expect_error"])
    total, problems = check_all(renders)
    rate = 1 - len(problems) / total
    print(f"provenance: {total - len(problems)}/{total} scalars attributed to a line that holds them")
    assert total > 3000
    assert rate >= PROVENANCE_FLOOR, "\n".join(problems[:40])


# Measured 3342/3384 (98.8%). Known gaps: values set by `replacements`, by transformer configs
# in separate files, by JSON patches that rename a resource, and patches on list items matched by
# a merge key other than `name` (their line falls back to the enclosing object).
PROVENANCE_FLOOR = 0.985


def test_cli_prints_exactly_what_kustomize_prints(tmp_path):
    name = "baseandoverlaymedium__MediumOverlay"
    case = CONFORMANCE / name
    meta = json.loads((case / "case.json").read_text())
    out = subprocess.run(
        [sys.executable, "-m", "bot", "build", meta["build_dir"].removeprefix("input/"), "--root", "."],
        cwd=case / "input", capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
                                                                  "INFRA_REVIEW_CACHE": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == (case / "expected.yaml").read_text()
