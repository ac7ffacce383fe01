"""What a change does, in the words a reviewer uses: `image 2.1.0 → 2.2.0`, `replicas 3 → 4`,
`limits.memory 512Mi → 1Gi`, `chart 1.2.0 → 1.3.0`. Only what is recognisable; the raw diff says the rest."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_POD_SPECS = {"Pod": ("spec",), "CronJob": ("spec", "jobTemplate", "spec", "template", "spec")}
_TEMPLATE = ("spec", "template", "spec")


def _get(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _containers(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = _get(obj, _POD_SPECS.get(str(obj.get("kind")), _TEMPLATE))
    out: dict[str, dict[str, Any]] = {}
    for key in ("initContainers", "containers"):
        items = spec.get(key) if isinstance(spec, dict) else None
        for item in items if isinstance(items, list) else ():
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                out[item["name"]] = item
    return out


def _image(before: str, after: str) -> str:
    """Only the tag when the repository stays (`2.1.0 → 2.2.0`), else both images whole."""
    def split(image: str) -> tuple[str, str]:
        if "@" in image:
            repo, _, digest = image.partition("@")
            return repo, "@" + digest[:19]
        repo, _, tag = image.rpartition(":")
        return (repo, tag) if repo and "/" not in tag else (image, "latest")
    (r1, t1), (r2, t2) = split(before), split(after)
    return f"{t1} → {t2}" if r1 == r2 else f"{before} → {after}"


def _quantity_changes(prefix: str, before: Any, after: Any) -> list[str]:
    out = []
    for part in ("requests", "limits"):
        b, a = _get(before, (part,)) or {}, _get(after, (part,)) or {}
        for res in sorted(set(b) | set(a) if isinstance(a, dict) and isinstance(b, dict) else ()):
            if b.get(res) != a.get(res):
                out.append(f"{prefix}{part}.{res} {b.get(res, 'unset')} → {a.get(res, 'unset')}")
    return out


def meaning(before: dict[str, Any], after: dict[str, Any]) -> tuple[str, ...]:
    """The recognisable parts of a change of one object (empty when none is)."""
    out: list[str] = []
    for path, word in ((("spec", "replicas"), "replicas"), (("spec", "minReplicas"), "minReplicas"),
                       (("spec", "maxReplicas"), "maxReplicas")):
        b, a = _get(before, path), _get(after, path)
        if b != a:
            out.append(f"{word} {'unset' if b is None else b} → {'unset' if a is None else a}")
    old, new = _containers(before), _containers(after)
    named = len(new) > 1
    for name in new.keys() & old.keys():
        prefix = f"{name} " if named else ""
        b, a = old[name].get("image"), new[name].get("image")
        if isinstance(a, str) and isinstance(b, str) and a != b:
            out.append(f"{prefix}image {_image(b, a)}")
        out += _quantity_changes(prefix, old[name].get("resources"), new[name].get("resources"))
    out += [f"container {n} added" for n in new.keys() - old.keys()]
    out += [f"container {n} removed" for n in old.keys() - new.keys()]
    if before.get("kind") == "HelmRelease":
        chart = (_get(before, ("spec", "chart", "spec", "version")), _get(after, ("spec", "chart", "spec", "version")))
        if chart[0] != chart[1]:
            out.append(f"chart {chart[0]} → {chart[1]}")
        if _get(before, ("spec", "values")) != _get(after, ("spec", "values")):
            out.append("values changed")
    for section in ("data", "stringData", "binaryData"):
        b, a = before.get(section), after.get(section)
        if isinstance(b, dict | type(None)) and isinstance(a, dict | type(None)) and b != a:
            b, a = b or {}, a or {}
            keys = sorted(k for k in set(b) | set(a) if b.get(k) != a.get(k))
            out.append(f"{section} {', '.join(keys)} changed" if len(keys) <= 3 else
                       f"{section}: {len(keys)} keys changed")
    rest = [field for field in changed_fields(before, after) if not _COVERED.search(field.path)]
    phrases = list(dict.fromkeys(field.phrase() for field in rest))  # the pod template's labels say it twice
    out += phrases[:MAX_FIELDS]
    if len(phrases) > MAX_FIELDS:
        out.append(f"{len(phrases) - MAX_FIELDS} more fields")
    return tuple(out)


MAX_FIELDS = 3
MAX_VALUE = 30
# Fields the phrases above already said (a name changes only in a generator's rename, said by the caller).
_COVERED = re.compile(r"^spec\.(replicas|minReplicas|maxReplicas)$|containers\[[^\]]*\]\.(image|resources)(\.|\[|$)"
                      r"|containers$|^metadata\.name$|^spec\.values(\.|\[|$)|^spec\.chart\.spec\.version$|^(data|stringData|binaryData)(\.|$)")
_NOISE_PREFIXES = ("spec.jobTemplate.", "spec.template.", "spec.", "metadata.")  # removed in this order


@dataclass(frozen=True)
class Field:
    path: str
    before: Any
    after: Any

    def phrase(self) -> str:
        """`containers[api].readinessProbe removed`, `labels.tier web → api`."""
        short = self.path
        for prefix in _NOISE_PREFIXES:
            short = short.removeprefix(prefix)
        if self.before is None:
            return f"{short} added"
        if self.after is None:
            return f"{short} removed"
        if all(not isinstance(v, dict | list) and len(str(v)) <= MAX_VALUE for v in (self.before, self.after)):
            return f"{short} {self.before} → {self.after}"
        return f"{short} changed"


def changed_fields(before: Any, after: Any, path: str = "") -> list[Field]:
    """The deepest fields where two objects differ (a list's items by their `name` where they have one,
    else by index; a list of another length is one change of the list)."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for key in sorted(set(before) | set(after), key=str):
            out += changed_fields(before.get(key), after.get(key), f"{path}.{key}" if path else str(key))
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        out = []
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            name = a.get("name") if isinstance(a, dict) and isinstance(a.get("name"), str) else None
            out += changed_fields(b, a, f"{path}[{name or i}]")
        return out
    return [] if before == after else [Field(path or "(the object)", before, after)]
