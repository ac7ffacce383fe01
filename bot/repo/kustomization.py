"""A kustomization file read as data: every path it names, and everything we refuse to build.

The list of path-bearing fields follows Kustomize's `types.Kustomization`; each reference keeps
the line it is written on, so a refusal or a build error can point at it.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from bot.model import type_name
from bot.repo.tree import PathEscape, RepoTree
from bot.yamlpos import YamlDoc, YamlError, load_data

BUILTIN_PLUGIN_KINDS = frozenset({
    "AnnotationsTransformer", "ConfigMapGenerator", "HashTransformer", "IAMPolicyGenerator",
    "ImageTagTransformer", "LabelTransformer", "LegacyOrderTransformer", "NamespaceTransformer",
    "PatchJson6902Transformer", "PatchStrategicMergeTransformer", "PatchTransformer",
    "PrefixSuffixTransformer", "PrefixTransformer", "SuffixTransformer", "ReplacementTransformer",
    "ReplicaCountTransformer", "SecretGenerator", "SortOrderTransformer", "ValueAddTransformer",
})
FUNCTION_ANNOTATIONS = ("config.kubernetes.io/function", "config.k8s.io/function")
HELM_FIELDS = ("helmCharts", "helmChartInflationGenerator", "helmGlobals")
_REMOTE = re.compile(
    r"^(?:[a-z][a-z0-9+.-]*://|git@|git::|gh:|github\.com[/:]|gitlab\.com[/:]|bitbucket\.org[/:])"
    r"|\?(?:ref|version|timeout|submodules)=|\.git(?://|$)",
    re.IGNORECASE,
)


class BuildError(Exception):
    """A target that cannot be built, with the source position responsible where known."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: " if self.file and self.line else (f"{self.file}: " if self.file else "")
        return f"{where}{self.message}"


@dataclass(frozen=True)
class Ref:
    """A path named by a kustomization field. `path` is repository-relative; None when inline or
    remote. `segs` is where the entry sits in the kustomization (a scratch copy rewrites it there);
    `remote`: a URL or repository that Kustomize fetches (see `is_remote_entry`)."""

    field: str
    value: str
    path: str | None
    line: int
    expect: str  # "any" (file or kustomization dir), "file", "dir"
    segs: tuple = ()
    remote: bool = False


@dataclass
class Kustomization:
    dir: str
    file: str
    data: dict[str, Any]
    doc: YamlDoc
    refs: list[Ref] = field(default_factory=list)

    def line_of(self, *segments: Any) -> int:
        span = self.doc.span(segments)
        return span[0] if span else self.doc.line

    def entries(self, fld: str) -> list[Any]:
        """The list a field holds (empty when absent); BuildError at its line when it is not a list,
        as `kustomize build` refuses it too."""
        value = self.data.get(fld)
        if value is None:
            return []
        if not isinstance(value, list):
            raise BuildError(f"`{fld}` must be a list, not {type_name(value)}", self.file, self.line_of(fld))
        return value


REPOSITORY_FIELDS = ("resources", "bases", "components")


def is_remote(value: str) -> bool:
    """Whether Kustomize reads this `resources:`/`components:` entry from the network: a URL, or a
    repository reference (`github.com/org/repo//path?ref=v1`, `git@...`, `git::...`, `?ref=`)."""
    return bool(_REMOTE.search(value.strip()))


def is_remote_entry(fld: str, value: str) -> bool:
    """Whether an entry of field `fld` is remote: for `resources`, `bases` and `components` any
    repository reference or URL (`is_remote`); for the fields naming a file (patches, generator
    files, configurations, ...) only an http(s) URL, which Kustomize's loader downloads (anything else
    there is a local path to Kustomize too)."""
    if fld.split(".", 1)[0] in REPOSITORY_FIELDS:
        return is_remote(value)
    return value.strip().lower().startswith(("http://", "https://"))


def _inline(value: str) -> bool:
    """Kustomize treats a patch/config entry holding YAML (a newline or a mapping) as inline."""
    return "\n" in value or bool(re.match(r"^\s*(apiVersion|kind|metadata)\s*:", value)) or value.lstrip().startswith("-")


def generator_paths(gen: dict[str, Any]) -> list[tuple[str, str, tuple]]:
    """(field, path, segments) of the files a generator reads; entries of the wrong type are left to
    `kustomize build`, which refuses them with its own message."""
    out: list[tuple[str, str, tuple]] = []
    files, envs = gen.get("files"), gen.get("envs")
    for i, item in enumerate(files if isinstance(files, list) else []):
        if isinstance(item, str):
            out.append(("files", item.split("=", 1)[1] if "=" in item else item, ("files", i)))
    for i, item in enumerate(envs if isinstance(envs, list) else []):
        if isinstance(item, str):
            out.append(("envs", item, ("envs", i)))
    if isinstance(gen.get("env"), str):
        out.append(("env", gen["env"], ("env",)))
    return out


def load_kustomization(tree: RepoTree, directory: str) -> Kustomization:
    """Parse the kustomization of `directory` and resolve every path it names; once per tree
    (discovery, provenance and the rules read the same ones). Callers must not change it.

    Raises BuildError at the offending line for anything we refuse to build: absolute paths, paths
    or symlinks leaving the root, Helm chart inflation and exec/KRM plugins. Remote entries are kept
    as refs with `remote=True` (no path): the renderer fetches them, or says they were not checked
    (bot.fetch.resources).
    """
    key = ("kustomization", directory)
    known = tree.memo.get(key)
    if known is None:
        try:
            known = _load_kustomization(tree, directory)
        except BuildError as exc:
            known = (exc.message, exc.file, exc.line)  # not the exception: its traceback holds the parse
        tree.memo[key] = known
    if isinstance(known, tuple):
        raise BuildError(*known)
    return known  # type: ignore[return-value]


def _load_kustomization(tree: RepoTree, directory: str) -> Kustomization:
    kfile = tree.kustomization_file(directory)
    if kfile is None:
        raise BuildError(f"no kustomization file in {directory}", directory)
    try:
        docs = tree.docs(kfile)
    except YamlError as exc:
        raise BuildError(exc.message, kfile, exc.line) from None
    if len(docs) != 1 or not isinstance(docs[0].data, dict):
        raise BuildError("a kustomization file must hold exactly one YAML mapping", kfile, docs[0].line if docs else 1)
    doc = docs[0]
    kust = Kustomization(directory, kfile, doc.data, doc)
    data = doc.data

    for name in HELM_FIELDS:
        if data.get(name):
            raise BuildError(f"`{name}` (Helm chart inflation) is not rendered: it runs helm and may fetch charts",
                             kfile, kust.line_of(name))

    def add(fld: str, value: Any, segs: tuple, expect: str, inline_ok: bool = False) -> None:
        line = kust.line_of(*segs)
        if not isinstance(value, str):
            if isinstance(value, dict) and inline_ok:
                kust.refs.append(Ref(fld, "", None, line, expect, segs))
                return
            raise BuildError(f"`{fld}` entry must be a string", kfile, line)
        if inline_ok and _inline(value):
            kust.refs.append(Ref(fld, value, None, line, expect, segs))
            return
        if is_remote_entry(fld, value):
            kust.refs.append(Ref(fld, value, None, line, expect, segs, remote=True))
            return
        try:
            rel = tree.resolve(directory, value)
        except PathEscape as exc:
            raise BuildError(str(exc), kfile, line) from None
        kust.refs.append(Ref(fld, value, rel, line, expect, segs))

    for fld in ("resources", "bases"):
        for i, value in enumerate(kust.entries(fld)):
            add(fld, value, (fld, i), "any")
    for i, value in enumerate(kust.entries("components")):
        add("components", value, ("components", i), "dir")
    for i, patch in enumerate(kust.entries("patches")):
        if isinstance(patch, dict) and isinstance(patch.get("path"), str):
            add("patches", patch["path"], ("patches", i, "path"), "file")
    for i, patch in enumerate(kust.entries("patchesStrategicMerge")):
        add("patchesStrategicMerge", patch, ("patchesStrategicMerge", i), "file", inline_ok=True)
    for i, patch in enumerate(kust.entries("patchesJson6902")):
        if isinstance(patch, dict) and isinstance(patch.get("path"), str):
            add("patchesJson6902", patch["path"], ("patchesJson6902", i, "path"), "file")
    for gen_field in ("configMapGenerator", "secretGenerator"):
        for i, gen in enumerate(kust.entries(gen_field)):
            if isinstance(gen, dict):
                for sub, value, segs in generator_paths(gen):
                    add(f"{gen_field}.{sub}", value, (gen_field, i) + segs, "file")
    for fld in ("configurations", "crds"):
        for i, value in enumerate(kust.entries(fld)):
            add(fld, value, (fld, i), "file")
    openapi = data.get("openapi")
    if isinstance(openapi, dict) and isinstance(openapi.get("path"), str):
        add("openapi", openapi["path"], ("openapi", "path"), "file")
    for i, rep in enumerate(kust.entries("replacements")):
        if isinstance(rep, dict) and isinstance(rep.get("path"), str):
            add("replacements", rep["path"], ("replacements", i, "path"), "file")
    for fld in ("generators", "transformers", "validators"):
        for i, value in enumerate(kust.entries(fld)):
            add(fld, value, (fld, i), "any", inline_ok=True)
            ref = kust.refs[-1]
            if ref.path is None and not ref.remote:
                _check_plugin_config(value if isinstance(value, str) else "", kfile, ref.line, inline=value)
    return kust


def _check_plugin_config(text: str, file: str, line: int, inline: Any = None, docs: list | None = None) -> None:
    """Refuse generator/transformer configs that name an exec or KRM function plugin."""
    if docs is None:
        if isinstance(inline, dict):
            docs = [inline]
        else:
            try:
                docs = load_data(text, file)
            except YamlError as exc:
                raise BuildError(exc.message, file, line) from None
    for cfg in docs:
        if not isinstance(cfg, dict):
            continue
        ann = (cfg.get("metadata") or {}).get("annotations") or {}
        if isinstance(ann, dict) and any(a in ann for a in FUNCTION_ANNOTATIONS):
            raise BuildError("KRM function plugins are not run", file, line)
        if cfg.get("kind") and cfg.get("kind") not in BUILTIN_PLUGIN_KINDS:
            raise BuildError(f"plugin kind {cfg.get('kind')!r} is not a Kustomize builtin; plugins are not run",
                             file, line)


def check_plugin_file(tree: RepoTree, rel: str, kfile: str, line: int) -> None:
    """A transformer/generator config file must hold only builtin plugin configs."""
    try:
        docs = [d.data for d in tree.docs(rel)]
    except YamlError as exc:
        raise BuildError(exc.message, rel, exc.line) from None
    check_plugin_configs(docs, kfile, line)


def check_plugin_configs(docs: list[Any], kfile: str, line: int) -> None:
    """Plugin configs read from anywhere (a file, the resources of a folder a `transformers:` entry
    names) must be builtin ones; BuildError at the entry's line otherwise."""
    _check_plugin_config("", kfile, line, docs=docs)


# Where kustomize's error sentence says it was: each entry it went through (`accumulating resources
# from '../base'`, `for path 'apps/x'`), then the field it names, if any.
_THROUGH = re.compile(r"(?:accumulating|merging) (?:resources|components) from '(?P<entry>[^']+)'"
                      r"|(?:recursed accumulation of path|for path|evalsymlink failure on|couldn't make target "
                      r"for path|in directory) '(?P<path>[^']+)'")
_FIELD_PATTERNS = (
    (re.compile(r'unknown field "([^"]+)"'), None),
    (re.compile(r"Go struct field \w+\.(\w+)"), None),
    (re.compile(r"merge patch|JSON patch|target for patch|json6902|no matches for Id", re.I),
     ("patches", "patchesStrategicMerge", "patchesJson6902")),
    (re.compile(r"\breplacement\b|nothing selected by"), ("replacements",)),
)
_LITERAL = re.compile(r"invalid literal source (.+?), expected")


def locate_error(tree: RepoTree, directory: str, message: str) -> tuple[str, int | None]:
    """The kustomization file and line a `kustomize build directory` error is about: the deepest
    entry its sentence goes through (`accumulating resources from 'x.yaml'` → that `resources:`
    entry), or the field it names in the kustomization it reached (an unknown field, a field of the
    wrong type, a generator literal, the patches or replacements); the line is None when the
    sentence names neither. Paths in the sentence are repository-relative (bot.render.kustomize)."""
    try:
        kust = load_kustomization(tree, directory)
    except BuildError:
        return tree.kustomization_file(directory) or directory, None
    file, line, rest = kust.file, None, 0
    for m in _THROUGH.finditer(message):
        entry, path = m.group("entry"), m.group("path")
        wanted = None
        if entry is not None:
            try:
                wanted = tree.resolve(kust.dir, entry)
            except PathEscape:
                continue
        elif path is not None:
            wanted = posixpath.normpath(path)
        ref = next((r for r in kust.refs if r.path is not None and r.path == wanted), None)
        if ref is None:
            continue
        file, line, rest = kust.file, ref.line, m.end()
        if ref.path is not None and ref.expect != "file" and tree.kustomization_file(ref.path):
            try:
                kust = load_kustomization(tree, ref.path)
            except BuildError:
                break
    field_line = _field_line(kust, message[rest:])
    return (kust.file, field_line) if field_line else (file, line)


def _field_line(kust: Kustomization, message: str) -> int | None:
    literal = _LITERAL.search(message)
    if literal:
        for gen_field in ("configMapGenerator", "secretGenerator"):
            for i, gen in enumerate(kust.data.get(gen_field) or []):
                literals = gen.get("literals") if isinstance(gen, dict) else None
                for j, value in enumerate(literals if isinstance(literals, list) else []):
                    if value == literal.group(1):
                        return kust.line_of(gen_field, i, "literals", j)
    for pattern, fields in _FIELD_PATTERNS:
        m = pattern.search(message)
        if not m:
            continue
        for name in fields or (m.group(1),):
            if name in kust.data:
                return kust.line_of(name)
    return None
