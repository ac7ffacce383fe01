"""Where a finding's object lies in the head tree, for anchoring review comments on changed lines."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from bot.model import Finding
from bot.yamlpos import YamlDoc, YamlError, load_docs

Span = tuple[int, int]


def object_spans(root: Path, findings: Iterable[Finding]) -> dict[int, Span]:
    """`id(finding)` → line span of the YAML document holding the finding's line in `root`.

    A finding about something the PR removed (a probe, a `limits:` block) sits on a line the diff
    does not touch; the span lets the review anchor it on a changed line of the same object.
    """
    docs: dict[str, list[YamlDoc]] = {}
    out: dict[int, Span] = {}
    for f in findings:
        path, line = f.origin.file, f.origin.line
        if not path or line is None:
            continue
        if path not in docs:
            docs[path] = _read_docs(root, path)
        doc = next((d for d in docs[path] if d.line <= line <= d.end_line), None)
        if doc is not None:
            out[id(f)] = (doc.line, doc.end_line)
    return out


def _read_docs(root: Path, rel: str) -> list[YamlDoc]:
    file = (root / rel).resolve()
    if not file.is_relative_to(root.resolve()) or not file.is_file():
        return []
    try:
        return load_docs(file.read_text(encoding="utf-8", errors="replace"), rel)
    except YamlError:
        return []


