"""The dependency graph: every file a target reads, transitively, and which targets a change reaches.

`inputs()` walks every path-bearing kustomization field (see bot.repo.kustomization) and, for a
Flux Kustomization, its generated kustomization, components and `substituteFrom` sources.
`affected()` errs on the side of listing a target: missing a target whose output changes would
let a bad change through unreviewed.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

from bot.repo.kustomization import BuildError, check_plugin_file, generator_paths, load_kustomization
from bot.repo.tree import KUSTOMIZATION_NAMES, YAML_SUFFIXES, PathEscape, RepoTree
from bot.yamlpos import YamlError, load_data

MAX_DEPTH = 64
PLUGIN_FIELDS = ("generators", "transformers", "validators")


@dataclass
class Inputs:
    """What a build reads: files (some may be missing), kustomization dirs, generated dirs."""

    files: set[str] = field(default_factory=set)
    dirs: set[str] = field(default_factory=set)
    generated: set[str] = field(default_factory=set)
    errors: list[BuildError] = field(default_factory=list)
    # Sub-directories of generated dirs that hold their own kustomization: their YAML files count
    # only through that kustomization's own inputs.
    generated_subdirs: set[str] = field(default_factory=set)

    def merge(self, other: Inputs) -> None:
        self.files |= other.files
        self.dirs |= other.dirs
        self.generated |= other.generated
        self.generated_subdirs |= other.generated_subdirs
        self.errors.extend(e for e in other.errors if e not in self.errors)


def generated_resources(tree: RepoTree, directory: str) -> list[str]:
    """What Flux lists as resources when a path has no kustomization: every YAML file below it,
    and each sub-directory holding a kustomization file (not descended into), in walk order."""
    key = ("generated", directory)
    if key not in tree.memo:
        tree.memo[key] = _generated_resources(tree, directory)
    return list(tree.memo[key])  # type: ignore[arg-type]


def _generated_resources(tree: RepoTree, directory: str) -> list[str]:
    out: list[str] = []
    prefix = "" if directory in ("", ".") else directory + "/"
    skip: list[str] = []
    for rel in tree.files:
        if not rel.startswith(prefix):
            continue
        if any(rel.startswith(s) for s in skip):
            continue
        sub = rel[len(prefix):]
        parts = sub.split("/")
        for depth in range(1, len(parts)):
            subdir = prefix + "/".join(parts[:depth])
            if tree.kustomization_file(subdir):
                if subdir not in out:
                    out.append(subdir)
                skip.append(subdir + "/")
                break
        else:
            if rel.endswith(YAML_SUFFIXES):
                out.append(rel)
    return sorted(out, key=lambda p: p.split("/"))


class Graph:
    """Memoised dependency walk over one tree."""

    def __init__(self, tree: RepoTree):
        self.tree = tree
        self._memo: dict[str, Inputs] = {}

    def kustomization_inputs(self, directory: str, stack: tuple[str, ...] = ()) -> Inputs:
        """Inputs of building `directory` with its own kustomization file."""
        if directory in self._memo:
            return self._memo[directory]
        inputs = Inputs(dirs={directory})
        if directory in stack:
            inputs.errors.append(BuildError(f"cycle: {' -> '.join(stack + (directory,))}", directory))
            return inputs
        if len(stack) > MAX_DEPTH:
            inputs.errors.append(BuildError(f"kustomization nesting deeper than {MAX_DEPTH}", directory))
            return inputs
        kfile = self.tree.kustomization_file(directory)
        if kfile is None:
            inputs.errors.append(BuildError(f"no kustomization file in '{directory}'", directory))
            return inputs
        inputs.files.add(kfile)
        try:
            kust = load_kustomization(self.tree, directory)
        except BuildError as exc:
            inputs.errors.append(exc)
            self._memo[directory] = inputs
            return inputs
        for ref in kust.refs:
            if ref.field in PLUGIN_FIELDS:
                self._plugin_config_files(kust, ref, inputs, stack + (directory,))
            if ref.path is None:
                continue
            if ref.expect != "file" and self.tree.is_dir(ref.path):
                inputs.merge(self.kustomization_inputs(ref.path, stack + (directory,)))
                continue
            inputs.files.add(ref.path)
            if not self.tree.is_file(ref.path):
                inputs.errors.append(BuildError(f"'{ref.value}' ({ref.field}) does not exist", kust.file, ref.line))
            elif ref.field in ("generators", "transformers", "validators"):
                try:
                    check_plugin_file(self.tree, ref.path, kust.file, ref.line)
                except BuildError as exc:
                    inputs.errors.append(exc)
        self._memo[directory] = inputs
        return inputs

    def _plugin_config_files(self, kust, ref, inputs: Inputs, stack: tuple[str, ...]) -> None:
        """Files named inside generator/transformer configs, which Kustomize resolves relative to
        the kustomization that *uses* the config (not the one that defines it)."""
        configs: list = []
        try:
            if ref.path is None:
                configs = load_data(ref.value, kust.file) if ref.value else []
            elif self.tree.is_dir(ref.path):
                sub = self.kustomization_inputs(ref.path, stack)
                for f in sorted(sub.files):
                    if f.endswith(YAML_SUFFIXES) and posixpath.basename(f) not in KUSTOMIZATION_NAMES and self.tree.is_file(f):
                        configs.extend(d.data for d in self.tree.docs(f))
            elif self.tree.is_file(ref.path):
                configs = [d.data for d in self.tree.docs(ref.path)]
        except YamlError:
            return
        for cfg in configs:
            if not isinstance(cfg, dict):
                continue
            names = [p for _f, p, _s in generator_paths(cfg)]
            for key in ("path", "paths"):
                val = cfg.get(key)
                names.extend([val] if isinstance(val, str) else [v for v in val or [] if isinstance(v, str)])
            for name in names:
                try:
                    inputs.files.add(self.tree.resolve(kust.dir, name))
                except PathEscape as exc:
                    inputs.errors.append(BuildError(str(exc), kust.file, ref.line))

    def path_inputs(self, directory: str) -> Inputs:
        """Inputs of a Flux path: its kustomization, or the one Flux generates from its YAML files."""
        if self.tree.kustomization_file(directory):
            return self.kustomization_inputs(directory)
        inputs = Inputs(generated={directory})
        for res in generated_resources(self.tree, directory):
            if self.tree.is_dir(res):
                inputs.generated_subdirs.add(res)
                inputs.merge(self.kustomization_inputs(res))
            else:
                inputs.files.add(res)
        return inputs

    def flux_inputs(self, path: str, components: list[str], sources: list[str]) -> Inputs:
        """A Flux Kustomization's inputs: its path, its components (relative to the path), and
        the files defining its substituteFrom ConfigMaps/Secrets."""
        inputs = Inputs()
        inputs.merge(self.path_inputs(path))
        for comp in components:
            try:
                rel = self.tree.resolve(path, comp)
            except PathEscape as exc:
                inputs.errors.append(BuildError(str(exc), path))
                continue
            inputs.merge(self.kustomization_inputs(rel))
        inputs.files.update(sources)
        return inputs


def touches(inputs: Inputs, path: str) -> bool:
    """Whether adding, changing or deleting `path` can change a build with these inputs."""
    if path in inputs.files:
        return True
    parent, name = posixpath.split(path)
    parent = parent or "."
    if name in KUSTOMIZATION_NAMES and (parent in inputs.dirs or any(
            parent == g or parent.startswith(g.rstrip("/") + "/") or g == "." for g in inputs.generated)):
        return True
    if not path.endswith(YAML_SUFFIXES) or any(path.startswith(d + "/") for d in inputs.generated_subdirs):
        return False
    return any(gen == "." or path.startswith(gen.rstrip("/") + "/") for gen in inputs.generated)
