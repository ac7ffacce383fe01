"""hardcoded-secret: credentials committed in clear text (Secrets, env literals, ConfigMap data)."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Iterator
from functools import partial
from typing import Any

from bot.model import Finding, ResourceId, as_dict, secret_data
from bot.objects import EnvContext, RenderedObject
from rules.base import (
    SECRET_REFERENCE,
    Rule,
    all_envs,
    containers,
    describe_value,
    example,
    example_deployment,
    finding,
    is_kind,
    key_path,
    workloads,
)

ENCRYPTED = re.compile(r"^ENC\[AES256_GCM,.*\]$", re.S)
REFERENCE = re.compile(r"^(?:\$\([A-Za-z_][A-Za-z0-9_]*\)|\$\{[A-Za-z_][A-Za-z0-9_]*\})+$")
FILE_PATH = re.compile(r"^/[^\s:]*$")
SCAN_WINDOW = 4096
SCAN_OVERLAP = 1024
MAX_REDACTED_TEXT = 64 * 1024

REMEDIATION = (
    "Put the value in a Secret manifest encrypted with SOPS (`sops -e -i <file>`, covered by a "
    "`.sops.yaml` creation rule) and reference it from the container with `valueFrom.secretKeyRef` "
    "or `envFrom.secretRef`; then rotate the exposed credential, since it stays in git history."
)


def is_encrypted(value: str) -> bool:
    return bool(ENCRYPTED.match(value.strip()))


def sensitive_name(name: str, policy: dict[str, Any]) -> str | None:
    """The first sensitive-name pattern found in `name` (case-insensitive; '-' and '.' read as '_')."""
    norm = re.sub(r"[-.]", "_", name.lower())
    for pattern in policy.get("sensitive_names") or ():
        if str(pattern).lower() in norm:
            return str(pattern)
    return None


def windows(value: str) -> Iterator[str]:
    """`value` in overlapping slices of SCAN_WINDOW characters: what a credential pattern sees. A
    pattern's cost then grows linearly with the value even if the pattern (one from a repository's
    config) is quadratic, and a match shorter than SCAN_OVERLAP is never split between two slices."""
    if len(value) <= SCAN_WINDOW:
        yield value
        return
    for start in range(0, len(value) - SCAN_OVERLAP, SCAN_WINDOW - SCAN_OVERLAP):
        yield value[start:start + SCAN_WINDOW]


def credential_shape(value: str, policy: dict[str, Any]) -> str | None:
    """The name of the first credential pattern `value` contains."""
    for pat in policy.get("credential_patterns") or ():
        pattern = re.compile(pat["regex"])
        if any(pattern.search(part) for part in windows(value)):
            return pat["name"]
    return None


def literal_problem(name: str, value: str, policy: dict[str, Any]) -> str | None:
    """Why a name/literal pair looks like a credential, or None. The reason never holds the value."""
    if not value.strip() or is_encrypted(value) or REFERENCE.match(value.strip()):
        return None
    shape = credential_shape(value, policy)
    if shape:
        return f"the value looks like a {shape}"
    pattern = sensitive_name(name, policy)
    if pattern and not FILE_PATH.match(value.strip()):
        return f"the name contains {pattern!r}"
    return None


REDACTED = "<redacted>"
MIN_REDACTED = 4  # shorter values are too common to hide without hiding the message


def _literal(entry: Any) -> tuple[str, str]:
    """A generator literal or env line `key=value` as (key, value); without `=`, all of it is the value."""
    key, sep, value = str(entry).partition("=")
    return (key.strip(), value.strip()) if sep else ("", key.strip())


def _secret_object_values(data: dict[str, Any]) -> Iterator[str]:
    for section in ("data", "stringData"):
        values = data.get(section)
        for raw in values.values() if isinstance(values, dict) else ():
            value = "" if raw is None else str(raw)
            yield value
            decoded = secret_data(value) if section == "data" else None
            if decoded is not None:
                yield decoded


def _generator_sources(data: dict[str, Any]) -> Iterator[tuple[str, str | None]]:
    """(literal value, None) and ("", env or file path) of a kustomization's secretGenerators."""
    gens = data.get("secretGenerator")
    for gen in gens if isinstance(gens, list) else ():
        if not isinstance(gen, dict):
            continue
        for field in ("literals", "envs", "files"):
            entries = gen.get(field)
            for entry in entries if isinstance(entries, list) else ():
                yield (_literal(entry)[1], None) if field == "literals" else ("", _literal(entry)[1] or str(entry))


def _credentials(data: Any, policy: dict[str, Any]) -> Iterator[str]:
    """Values of a document the rule would call credentials: sensitive `key: value` and `name`/`value` pairs."""
    if isinstance(data, list):
        for item in data:
            yield from _credentials(item, policy)
        return
    if not isinstance(data, dict):
        return
    pairs = list(data.items())
    if isinstance(data.get("name"), str) and "value" in data:
        pairs.append((data["name"], data["value"]))
    for key, value in pairs:
        if isinstance(value, dict | list):
            yield from _credentials(value, policy)
        elif value is not None and literal_problem(str(key), str(value), policy):
            yield str(value)


def secret_values(tree: Any, files: Iterable[str], policy: dict[str, Any]) -> set[str]:
    """Values in `files` (a target's inputs) that no output may show: every value of a Secret or a
    secretGenerator (literals, env files, files), and whatever the rule calls a credential."""
    from bot.repo.tree import KUSTOMIZATION_NAMES, YAML_SUFFIXES, PathEscape
    from bot.yamlpos import YamlError

    out: set[str] = set()
    for rel in files:
        if not (rel.endswith(YAML_SUFFIXES) or posixpath.basename(rel) in KUSTOMIZATION_NAMES):
            out.update(v for k, v in map(_literal, tree.lines(rel)) if k and literal_problem(k, v, policy))
            continue
        try:
            docs = tree.docs(rel)
        except YamlError:
            continue
        for doc in docs:
            if not isinstance(doc.data, dict):
                continue
            if doc.data.get("kind") == "Secret":
                out.update(_secret_object_values(doc.data))
            out.update(_credentials(doc.data, policy))
            for value, source in _generator_sources(doc.data):
                out.add(value)
                try:
                    lines = tree.lines(tree.resolve(posixpath.dirname(rel), source)) if source else []
                except PathEscape:
                    continue
                out.update(_literal(line)[1] for line in lines)
    return {v for v in out if len(v) >= MIN_REDACTED}


def redact(text: str, values: Iterable[str], policy: dict[str, Any]) -> str:
    """`text` (a renderer's error) with every known secret value, and anything credential-shaped,
    replaced by REDACTED: it is published where findings are, under the same promise."""
    for value in sorted(values, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    for pat in policy.get("credential_patterns") or ():
        text = re.compile(pat["regex"]).sub(REDACTED, text[:MAX_REDACTED_TEXT])
    return text


_KEY_VALUE_LINE = re.compile(r"^[ \t-]*+([\w.-]++)[ \t]*+[:=][ \t]*+(.*)$")


def content_problem(name: str, text: str, policy: dict[str, Any]) -> str | None:
    """Why a named value is a credential: the name/literal test for one line; for a file (a Helm
    values file a generator packs, an env file), a credential shape anywhere or a `key: value` /
    `KEY=value` line that the name/literal test flags. None when nothing in it is a credential."""
    if "\n" not in text.strip():
        return literal_problem(name, text, policy)
    shape = credential_shape(text, policy)
    if shape:
        return f"it holds a {shape}"
    for number, line in enumerate(text.splitlines(), 1):
        m = _KEY_VALUE_LINE.match(line)
        why = literal_problem(m.group(1), m.group(2).strip().strip("'\""), policy) if m else None
        if why:
            return f"line {number} ({m.group(1) if m else ''}): {why}"
    return None


def _plain_values(obj: RenderedObject) -> Iterator[tuple[str, str, str]]:
    """(section, key, value as written: `data` decoded) of a Secret's values that are neither empty,
    references to a secret kept elsewhere, nor SOPS-encrypted."""
    for section in ("stringData", "data"):
        values = obj.obj.get(section)
        for key, raw in values.items() if isinstance(values, dict) else ():
            value = "" if raw is None else str(raw)
            if not value.strip() or SECRET_REFERENCE.match(value) or is_encrypted(value):
                continue
            decoded = secret_data(value) if section == "data" else None
            yield section, str(key), value if decoded is None else decoded


def _encrypted_values(obj: RenderedObject) -> int:
    return sum(1 for section in ("stringData", "data") for raw in as_dict(obj.obj.get(section)).values()
               if raw is not None and is_encrypted(str(raw)))


def _secret_findings(ctx: EnvContext, rule: Rule, obj: RenderedObject) -> Iterator[Finding]:
    """A credential in clear text is an error at its key; a Secret whose clear-text values hold none
    (a username, a database name, a Helm values file) is one warning: it is still not encrypted."""
    generated = obj.origin("").via == "generator"
    source = "a secretGenerator" if generated else "the manifest"
    plain = list(_plain_values(obj))
    credentials = 0
    for section, key, value in plain:
        why = content_problem(key, value, ctx.policy)
        if why is None:
            continue
        credentials += 1
        yield finding(
            rule,
            ctx,
            obj,
            key_path(section, key),
            f"{obj.id}: {section} key {key!r} holds a credential in clear text in {source} ({why}; "
            f"{describe_value(value)}), not SOPS-encrypted (`ENC[AES256_GCM,...]`). Anyone who can read "
            f"the repository can read it, in every environment and forever in git history.",
        )
    if plain and not credentials:
        keys = ", ".join(repr(key) for _, key, _ in plain[:5]) + (" …" if len(plain) > 5 else "")
        yield finding(
            rule,
            ctx,
            obj,
            "data",
            f"{obj.id} is not encrypted: {len(plain)} value{'s' if len(plain) > 1 else ''} ({keys}) "
            f"{'are' if len(plain) > 1 else 'is'} in clear text in {source}. None looks like a credential, "
            f"but a Secret in git is expected to be SOPS-encrypted, and what is in it today may not be "
            f"harmless tomorrow.",
            remediation="Encrypt the Secret with SOPS (`sops -e -i <file>`), or keep values that are not "
            "secret in a ConfigMap.",
            locate_path="",
            severity="warning",
        )
    if _encrypted_values(obj) and not plain and not generated and not isinstance(obj.obj.get("sops"), dict):
        yield finding(
            rule,
            ctx,
            obj,
            "sops",
            f"{obj.id} holds `ENC[...]` values but no top-level `sops:` metadata block, so it "
            f"was not produced by SOPS (or the block was stripped) and Flux cannot decrypt it.",
            remediation="Re-encrypt the file with `sops -e -i <file>` so the values and the `sops:` block match.",
            locate_path="",
        )


def _configmap_findings(ctx: EnvContext, rule: Rule, obj: RenderedObject) -> Iterator[Finding]:
    data = obj.obj.get("data")
    if not isinstance(data, dict):
        return
    for key, raw in data.items():
        if raw is None or isinstance(raw, dict | list):
            continue
        value = str(raw)
        why = literal_problem(str(key), value, ctx.policy)
        if why:
            yield finding(
                rule,
                ctx,
                obj,
                key_path("data", str(key)),
                f"{obj.id}: data key {key!r} looks like a credential ({why}; {describe_value(value)}). "
                f"ConfigMaps are not encrypted in git or in the cluster and are readable by far more "
                f"principals than Secrets.",
            )


def _env_findings(ctx: EnvContext, rule: Rule) -> Iterator[Finding]:
    for pod in workloads(ctx.objects):
        for c in containers(pod):
            env = c.data.get("env")
            if not isinstance(env, list):
                continue
            for i, item in enumerate(env):
                if not isinstance(item, dict) or "value" not in item or item.get("valueFrom"):
                    continue
                name = str(item.get("name") or "")
                value = "" if item["value"] is None else str(item["value"])
                why = literal_problem(name, value, ctx.policy)
                if not why:
                    continue
                sel = f"[{name}]" if name and not re.search(r'[\[\]"]', name) else f"[{i}]"
                yield finding(
                    rule,
                    ctx,
                    pod.obj,
                    f"{c.path}.env{sel}.value",
                    f"{'Init container' if c.init else 'Container'} {c.name!r} of {pod.obj.id} sets env "
                    f"{name!r} to a literal ({why}; {describe_value(value)}). A literal in a manifest is "
                    f"readable by anyone with repository access and shows in `kubectl describe`.",
                    container=c.name,
                )


def check(ctx: EnvContext, rule: Rule) -> Iterator[Finding]:
    for obj in ctx.objects:
        if is_kind(obj, "Secret", ""):
            yield from _secret_findings(ctx, rule, obj)
        elif is_kind(obj, "ConfigMap", ""):
            yield from _configmap_findings(ctx, rule, obj)
    yield from _env_findings(ctx, rule)


def check_repo(scope, rule: Rule) -> Iterator[Finding]:
    """The same judgement on manifests that no target renders (a Secret committed next to the
    overlays but not listed anywhere is still disclosed by the repository)."""
    from bot.config import effective_policy
    from bot.plain import locate_in_doc
    from bot.yamlpos import YamlError

    model = scope.model
    read: set[str] = set()
    for target in model.targets:
        read |= model.inputs(target).files
    by_env: dict[str, list[RenderedObject]] = {}
    for rel in model.tree.files:
        if rel in read or not rel.endswith((".yaml", ".yml")) or scope.config.is_ignored(rel) or "/templates/" in rel:
            continue
        try:
            docs = model.tree.docs(rel)
        except YamlError:
            continue
        for doc in docs:
            data = doc.data
            if not isinstance(data, dict) or data.get("kind") not in ("Secret", "ConfigMap") or data.get("apiVersion") != "v1":
                continue
            env = scope.environment(rel) or "production"
            ro = RenderedObject(data, ResourceId.of(data), None, partial(locate_in_doc, doc, rel))
            by_env.setdefault(env, []).append(ro)
    policy = effective_policy(scope.config)
    for env, objects in sorted(by_env.items()):
        if scope.severity(rule, env) is None:
            continue
        ctx = EnvContext(env, objects, policy, repo=model, read_lines=model.tree.lines)
        for f in check(ctx, rule):
            f.severity = scope.severity(rule, env) or f.severity
            yield f


RULE = Rule(
    id="hardcoded-secret",
    title="Credentials committed in clear text",
    rationale=(
        "A secret in git is disclosed to everyone with read access and stays in history after it is "
        "removed, so it is an error in every environment: a development credential often opens "
        "shared infrastructure, and the same habit leaks production ones."
    ),
    remediation=REMEDIATION,
    severity=all_envs("error"),
    check=check,
    check_repo=check_repo,
    edge_cases=(
        "A Secret's `stringData` values and base64-decoded `data` values must be `ENC[AES256_GCM,...]`; "
        "a Secret from a source file must also carry a top-level `sops:` block.",
        "Secrets and ConfigMaps in YAML files that no target renders are judged too (environment from "
        "their path), since the repository discloses them all the same.",
        "A clear-text Secret value is an error only when it is a credential: its key names a secret "
        "(`password`, `token`, …) or its value has a credential's shape; a file a generator packs (a Helm "
        "values file for `valuesFrom`, an env file) is a credential when a line of it is. `${VAR}` and "
        "other placeholders are templates.",
        "A Secret whose clear-text values hold no credential (a username, a database name) is one "
        "warning for the object: not encrypted.",
        "A generated Secret (`secretGenerator` literals, files or envs) has no `sops:` block and is judged "
        "on its values only.",
        "Container and init-container `env` literals are flagged when the name contains a sensitive "
        "pattern (case-insensitive substring; `-` and `.` read as `_`) or the value is credential-shaped.",
        "`valueFrom` (`secretKeyRef`, `configMapKeyRef`) and `envFrom` are the recommended pattern and "
        "never flagged.",
        "Secret values that only reference a secret kept elsewhere (`op://`, `vault:`, `<path:...>`, `ref+...://`) "
        "are not the secret itself and are not flagged.",
        "Empty values, `$(VAR)` / `${VAR}` references and, for the name test only, absolute file paths "
        "(`/var/run/secrets/token`) are not literals worth flagging.",
        "PEM detection is strict: `-----BEGIN ... PRIVATE KEY-----` with five dashes.",
        "The value is never echoed: findings name the key and give the length, plus a 4-character "
        "prefix only for values of 12 characters or more.",
    ),
    example=example(
        {"deployment.yaml": example_deployment("""\
            env:
              - name: DB_PASSWORD
                value: s3cr3t-Passw0rd  #-
                valueFrom:  #+
                  secretKeyRef: {name: web-db, key: password}  #+
            """)},
        note="The password is read from a Secret (committed SOPS-encrypted) instead of written in the manifest.",
    ),
)
