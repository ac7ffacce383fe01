"""Where the shared test data lives (../shared next to the repository)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CONFORMANCE = SHARED / "kustomize" / "conformance"
CORPUS = SHARED / "corpus" / "gitops"
