"""The rendered diff as data: per environment, per target, the objects added, removed and changed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.model import ResourceId


def resource_json(rid: ResourceId) -> dict[str, Any]:
    """A resource as `check`'s JSON names it."""
    return {"kind": rid.kind, "namespace": rid.namespace or None, "name": rid.name}


def resource_name(rid: ResourceId) -> str:
    """`Deployment/api`, the namespace left out: a line about one environment reads better without it."""
    return f"{rid.kind}/{rid.name}"


@dataclass(frozen=True)
class ObjectChange:
    """One object that changes. `diff` is a unified diff of its rendered YAML, secrets masked ('' when
    it is added or removed); `meaning` says what the change does in a few words (`image 2.1.0 → 2.2.0`,
    else the fields that change)."""

    resource: ResourceId
    status: str  # added | removed | changed
    diff: str = ""
    meaning: tuple[str, ...] = ()
    renamed_from: str | None = None  # a generator's previous hash-suffixed name

    def to_json(self) -> dict[str, Any]:
        return resource_json(self.resource) if self.status != "changed" else {
            "resource": resource_json(self.resource), "diff": self.diff}


@dataclass(frozen=True)
class TargetChanges:
    target: str
    environment: str
    added: tuple[ObjectChange, ...] = ()
    removed: tuple[ObjectChange, ...] = ()
    changed: tuple[ObjectChange, ...] = ()

    @property
    def objects(self) -> tuple[ObjectChange, ...]:
        return self.changed + self.added + self.removed

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "added": [c.to_json() for c in self.added],
                "removed": [c.to_json() for c in self.removed], "changed": [c.to_json() for c in self.changed]}


@dataclass(frozen=True)
class EnvironmentChanges:
    name: str
    targets: tuple[TargetChanges, ...] = ()

    @property
    def objects(self) -> list[ObjectChange]:
        return [c for t in self.targets for c in t.objects]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "targets": [t.to_json() for t in self.targets]}


@dataclass(frozen=True)
class Changes:
    """Every environment the pull request reaches, production first; targets with no change left out."""

    environments: tuple[EnvironmentChanges, ...] = ()
    seconds: float = field(default=0.0, compare=False)  # what computing it cost

    @property
    def empty(self) -> bool:
        return not any(e.targets for e in self.environments)
