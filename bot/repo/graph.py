"""The dependency graph: every file a target reads, transitively, and which targets a change reaches.

`inputs()` walks every path-bearing kustomization field (see bot.repo.kustomization) and, for a
Flux Kustomization, its generated kustomization, components and `substituteFrom` sources.
`affected()` errs on the side of listing a target: missing a target whose output changes would
let a bad change through unreviewed.
"""

from __future__ import annotations

import posixpath
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from bot.repo.kustomization import (
    BuildError,
    Ref,
    check_plugin_configs,
    check_plugin_file,
    generator_paths,
    load_kustomization,
)
from bot.repo.tree import KUSTOMIZATION_NAMES, YAML_SUFFIXES, PathEscape, RepoTree
from bot.yamlpos import YamlError, load_data

MAX_DEPTH = 64
PLUGIN_FIELDS = ("generators", "transformers", "validators")
GENERATOR_FIELDS = ("configMapGenerator.", "secretGenerator.")  # `files:`/`envs:`/`env:` entries: read as bytes


@dataclass(frozen=True)
class RemoteEntry:
    """An entry of a kustomization that Kustomize fetches (`ref.remote`): the kustomization file and
    folder that name it, and the entry itself (field, value, line, where it sits)."""

    file: str
    dir: str
    ref: Ref


@dataclass
class Inputs:
    """What a build reads: files (some may be missing), kustomization dirs, generated dirs, and the
    remote entries of those kustomizations (fetched by the renderer, not part of `files`)."""

    files: set[str] = field(default_factory=set)
    dirs: set[str] = field(default_factory=set)
    generated: set[str] = field(default_factory=set)
    errors: list[BuildError] = field(default_factory=list)
    # Sub-directories of generated dirs that hold their own kustomization: their YAML files count
    # only through that kustomization's own inputs.
    generated_subdirs: set[str] = field(default_factory=set)
    # Files kustomize parses as YAML (kustomizations, resources, patches, configs), and files a
    # generator reads as bytes (`files:`, `envs:`): what the renderer's pre-scan does and does not read.
    parsed: set[str] = field(default_factory=set)
    data: set[str] = field(default_factory=set)
    remote: list[RemoteEntry] = field(default_factory=list)

    def merge(self, other: Inputs) -> None:
        self.files |= other.files
        self.dirs |= other.dirs
        self.generated |= other.generated
        self.generated_subdirs |= other.generated_subdirs
        self.parsed |= other.parsed
        self.data |= other.data
        self.errors.extend(e for e in other.errors if e not in self.errors)
        self.remote.extend(r for r in other.remote if r not in self.remote)

    def copy(self) -> Inputs:
        out = Inputs()
        out.merge(self)
        return out

    def yaml_files(self) -> set[str]:
        """The files kustomize parses: everything but what only generators read, and the Flux files
        around the build (which our own discovery has parsed already)."""
        return self.parsed | {f for f in self.files - self.data
                              if f.endswith(YAML_SUFFIXES) or posixpath.basename(f) in KUSTOMIZATION_NAMES}


@dataclass
class _Own:
    """What one kustomization names itself: its inputs (without those of the folders it includes),
    each included folder with the entry that includes it, and each file it parses, once per entry."""

    inputs: Inputs
    children: list[tuple[str, str, int]] = field(default_factory=list)  # (folder, kustomization file, line)
    parsed: list[str] = field(default_factory=list)
    entries: dict[str, tuple[str, int]] = field(default_factory=dict)  # path -> (kustomization file, line)


def generated_resources(tree: RepoTree, directory: str) -> list[str]:
    """What Flux lists as resources when a path has no kustomization: every YAML file below it,
    and each sub-directory holding a kustomization file (not descended into), in walk order."""
    key = ("generated", directory)
    if key not in tree.memo:
        tree.memo[key] = _generated_resources(tree, directory)
    return list(cast(list[str], tree.memo[key]))


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
    """Memoised dependency walk over one tree.

    The folders kustomizations include form a graph that may hold cycles (A includes B, B includes
    A); it is walked once per strongly connected component (Tarjan), so what a folder reads is the same
    whichever target reaches it first, and a cycle is an error on every folder in it.
    """

    def __init__(self, tree: RepoTree):
        self.tree = tree
        self._memo: dict[str, Inputs] = {}
        self._own: dict[str, _Own] = {}
        self._scc: dict[str, frozenset[str]] = {}
        self._height: dict[str, int] = {}
        self._lock = threading.RLock()  # targets render in threads, and may walk the graph first

    def kustomization_inputs(self, directory: str) -> Inputs:
        """Inputs of building `directory` with its own kustomization file."""
        with self._lock:
            if directory not in self._memo:
                self._walk(directory)
            return self._memo[directory]

    def cycle_mates(self, directory: str) -> frozenset[str]:
        """The folders that include `directory` and that it includes (itself too): one cycle, or just
        itself. None of them is "included by" another in the sense that makes it no target of its own."""
        self.kustomization_inputs(directory)
        return self._scc.get(directory, frozenset({directory}))

    def own(self, directory: str) -> _Own:
        with self._lock:
            if directory not in self._own:
                self._own[directory] = _Own(Inputs(dirs={directory}))  # what a config folder including it back sees
                self._own[directory] = self._read(directory)
            return self._own[directory]

    def _read(self, directory: str) -> _Own:
        own = _Own(Inputs(dirs={directory}))
        inputs = own.inputs
        kfile = self.tree.kustomization_file(directory)
        if kfile is None:
            inputs.errors.append(BuildError(f"no kustomization file in '{directory}'", directory))
            return own
        inputs.files.add(kfile)
        inputs.parsed.add(kfile)
        own.parsed.append(kfile)
        try:
            kust = load_kustomization(self.tree, directory)
        except BuildError as exc:
            inputs.errors.append(exc)
            return own
        for ref in kust.refs:
            if ref.remote:
                inputs.remote.append(RemoteEntry(kust.file, directory, ref))
                continue
            if ref.field in PLUGIN_FIELDS:
                self._plugin_config_files(kust, ref, inputs)
            if ref.path is None:
                continue
            own.entries.setdefault(ref.path, (kust.file, ref.line))
            if ref.expect != "file" and self.tree.is_dir(ref.path):
                if self.tree.kustomization_file(ref.path) is None:
                    inputs.dirs.add(ref.path)  # adding a kustomization there changes the build
                    inputs.errors.append(BuildError(
                        f"'{ref.value}' ({ref.field}) is a folder without a kustomization file", kust.file, ref.line))
                else:
                    own.children.append((ref.path, kust.file, ref.line))
                continue
            inputs.files.add(ref.path)
            if ref.field.startswith(GENERATOR_FIELDS):
                inputs.data.add(ref.path)
            else:
                inputs.parsed.add(ref.path)
                own.parsed.append(ref.path)
            if not self.tree.is_file(ref.path):
                what = "is not a regular file" if self.tree.abspath(ref.path).exists() else "does not exist"
                inputs.errors.append(BuildError(f"'{ref.value}' ({ref.field}) {what}", kust.file, ref.line))
            elif ref.field in PLUGIN_FIELDS:
                try:
                    check_plugin_file(self.tree, ref.path, kust.file, ref.line)
                except BuildError as exc:
                    inputs.errors.append(exc)
        return own

    def _walk(self, start: str) -> None:
        """Tarjan's algorithm from `start`, without recursion: each strongly connected component is
        settled (memoised) once every folder it includes is."""
        index: dict[str, int] = {start: 0}
        low: dict[str, int] = {start: 0}
        stack, on_stack = [start], {start}
        work: list[tuple[str, int]] = [(start, 0)]
        while work:
            d, i = work[-1]
            children = self.own(d).children
            if i < len(children):
                work[-1] = (d, i + 1)
                child = children[i][0]
                if child in self._memo:
                    continue
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, 0))
                elif child in on_stack:
                    low[d] = min(low[d], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[d])
            if low[d] == index[d]:
                members = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    members.append(m)
                    if m == d:
                        break
                self._settle(members)

    def _settle(self, members: list[str]) -> None:
        """Memoise one component: the union of what its members read and what the folders they
        include read; a cycle error for each member when the component is a cycle."""
        scc = frozenset(members)
        combined = Inputs()
        for m in sorted(members):
            combined.merge(self.own(m).inputs)
        height = 1
        for m in sorted(members):
            for child, kfile, line in self.own(m).children:
                if child in scc:
                    continue
                combined.merge(self._memo[child])
                if self._height[child] + 1 > height:
                    height = self._height[child] + 1
                    if height == MAX_DEPTH + 1:
                        combined.errors.insert(0, BuildError(
                            f"kustomization nesting deeper than {MAX_DEPTH}, through '{child}'", kfile, line))
        cyclic = len(members) > 1 or any(c == members[0] for c, _f, _l in self.own(members[0]).children)
        for m in members:
            self._scc[m] = scc
            self._height[m] = height
            if cyclic:
                mine = combined.copy()
                mine.errors.insert(0, self._cycle_error(m, scc))
                self._memo[m] = mine
            else:
                self._memo[m] = combined

    def _cycle_error(self, start: str, scc: frozenset[str]) -> BuildError:
        """The shortest cycle from `start` back to itself, at the entry that closes it."""
        parent: dict[str, str] = {}
        queue, seen = [start], {start}
        for d in queue:
            for child, kfile, line in self.own(d).children:
                if child == start:
                    chain = [d]
                    while chain[-1] != start:
                        chain.append(parent[chain[-1]])
                    cycle = [*reversed(chain), start]
                    return BuildError(f"cycle: {' → '.join(cycle)} (a kustomization cannot include itself)",
                                      kfile, line)
                if child in scc and child not in seen:
                    seen.add(child)
                    parent[child] = d
                    queue.append(child)
        return BuildError(f"cycle through '{start}'", self.tree.kustomization_file(start) or start)

    def entry(self, path: str, dirs: set[str]) -> tuple[str, int] | None:
        """The first entry (kustomization file, line) among these folders' kustomizations that names `path`."""
        for d in sorted(dirs):
            own = self._own.get(d)
            if own is not None and path in own.entries:
                return own.entries[path]
        return None

    def weight(self, directory: str, cost: Callable[[str], int], memo: dict[str, int],
               _path: frozenset[str] = frozenset()) -> int:
        """What `kustomize build directory` holds: cost(file) of each file it parses, counted each time
        the build reads it (a base that two included folders include is built twice). `memo` is the
        caller's, for one cost function."""
        if directory in memo:
            return memo[directory]
        if directory in _path:
            return 0
        own = self.own(directory)
        total = sum(cost(f) for f in own.parsed if self.tree.is_file(f))
        for child, _f, _l in own.children:
            total += self.weight(child, cost, memo, _path | {directory})
        memo[directory] = total
        return total

    def _plugin_config_files(self, kust, ref, inputs: Inputs) -> None:
        """Files named inside generator/transformer configs, which Kustomize resolves relative to
        the kustomization that *uses* the config (not the one that defines it)."""
        configs: list = []
        try:
            if ref.path is None:
                configs = load_data(ref.value, kust.file) if ref.value else []
            elif self.tree.is_dir(ref.path):
                for f in sorted(self._files_below(ref.path)):
                    if f.endswith(YAML_SUFFIXES) and posixpath.basename(f) not in KUSTOMIZATION_NAMES and self.tree.is_file(f):
                        configs.extend(d.data for d in self.tree.docs(f))
                try:  # the folder's resources are plugin configs too: refused as a file's would be
                    check_plugin_configs(configs, kust.file, ref.line)
                except BuildError as exc:
                    inputs.errors.append(exc)
            elif self.tree.is_file(ref.path):
                configs = [d.data for d in self.tree.docs(ref.path)]
        except YamlError:
            return
        for cfg in configs:
            if not isinstance(cfg, dict):
                continue
            names = [(p, True) for _f, p, _s in generator_paths(cfg)]
            for key in ("path", "paths"):
                val = cfg.get(key)
                names.extend((v, False) for v in ([val] if isinstance(val, str) else
                                                  [v for v in val or [] if isinstance(v, str)]))
            for name, is_data in names:
                try:
                    rel = self.tree.resolve(kust.dir, name)
                except PathEscape as exc:
                    inputs.errors.append(BuildError(str(exc), kust.file, ref.line))
                    continue
                inputs.files.add(rel)
                (inputs.data if is_data else inputs.parsed).add(rel)

    def _files_below(self, directory: str) -> set[str]:
        """The files the kustomizations of `directory` and of the folders they include name."""
        out: set[str] = set()
        todo, seen = [directory], {directory}
        while todo:
            own = self.own(todo.pop())
            out |= own.inputs.files
            for child, _f, _l in own.children:
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        return out

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
                inputs.parsed.add(res)
        return inputs

    def path_weight(self, directory: str, cost: Callable[[str], int], memo: dict[str, int]) -> int:
        """`weight()` of a Flux path: its kustomization, or the one Flux generates."""
        if self.tree.kustomization_file(directory):
            return self.weight(directory, cost, memo)
        return sum(self.weight(res, cost, memo) if self.tree.is_dir(res) else cost(res)
                   for res in generated_resources(self.tree, directory))

    def flux_inputs(self, path: str, components: list[str], sources: list[str], flux_file: str | None = None,
                    component_lines: list[int | None] | None = None) -> Inputs:
        """A Flux Kustomization's inputs: its path, its components (relative to the path), and
        the files defining its substituteFrom ConfigMaps/Secrets. A component that cannot be built is
        an error at its line of the Flux Kustomization (`flux_file`, `component_lines`)."""
        inputs = Inputs()
        inputs.merge(self.path_inputs(path))
        for i, comp in enumerate(components):
            line = component_lines[i] if component_lines and i < len(component_lines) else None
            try:
                rel = self.tree.resolve(path, comp)
            except PathEscape as exc:
                inputs.errors.append(BuildError(str(exc), flux_file or path, line))
                continue
            if not self.tree.kustomization_file(rel):
                inputs.dirs.add(rel)
                inputs.errors.append(BuildError(f"component '{comp}' is not a folder with a kustomization file",
                                                flux_file or path, line))
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
