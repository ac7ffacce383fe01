"""Flux `postBuild` variable substitution, emulated offline on rendered resource texts.

kustomize-controller serialises each rendered resource to YAML, runs Flux's envsubst fork
(github.com/fluxcd/pkg/envsubst) over the text and parses it back, so a value can change type
(`replicas: ${REPLICAS}` becomes an int). This module mirrors that parser: only `${...}` is an
expression (`$var` stays text), `$$` escapes a dollar, and defaults may nest `${...}`.

Where Flux would substitute an empty string (unset variable, no default), we deliberately leave
the expression as written and report it: a reviewer should see `${VAR}`, not a silently blank field.
Values from Secrets are used for the substitution but never appear in any message or repr.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.model import secret_data
from bot.yamlpos import YamlError, load_data

# Bounds for untrusted input (PR content).
MAX_TEXT_CHARS = 4 * 1024 * 1024
MAX_OUTPUT_CHARS = 8 * 1024 * 1024
MAX_SUBSTITUTIONS = 10_000  # expressions evaluated per text, nested ones included
MAX_NESTING = 16
MAX_PATTERN_VALUE_CHARS = 4096  # trim functions are quadratic in the value length
MAX_REFS = 64
MAX_VARS = 10_000

DISABLED_KEY = "kustomize.toolkit.fluxcd.io/substitute"
VAR_NAME = re.compile(r"^[_A-Za-z][_A-Za-z0-9]*$")  # Flux's ^[_[:alpha:]][_[:alpha:][:digit:]]*$ (ASCII)
_SOPS_VALUE = re.compile(r"^ENC\[[A-Za-z0-9_]+,.*\]$", re.S)
_DEFAULT_OPS = frozenset({"=", ":=", ":-", ":?", ":+"})

Lookup = Callable[[str, str, str], "dict[str, Any] | None"]


@dataclass(frozen=True)
class Problem:
    """Something in `postBuild` that makes Flux fail or that we cannot emulate; `ref` names the field."""

    message: str
    ref: str = ""


@dataclass(frozen=True)
class Unresolved:
    """An expression left as written.

    `reason`: `unset` (no value, no default), `encrypted` (SOPS value, unknown offline), `syntax`
    (Flux fails the resource: bad substitution), `limit` (input over our bounds), `inactive` (Flux
    runs no substitution at all because no variable is defined). `doc` is the resource index.
    """

    name: str
    line: int
    reason: str = "unset"
    doc: int | None = None


@dataclass(frozen=True)
class Use:
    """One substitution: the line of `${` in the input text, the variable, where its value came from."""

    line: int
    name: str
    source: str  # 'substitute' | 'substituteFrom:<Kind>/<name>' | 'default'
    sensitive: bool = False


@dataclass
class TextResult:
    text: str
    unresolved: list[Unresolved] = field(default_factory=list)
    uses: list[Use] = field(default_factory=list)
    skipped: bool = False  # the resource carries the `substitute: disabled` label or annotation


class Vars(dict):
    """Variable values (dict[str, str]) that also know each value's source and which are encrypted."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.sources: dict[str, str] = {}
        self.encrypted: dict[str, str] = {}

    def put(self, name: str, value: str, source: str) -> None:
        self[name] = value
        self.sources[name] = source
        self.encrypted.pop(name, None)

    def put_encrypted(self, name: str, source: str) -> None:
        self.pop(name, None)
        self.sources[name] = source
        self.encrypted[name] = source

    def source(self, name: str) -> str:
        return self.sources.get(name, "substitute")

    def __repr__(self) -> str:
        shown = {k: _mask(v) if _sensitive(self.source(k)) else v for k, v in self.items()}
        return f"Vars({shown!r}, encrypted={sorted(self.encrypted)!r})"


def _sensitive(source: str) -> bool:
    return source.startswith("substituteFrom:Secret/")


def _mask(value: str) -> str:
    return f"<secret {value[:4]}… len={len(value)}>" if len(value) > 8 else f"<secret len={len(value)}>"


# --- collecting variables ------------------------------------------------------------------------


def collect_vars(
    postbuild: Mapping[str, Any] | None, lookup: Lookup, namespace: str = ""
) -> tuple[Vars, list[Problem]]:
    """Resolve `substituteFrom` in order, then `substitute`; later entries override earlier ones.

    `lookup(kind, name, namespace)` returns the referenced manifest (a dict) or None. Flux reads refs
    from the Kustomization's own namespace, which the caller passes as `namespace`.
    """
    out = Vars()
    problems: list[Problem] = []
    if postbuild is None:
        return out, problems
    if not isinstance(postbuild, Mapping):
        return out, [Problem("postBuild is not a mapping", "postBuild")]

    refs = postbuild.get("substituteFrom") or []
    if not isinstance(refs, list):
        problems.append(Problem("substituteFrom is not a list", "postBuild.substituteFrom"))
        refs = []
    if len(refs) > MAX_REFS:
        problems.append(
            Problem(
                f"more than {MAX_REFS} substituteFrom entries; the rest ignored", "postBuild.substituteFrom"
            )
        )
    for i, ref in enumerate(refs[:MAX_REFS]):
        problems += _load_ref(out, ref, f"postBuild.substituteFrom[{i}]", lookup, namespace)

    inline = postbuild.get("substitute") or {}
    if not isinstance(inline, Mapping):
        problems.append(Problem("substitute is not a mapping", "postBuild.substitute"))
        inline = {}
    for key, value in inline.items():
        where = f'postBuild.substitute["{key}"]'
        if not isinstance(value, str):
            problems.append(
                Problem(
                    f"value of {key} is not a string; the Kustomization API accepts only quoted strings",
                    where,
                )
            )
            value = _scalar_text(value)
        out.put(str(key), value.replace("\n", ""), "substitute")

    for key in list(out.sources):
        if not VAR_NAME.match(key):
            src = out.sources[key]
            where = f'postBuild.substitute["{key}"]' if src == "substitute" else src
            problems.append(
                Problem(
                    f"variable name {key!r} is invalid (must match "
                    f"{VAR_NAME.pattern}); Flux fails the whole substitution",
                    where,
                )
            )
            out.pop(key, None)
            out.encrypted.pop(key, None)
            out.sources.pop(key, None)
    if len(out) + len(out.encrypted) > MAX_VARS:
        problems.append(Problem(f"more than {MAX_VARS} variables", "postBuild"))
    return out, problems


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _load_ref(out: Vars, ref: Any, where: str, lookup: Lookup, namespace: str) -> list[Problem]:
    if not isinstance(ref, Mapping):
        return [Problem("entry is not a mapping", where)]
    kind, name, optional = ref.get("kind"), ref.get("name"), ref.get("optional") is True
    if kind not in ("ConfigMap", "Secret"):
        return [Problem(f"kind {kind!r} is not ConfigMap or Secret; Flux ignores this entry", where)]
    if not isinstance(name, str) or not name:
        return [Problem("entry has no name", where)]
    source = f"substituteFrom:{kind}/{name}"
    obj = lookup(kind, name, namespace)
    if obj is None:
        if optional:
            return []
        return [
            Problem(
                f"{kind}/{name} is not defined in the repository; Flux fails the reconciliation "
                "unless it exists in the cluster or the entry is optional: true",
                where,
            )
        ]
    if not isinstance(obj, Mapping):
        return [Problem(f"{kind}/{name} is not a mapping", where)]
    problems: list[Problem] = []
    sops = "sops" in obj
    entries: list[tuple[str, Any, bool]] = [(k, v, kind == "Secret") for k, v in _items(obj.get("data"))]
    if kind == "Secret":
        entries += [(k, v, False) for k, v in _items(obj.get("stringData"))]  # the API server merges it last
    for key, value, encoded in entries:
        key = str(key)
        if not isinstance(value, str):
            problems.append(Problem(f"{kind}/{name} key {key} is not a string", where))
            continue
        if sops or _SOPS_VALUE.match(value.strip()):
            out.put_encrypted(key, source)
            continue
        if encoded:
            decoded = secret_data(value)
            if decoded is None:
                problems.append(Problem(f"{kind}/{name} key {key} is not valid base64", where))
                continue
            value = decoded
        out.put(key, value.replace("\n", ""), source)
    return problems


def _items(section: Any) -> list[tuple[Any, Any]]:
    return list(section.items()) if isinstance(section, Mapping) else []


# --- parsing (mirrors fluxcd/pkg/envsubst/parse) -------------------------------------------------


class _SyntaxError(Exception):
    def __init__(self, message: str, pos: int, name: str = ""):
        super().__init__(message)
        self.pos, self.name = pos, name


class _LimitError(Exception):
    pass


@dataclass
class _Func:
    name: str  # the variable
    op: str  # '' for ${var}; ':=', '#', '//', ':' ...
    args: list[_Func | str]
    start: int
    end: int  # offset just past the closing brace


def _is_ident(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


class _Parser:
    def __init__(self, text: str):
        self.s = text
        self.n = len(text)

    def peek(self, pos: int) -> str:
        return self.s[pos] if pos < self.n else ""

    def func(self, start: int, depth: int) -> _Func:
        """Parse after `${` at `start`; returns the node with `end` past its `}`."""
        if depth > MAX_NESTING:
            raise _LimitError(f"expressions nested deeper than {MAX_NESTING}")
        pos = start + 2
        if self.peek(pos) == "#":
            pos += 1
            name, pos = self.ident(pos, start)
            return _Func(name, "#len", [], start, self.rbrack(pos, start, name))
        name, pos = self.ident(pos, start)
        ch = self.peek(pos)
        if ch == ":":
            if self.peek(pos + 1) in ("=", "-", "?", "+"):
                return self.default(name, ":" + self.s[pos + 1], pos + 2, start, depth)
            return self.substr(name, pos + 1, start, depth)
        if ch == "=":
            return self.default(name, "=", pos + 1, start, depth)
        if ch in (",", "^"):
            end = pos
            while end < self.n and end - pos < 2 and self.s[end] in ",^":
                end += 1
            return _Func(name, self.s[pos:end], [], start, self.rbrack(end, start, name))
        if ch == "/":
            return self.replace(name, pos, start, depth)
        if ch in ("#", "%"):
            op = ch * 2 if self.peek(pos + 1) == ch else ch
            arg, end = self.param(pos + len(op), "}", start, depth, name)
            return _Func(name, op, [arg], start, self.rbrack(end, start, name))
        if ch == "}":
            return _Func(name, "", [], start, pos + 1)
        raise _SyntaxError("missing closing brace", start, name)

    def ident(self, pos: int, start: int) -> tuple[str, int]:
        end = pos
        while end < self.n and _is_ident(self.s[end]):
            end += 1
        if end == pos:
            raise _SyntaxError("unable to parse variable name", start)
        return self.s[pos:end], end

    def rbrack(self, pos: int, start: int, name: str) -> int:
        if self.peek(pos) != "}":
            raise _SyntaxError("bad substitution", start, name)
        return pos + 1

    def param(
        self, pos: int, stops: str, start: int, depth: int, name: str, escapes: bool = False
    ) -> tuple[_Func | str, int]:
        """One argument node: a nested `${...}` or a text run up to a stop char or the next `${`."""
        if self.s.startswith("${", pos):
            node = self.func(pos, depth + 1)
            return node, node.end
        buf: list[str] = []
        end = pos
        while end < self.n:
            ch = self.s[end]
            if ch in stops or self.s.startswith("${", end):
                break
            if escapes and ch == "\\" and self.peek(end + 1) in ("/", "\\"):
                buf.append(self.s[end + 1])
                end += 2
                continue
            if escapes and ch == "$" and self.peek(end + 1) == "$":
                buf.append("$")
                end += 2
                continue
            buf.append(ch)
            end += 1
        if end == pos or end >= self.n:
            raise _SyntaxError("unable to parse substitution within function", start, name)
        return "".join(buf), end

    def default(self, name: str, op: str, pos: int, start: int, depth: int) -> _Func:
        args: list[_Func | str] = []
        while self.peek(pos) != "}":
            arg, pos = self.param(pos, "}", start, depth, name)
            args.append(arg)
        return _Func(name, op, args, start, pos + 1)

    def substr(self, name: str, pos: int, start: int, depth: int) -> _Func:
        first, pos = self.param(pos, ":}", start, depth, name)
        if self.peek(pos) == "}":
            return _Func(name, ":", [first], start, pos + 1)
        while self.peek(pos) == ":":
            pos += 1
        second, pos = self.param(pos, "}", start, depth, name)
        return _Func(name, ":", [first, second], start, self.rbrack(pos, start, name))

    def replace(self, name: str, pos: int, start: int, depth: int) -> _Func:
        op = "/"
        if self.peek(pos + 1) in ("/", "#", "%"):
            op += self.s[pos + 1]
        pos += len(op)
        if self.peek(pos) == "/":
            args: list[_Func | str] = [""]
        else:
            pattern, pos = self.param(pos, "/", start, depth, name, escapes=True)
            args = [pattern]
        if self.peek(pos) != "/":
            raise _SyntaxError("bad substitution", start, name)
        while self.peek(pos) == "/":
            pos += 1
        if self.peek(pos) == "}":
            return _Func(name, op, args, start, pos + 1)
        repl, pos = self.param(pos, "}", start, depth, name, escapes=True)
        args.append(repl)
        return _Func(name, op, args, start, self.rbrack(pos, start, name))


# --- evaluation (mirrors fluxcd/pkg/envsubst funcs) ----------------------------------------------


class _Missing(Exception):
    def __init__(self, name: str, pos: int, reason: str):
        super().__init__(name)
        self.name, self.pos, self.reason = name, pos, reason


class _Evaluator:
    def __init__(self, values: Mapping[str, str], encrypted: Mapping[str, str], source: Callable[[str], str]):
        self.values = values
        self.encrypted = encrypted
        self.source = source
        self.count = 0

    def eval(self, node: _Func | str, uses: list[tuple[int, str, str]]) -> str:
        if isinstance(node, str):
            return node
        self.count += 1
        if self.count > MAX_SUBSTITUTIONS:
            raise _LimitError(f"more than {MAX_SUBSTITUTIONS} substitutions")
        if node.name in self.encrypted:
            raise _Missing(node.name, node.start, "encrypted")
        value = self.values.get(node.name)
        if value is not None:
            value = value.replace("\n", "")
        if node.op in _DEFAULT_OPS:
            if value:  # the fork's toDefault: an empty value also takes the default
                uses.append((node.start, node.name, self.source(node.name)))
                return value
            default = "".join(self.eval(a, uses) for a in node.args)
            uses.append((node.start, node.name, "default"))
            return default
        if value is None:
            raise _Missing(node.name, node.start, "unset")
        args = [self.eval(a, uses) for a in node.args]
        uses.append((node.start, node.name, self.source(node.name)))
        return _apply(node.op, value, args)


def _apply(op: str, s: str, args: list[str]) -> str:
    if op == "#len":
        return str(len(s.encode()))
    if op == ",":
        return s[:1].lower() + s[1:]
    if op == ",,":
        return s.lower()
    if op == "^":
        return s[:1].upper() + s[1:]
    if op == "^^":
        return s.upper()
    if op == ":":
        return _substr(s, args)
    if op in ("#", "##", "%", "%%"):
        if len(s) > MAX_PATTERN_VALUE_CHARS:
            raise _LimitError(f"value longer than {MAX_PATTERN_VALUE_CHARS} characters for a pattern trim")
        return _trim(op, s, args[0] if args else "")
    if op in ("/", "//"):
        if not args:
            return s
        return s.replace(args[0], args[1] if len(args) > 1 else "", 1 if op == "/" else -1)
    if op == "/#":
        return args[1] + s[len(args[0]) :] if len(args) == 2 and s.startswith(args[0]) else s
    if op == "/%":
        if len(args) == 2 and s.endswith(args[0]):
            return s[: len(s) - len(args[0])] + args[1]
        return s
    return s


_INT = re.compile(r"^[+-]?[0-9]+$")


def _substr(s: str, args: list[str]) -> str:
    """Go's toSubstr works on bytes; so do we."""
    b = s.encode()
    if not args or not _INT.match(args[0]):
        return s
    pos = int(args[0])
    if pos < 0:
        pos = max(len(b) + pos, 0)
    if len(args) == 1:
        return b[pos:].decode("utf-8", "replace") if pos < len(b) else ""
    if not _INT.match(args[1]):
        return s
    length = int(args[1])
    if length < 0:
        end = len(b) + length
        return "" if end < pos else b[pos:end].decode("utf-8", "replace")
    if pos + length >= len(b):
        return b[pos:].decode("utf-8", "replace") if pos < len(b) else ""
    return b[pos : pos + length].decode("utf-8", "replace")


def _glob(pattern: str) -> re.Pattern[str] | None:
    """The fork's path.Match: `*` and `?` also match '/', `[^...]` negates, `\\` escapes; None if malformed."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            if i + 1 >= len(pattern):
                return None
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] == "^" else i + 1)
            body = pattern[i + 1 : end] if end > 0 else ""
            neg = body.startswith("^")
            body = body[1:] if neg else body
            if end < 0 or not body or body.startswith("-") or body.endswith("-"):
                return None
            cls = "".join("-" if c == "-" else re.escape(c) for c in body)
            out.append(f"[{'^' if neg else ''}{cls}]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.S)


def _trim(op: str, s: str, pattern: str) -> str:
    if op.startswith("%"):
        return _trim("#" * len(op), s[::-1], pattern[::-1])[::-1]  # the fork reverses the pattern text too
    rx = _glob(pattern)
    if rx is None:
        return s
    lengths = range(len(s), 0, -1)
    if op == "#":
        lengths = range(1, len(s) + 1)
    for n in lengths:
        if rx.fullmatch(s, 0, n):
            return s[n:]
    return s


# --- substitution over texts ---------------------------------------------------------------------


def trace_text(text: str, vars: Mapping[str, str]) -> TextResult:
    """Substitute `text` and record every use; unresolved expressions stay as written."""
    if len(text) > MAX_TEXT_CHARS:
        return TextResult(text, [Unresolved("", 1, "limit")])
    encrypted = getattr(vars, "encrypted", {})
    source = vars.source if isinstance(vars, Vars) else (lambda _n: "substitute")
    newlines = [m.start() for m in re.finditer("\n", text)] if "${" in text else []

    def line(pos: int) -> int:
        return bisect.bisect_left(newlines, pos) + 1

    parser = _Parser(text)
    ev = _Evaluator(vars, encrypted, source)
    out: list[str] = []
    size = 0
    unresolved: dict[tuple[str, str], Unresolved] = {}
    uses: list[Use] = []
    i = 0
    n = len(text)
    try:
        while i < n:
            j = text.find("$", i)
            if j < 0:
                out.append(text[i:])
                break
            out.append(text[i:j])
            size += j - i
            nxt = text[j + 1 : j + 2]
            if nxt == "$":
                out.append("$")
                size += 1
                i = j + 2
                continue
            if nxt != "{":
                out.append("$")
                size += 1
                i = j + 1
                continue
            try:
                node = parser.func(j, 0)
            except _SyntaxError as exc:
                unresolved.setdefault((exc.name, "syntax"), Unresolved(exc.name, line(j), "syntax"))
                out.append("$")
                size += 1
                i = j + 1
                continue
            pending: list[tuple[int, str, str]] = []
            try:
                piece = ev.eval(node, pending)
            except _Missing as miss:
                unresolved.setdefault(
                    (miss.name, miss.reason), Unresolved(miss.name, line(miss.pos), miss.reason)
                )
                piece = text[node.start : node.end]
                pending = []
            out.append(piece)
            size += len(piece)
            if size > MAX_OUTPUT_CHARS:
                raise _LimitError(f"output larger than {MAX_OUTPUT_CHARS} characters")
            uses += [Use(line(pos), name, src, _sensitive(src)) for pos, name, src in pending]
            i = node.end
    except _LimitError:
        return TextResult(text, [Unresolved("", 1, "limit")])
    return TextResult("".join(out), list(unresolved.values()), sorted(uses, key=lambda u: u.line))


def substitute_text(text: str, vars: Mapping[str, str]) -> tuple[str, list[Unresolved]]:
    """Substitute `${...}` in `text`; each unresolved variable is reported once, at its first line."""
    result = trace_text(text, vars)
    return result.text, result.unresolved


def is_disabled(text: str) -> bool:
    """True when the resource's own labels or annotations carry `kustomize.toolkit.fluxcd.io/substitute: disabled`."""
    if DISABLED_KEY not in text:
        return False
    try:
        docs = load_data(text)
    except YamlError:
        return False
    obj = docs[0] if docs else None
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if not isinstance(meta, dict):
        return False
    return any(
        isinstance(meta.get(section), dict) and meta[section].get(DISABLED_KEY) == "disabled"
        for section in ("labels", "annotations")
    )


def trace_resources(docs: list[str], vars: Mapping[str, str], *, always: bool = False) -> list[TextResult]:
    """Per resource text: the substituted text, unresolved expressions and uses.

    Like Flux, nothing is substituted when no variable is defined (not even defaults) unless
    `always`; the expressions are then reported with reason `inactive`.
    """
    active = always or bool(vars) or bool(getattr(vars, "encrypted", None))
    results: list[TextResult] = []
    for index, text in enumerate(docs):
        if is_disabled(text):
            results.append(TextResult(text, skipped=True))
            continue
        result = trace_text(text, vars if active else {})
        if not active:
            names = {(u.name, u.line) for u in result.uses}
            names |= {(u.name, u.line) for u in result.unresolved if u.name}
            seen: set[str] = set()
            inactive = []
            for name, ln in sorted(names, key=lambda x: x[1]):
                if name not in seen:
                    seen.add(name)
                    inactive.append(Unresolved(name, ln, "inactive", index))
            result = TextResult(text, inactive)
        else:
            result.unresolved = [Unresolved(u.name, u.line, u.reason, index) for u in result.unresolved]
        results.append(result)
    return results


def substitute_resources(
    docs: list[str], vars: Mapping[str, str], *, always: bool = False
) -> tuple[list[str], list[Unresolved]]:
    """Substitute each resource text; unresolved entries carry the resource index in `doc`."""
    results = trace_resources(docs, vars, always=always)
    return [r.text for r in results], [u for r in results for u in r.unresolved]
