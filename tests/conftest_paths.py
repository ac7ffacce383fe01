"""Where the test data lives: the one place that decides it.

- `tests/fixtures/` (in the repository): what the core suite needs, so a clone made anywhere runs it —
  GitHub's OpenAPI description and octokit's webhook examples for the fake GitHub and the handlers,
  the SARIF 2.1.0 schema, four podinfo manifests. Their sources are noted in tests/fixtures/README.md.
- `../shared` (beside the repository): the large data — the Kustomize conformance cases, the corpus
  of real GitOps repositories, other linters' fixtures. Tests over it are marked with `needs(...)`:
  they run when it is there (as in CI) and are skipped with a one-line reason when it is not.
  With INFRA_REVIEW_REQUIRE_SHARED set (.ci/run sets it), missing shared data is an error instead,
  so CI cannot pass by skipping them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

FIXTURES = REPO / "tests" / "fixtures"
OPENAPI = FIXTURES / "github" / "openapi-subset.json"
WEBHOOK_EXAMPLES = FIXTURES / "github" / "webhooks" / "examples"
SARIF_SCHEMA = FIXTURES / "sarif" / "sarif-schema-2.1.0.json"
PODINFO = FIXTURES / "podinfo" / "kustomize"
# Our verdicts that changed since ../shared/peer-fixtures/EXPECTED.tsv was written, each with its reason.
PEER_VERDICTS = FIXTURES / "peer-verdicts.tsv"

SHARED = REPO.parent / "shared"
CONFORMANCE = SHARED / "kustomize" / "conformance"
CORPUS = SHARED / "corpus" / "gitops"
PEER_FIXTURES = SHARED / "peer-fixtures"

REQUIRE_SHARED = "INFRA_REVIEW_REQUIRE_SHARED"


def needs(data: Path, what: str) -> pytest.MarkDecorator:
    """Mark tests over shared data: skipped, with one line saying what is missing, when `data` is not
    there. Use as `pytestmark = needs(CORPUS, "the real-repository corpus")` or on one test."""
    shown = f"../{data.relative_to(REPO.parent)}" if data.is_relative_to(REPO.parent) else str(data)
    present = data.exists()
    if not present and os.environ.get(REQUIRE_SHARED):
        raise RuntimeError(f"{shown} ({what}) is not present, and {REQUIRE_SHARED} is set: "
                           f"put the shared data beside the repository")
    return pytest.mark.skipif(not present, reason=f"{shown} not present ({what}, kept beside the repository)")
