"""sops-coverage: Secret manifests must fall under a `.sops.yaml` creation rule (repo scope)."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from bot.model import Finding, ResourceId, Suggestion
from bot.repo.tree import YAML_SUFFIXES
from bot.yamlpos import YamlDoc
from rules.base import SECRET_REFERENCE as REFERENCE
from rules.base import Rule, example, per_env
from rules.repo_checks import RepoScope, line_at, repo_finding, where

SOPS_CONFIGS = (".sops.yaml", ".sops.yml")
KEY_FIELDS = ("age", "pgp", "kms", "gcp_kms", "azure_keyvault", "hc_vault_transit_uri", "key_groups",
              "encrypted_regex", "encrypted_suffix", "unencrypted_regex", "unencrypted_suffix", "shamir_threshold")


@dataclass(frozen=True)
class SopsConfig:
    file: str
    directory: str
    rules: tuple[dict[str, Any], ...]
    last_line: int | None  # last line of the creation_rules list, where a new rule goes

    def first_match(self, path: str) -> dict[str, Any] | None:
        rel = path if self.directory in ("", ".") else path.removeprefix(self.directory + "/")
        for rule in self.rules:
            regex = rule.get("path_regex")
            if regex is None or regex == "":
                return rule
            try:
                if re.search(str(regex).replace(r"\z", r"\Z"), rel):
                    return rule
            except re.error:
                continue
        return None


def load_sops_configs(scope: RepoScope) -> dict[str, SopsConfig]:
    """Every `.sops.yaml` of the tree by directory (a config that does not parse has no rules)."""
    out: dict[str, SopsConfig] = {}
    for rel in scope.model.tree.files:
        if posixpath.basename(rel) not in SOPS_CONFIGS:
            continue
        directory = posixpath.dirname(rel) or "."
        if directory in out:
            continue
        docs = scope.docs(rel)
        data = docs[0].data if docs and isinstance(docs[0].data, dict) else {}
        raw = data.get("creation_rules")
        rules = tuple(r for r in raw if isinstance(r, dict)) if isinstance(raw, list) else ()
        last = docs[0].span(("creation_rules",)) if docs and rules else None
        out[directory] = SopsConfig(rel, directory, rules, last[1] if last else None)
    return out


def nearest_config(configs: dict[str, SopsConfig], path: str) -> SopsConfig | None:
    directory = posixpath.dirname(path)
    while True:
        found = configs.get(directory or ".")
        if found is not None or directory in ("", "."):
            return found
        directory = posixpath.dirname(directory)


def secret_docs(scope: RepoScope, rel: str) -> Iterator[YamlDoc]:
    """Documents of `rel` that are core/v1 Secrets holding at least one value worth encrypting."""
    for doc in scope.docs(rel):
        data = doc.data
        if not isinstance(data, dict) or data.get("kind") != "Secret" or data.get("apiVersion") != "v1":
            continue
        values = [v for section in ("data", "stringData") if isinstance(data.get(section), dict)
                  for v in data[section].values()]
        if any(v is not None and str(v).strip() and not REFERENCE.match(str(v)) for v in values):
            yield doc


def is_chart_template(scope: RepoScope, rel: str) -> bool:
    """A file under a Helm chart's `templates/`: Helm renders its values, SOPS never sees it."""
    parts = rel.split("/")
    for i, part in enumerate(parts[:-1]):
        if part == "templates" and scope.model.tree.is_file("/".join([*parts[:i], "Chart.yaml"])):
            return True
    return False


def _env_hint(rule: dict[str, Any], environment: str | None) -> bool:
    """Whether a creation rule's path_regex names `environment` (so its keys are that environment's)."""
    regex = str(rule.get("path_regex") or "").lower()
    names = {"production": ("prod",), "staging": ("stag", "stg"), "development": ("dev",)}.get(
        environment or "", (environment or "\0",))
    return any(n in regex for n in names)


def creation_rule_suggestion(scope: RepoScope, config: SopsConfig, path: str,
                             environment: str | None) -> Suggestion | None:
    """A creation rule for the file's directory, copying the keys of the one existing rule that names
    the same environment (only then is the edit mechanical: we never invent a key)."""
    if config.last_line is None:
        return None
    same_env = [r for r in config.rules if _env_hint(r, environment)]
    if len(same_env) != 1:
        return None
    lines = scope.model.tree.lines(config.file)
    if not 0 < config.last_line <= len(lines):
        return None
    directory = posixpath.dirname(path)
    rel_dir = directory if config.directory in ("", ".") else directory.removeprefix(config.directory + "/")
    first = scope.docs(config.file)[0].span(("creation_rules", 0))
    item_line = lines[first[0] - 1] if first else "  - "
    indent = item_line[: len(item_line) - len(item_line.lstrip())]
    new = [f"{indent}- path_regex: {re.escape(rel_dir + '/')}.*\\.ya?ml$" if rel_dir else f"{indent}- path_regex: .*"]
    for key in KEY_FIELDS:
        if key in same_env[0]:
            dumped = yaml.safe_dump({key: same_env[0][key]}, default_flow_style=False, sort_keys=False).rstrip("\n")
            new += [f"{indent}  {ln}" for ln in dumped.splitlines()]
    # Appended: no existing rule matches the file, so the new one is the first that does.
    return Suggestion(config.file, config.last_line, config.last_line, "\n".join([lines[config.last_line - 1], *new]))


def check_repo(scope: RepoScope, rule: Rule) -> Iterator[Finding]:
    configs = load_sops_configs(scope)
    for rel in scope.model.tree.files:
        if not rel.endswith(YAML_SUFFIXES) or posixpath.basename(rel) in SOPS_CONFIGS:
            continue
        if scope.config.is_ignored(rel) or not scope.model.may_name(rel, "Secret"):
            continue
        if is_chart_template(scope, rel):
            continue
        docs = list(secret_docs(scope, rel))
        if not docs:
            continue
        config = nearest_config(configs, rel)
        if config is not None and config.first_match(rel) is not None:
            continue
        environment = scope.environment(rel)
        severity = scope.severity(rule, environment)
        if severity is None:
            continue
        suggestion = creation_rule_suggestion(scope, config, rel, environment) if config else None
        for doc in docs:
            rid = ResourceId.of(doc.data)
            encrypted = isinstance(doc.data.get("sops"), dict)
            if config is None:
                why = "the repository has no `.sops.yaml`, so `sops -e` has no creation rule (no key) for it"
            else:
                why = (f"no `creation_rules[].path_regex` in `{config.file}` matches it, so `sops -e` refuses it "
                       f"(\"no matching creation rules found\")")
            state = (" It is SOPS-encrypted already, but cannot be re-encrypted or have its keys rotated "
                     "with this configuration." if encrypted else "")
            yield repo_finding(
                rule,
                severity=severity,
                environment=environment,
                message=(f"`{rel}` defines {rid} {where(environment)}, and {why}.{state} Secrets for this "
                         f"environment must be encrypted with its cluster's key before they are committed."),
                file=rel,
                line=line_at(doc, "metadata", "name"),
                resource=rid,
                suggestion=suggestion,
                remediation=(
                    f"Add a creation rule to `{config.file}` whose `path_regex` matches `{rel}`, with the "
                    f"{environment or 'production'} cluster's age/KMS key (then `sops -e -i {rel}`), or move the "
                    "file under a path an existing rule covers."
                    if config else
                    "Create `.sops.yaml` at the repository root with a `creation_rules` entry per environment "
                    "(`- path_regex: overlays/production/.*\\.yaml$` with `age: <production recipient>`), then "
                    f"`sops -e -i {rel}`."
                ),
            )


RULE = Rule(
    id="sops-coverage",
    title="Secret file not covered by .sops.yaml",
    rationale=(
        "`sops -e` picks keys from the first `creation_rules[].path_regex` matching the file; a Secret "
        "file that matches none cannot be encrypted for the environment's cluster, so it ends up "
        "committed in clear or encrypted with the wrong key. Error in production and staging, warning "
        "in development."
    ),
    remediation="Add a `creation_rules` entry to `.sops.yaml` whose `path_regex` matches the file (with the "
    "environment's age/KMS key), or move the file under a covered path.",
    severity=per_env("error", "error", "warning"),
    scope="repo",
    check_repo=check_repo,
    edge_cases=(
        "No `.sops.yaml` at all means no Secret file is covered.",
        "The nearest `.sops.yaml` in the file's directory or above applies; `path_regex` is matched with "
        "a regex search on the path relative to that file's directory, as SOPS does; a rule without "
        "`path_regex` matches every file.",
        "A Secret with no values, or whose values are all references resolved elsewhere (`${VAR}` "
        "substitution, `op://`, `vault:`, `<path:...>`), has nothing to encrypt and is not flagged; nor are "
        "Helm chart templates (`<chart>/templates/`).",
    ),
    example=example(
        {".sops.yaml": """\
            creation_rules:
              - path_regex: overlays/staging/.*\\.yaml$
                age: age1x3hzd4kqf5ydcy2f9mcx5w7g2tr3mylxh3lv9gd0mhqzfk3sfq4qnz2zyu
              - path_regex: overlays/production/.*\\.yaml$  #+
                age: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p  #+
            """,
         "overlays/production/kustomization.yaml": "resources: [secret.yaml]\n",
         "overlays/production/secret.yaml": """\
            apiVersion: v1
            kind: Secret
            metadata:
              name: web-db
            stringData:
              password: ENC[AES256_GCM,data:o1kz9vM2GqU=,iv:wq3kK1v0Xc8=,tag:9Lw1sQ==,type:str]
            sops:
              age:
                - recipient: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
              version: 3.9.1
            """},
        note="A creation rule gives `overlays/production/` production's key, so its Secrets can be encrypted, "
        "re-encrypted and have their keys rotated there.",
    ),
)
