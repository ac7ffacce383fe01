"""The provenance annotations we inject into a build, read back and removed from its output.

Kustomize's `buildMetadata: [originAnnotations]` adds `config.kubernetes.io/origin` to every
resource's top-level metadata. We read it to know which source file (or generator) produced each
resource, then strip it so that what we print is byte for byte what a plain build prints.
"""

from __future__ import annotations

from typing import Any

import yaml

from bot.yamlpos import load_data

ORIGIN = "config.kubernetes.io/origin"
_ANN_LINE = "  annotations:"
# libyaml's safe loader: every output document of every build carries an annotation to read, and the
# pure-Python loader made that a fifth of rendering from the cache.
_SAFE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_ORIGIN_LINE = f"    {ORIGIN}: |"


def split_documents(text: str) -> list[str]:
    """Kustomize output split at its `---` separators (each part keeps its trailing newline)."""
    docs: list[str] = []
    cur: list[str] = []
    for line in text.splitlines(keepends=True):
        if line.rstrip("\r\n") == "---":
            docs.append("".join(cur))
            cur = []
        else:
            cur.append(line)
    docs.append("".join(cur))
    return [d for d in docs if d.strip()]


def strip_origin(doc: str) -> tuple[str, dict[str, Any] | None]:
    """Remove the injected origin annotation from one output document; return it parsed."""
    lines = doc.splitlines(keepends=True)
    try:
        start = next(i for i, ln in enumerate(lines) if ln.rstrip("\n") == _ORIGIN_LINE)
    except StopIteration:
        return doc, None
    end = start + 1
    while end < len(lines) and lines[end].startswith("      "):
        end += 1
    origin = yaml.load("".join(ln[6:] for ln in lines[start + 1:end]), Loader=_SAFE)  # noqa: S506 (a safe loader)
    del lines[start:end]
    ann = start - 1
    while ann >= 0 and lines[ann].rstrip("\n") != _ANN_LINE:
        ann -= 1
    if ann >= 0:
        nxt = lines[ann + 1] if ann + 1 < len(lines) else ""
        if not nxt.startswith("    "):
            del lines[ann]
    return "".join(lines), origin if isinstance(origin, dict) else None


def strip_output(text: str) -> tuple[str, list[dict[str, Any] | None]]:
    """The output without our annotations, and each document's origin in output order."""
    parts = split_documents(text)
    out: list[str] = []
    origins: list[dict[str, Any] | None] = []
    for part in parts:
        clean, origin = strip_origin(part)
        out.append(clean)
        origins.append(origin)
    return "---\n".join(out), origins


def inject(kustomization_text: str) -> tuple[str, bool]:
    """Ask for origin annotations in a kustomization; False when the user already asked for them
    (then they are part of the expected output and must not be stripped)."""
    data = (load_data(kustomization_text) or [{}])[0]
    meta = data.get("buildMetadata") if isinstance(data, dict) else None
    if isinstance(meta, list) and "originAnnotations" in meta:
        return kustomization_text, False
    if meta is None:
        sep = "" if kustomization_text.endswith("\n") or not kustomization_text else "\n"
        return f"{kustomization_text}{sep}buildMetadata: [originAnnotations]\n", True
    if not isinstance(meta, list):
        return kustomization_text, False  # invalid: kustomize refuses it, as it would without us
    data["buildMetadata"] = [*meta, "originAnnotations"]
    return yaml.safe_dump(data, sort_keys=False), True


def own_origin(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The origin annotation a build kept because the user asked for it (buildMetadata)."""
    ann = (obj.get("metadata") or {}).get("annotations") if isinstance(obj.get("metadata"), dict) else None
    raw = ann.get(ORIGIN) if isinstance(ann, dict) else None
    if not isinstance(raw, str):
        return None
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return None
    return value if isinstance(value, dict) else None
