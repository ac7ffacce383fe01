"""Generate schema/infra-review.schema.json, the JSON Schema of `.github/infra-review.yml`.

Editors with the YAML language server validate and complete the file from the published copy (a first
line `# yaml-language-server: $schema=<SCHEMA_URL>`). The schema is built from bot.config's own
constants and the rule catalogue, so a new key, rule or parameter reaches it on regeneration, and
tests/test_config_schema.py holds the parser and the schema to the same verdicts on a table of files.

The schema never rejects a file `parse_config` accepts. It is looser where JSON Schema cannot say what
the parser checks, so these pass the editor and still fail the check:
- requests and limits: any string or number, not only a Kubernetes quantity (`cpu: lots`);
- `credential_patterns[].regex`: any string, not only a valid Python regular expression;
- whole numbers written `2.0` for integer parameters and `replicas` (JSON does not tell them from `2`),
  and a number for `kubernetes.version` that is not one (`1`);
- keys that are not strings, and a file of several YAML documents.

python -m bot.config_schema           rewrite schema/infra-review.schema.json
python -m bot.config_schema --check   exit 1 if it is stale
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bot.catalogue import KnownRule, known_rules
from bot.config import (
    COMMENT_MODES,
    DEFAULT_KUBE_VERSION,
    FAIL_ON,
    KUBE_VERSION,
    LOG_LEVELS,
    OFF,
    VENDOR_SKIP_RULES,
)
from bot.generated import write_or_check
from bot.model import ENVIRONMENTS, SEVERITIES
from bot.publish.report import rule_docs_url

SCHEMA_URL = "https://raw.githubusercontent.com/infra-review/infra-review/main/schema/infra-review.schema.json"
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schema" / "infra-review.schema.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
Schema = dict[str, Any]

# The JSON type of each parameter default `_check_like` knows: a value must have its default's type.
_JSON_TYPES: dict[type, str] = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
                                dict: "object", type(None): "null"}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/$defs/{name}"}


def _object(properties: dict[str, Schema], description: str, *, nullable: bool = True,
            required: Sequence[str] = ()) -> Schema:
    """A mapping with exactly these keys; `nullable`: the parser reads an empty key (`fetch:`) as `{}`."""
    out: Schema = {"type": ["object", "null"] if nullable else "object", "additionalProperties": False,
                   "properties": properties, "description": description}
    return {**out, "required": list(required)} if required else out


def _by_environment(value: Schema, description: str, *, nullable: bool = True) -> Schema:
    """A mapping from any environment name (or alias, any case) to `value`; the usual names are listed
    so that editors offer them."""
    return {"type": ["object", "null"] if nullable else "object", "description": description,
            "properties": {env: value for env in ENVIRONMENTS}, "additionalProperties": value}


def _any_case(words: Iterable[str]) -> str:
    """An ECMA-262 pattern for `words` in any letter case: JSON Schema patterns take no flags."""
    return "^(?:" + "|".join("".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)
                             for word in words) + ")$"


def _words(words: Sequence[str], description: str, also: Sequence[Any] = ()) -> Schema:
    """One of `words` in any case (the parser lower-cases before it compares) or of `also`; the enum is
    what editors offer."""
    return {"anyOf": [{"enum": [*words, *also]}, {"type": "string", "pattern": _any_case(words)}],
            "description": description}


def _like(default: Any) -> Schema:
    """What `_check_like` accepts for a parameter with this default (anything for a type it has no name for)."""
    kind = _JSON_TYPES.get(type(default))
    if kind is None:
        return {}
    if kind == "array":
        return {"type": kind, "items": _like(default[0] if default else "")}
    return {"type": kind}


def _rule_text(rule: KnownRule) -> str:
    severities = ", ".join(f"{env} {rule.severity_for(env) or OFF}" for env in reversed(ENVIRONMENTS))
    title = getattr(rule, "title", None)
    head = f"{title}. " if title else ""
    link = f" {rule_docs_url(rule.id, title)}" if title else ""
    return f"{head}Severity by default: {severities}; a severity here replaces it.{link}"


def _rule(rule: KnownRule) -> Schema:
    params = {name: {**_like(default), "default": default} for name, default in rule.params.items()}
    body = _object({
        "severity": {"anyOf": [_ref("severity"), _by_environment(
            _ref("severity"), "The severity in each environment (names and aliases in any case).", nullable=False)],
            "description": "One severity for every environment, or one per environment."},
        "params": _object(params, "The rule's parameters; see its section of docs/rules.md."),
    }, "Severity and parameters.", nullable=False)
    return {"anyOf": [_ref("severity"), body], "description": _rule_text(rule)}


def _definitions(rule_ids: list[str]) -> dict[str, Schema]:
    quantity = {"type": ["string", "number"], "description": "A Kubernetes quantity: 250m, 0.5, 512Mi, 1G."}
    return {
        "severity": _words((*SEVERITIES, OFF), f"{', '.join(SEVERITIES)}, or {OFF} (the rule does not run).",
                           also=(False,)),
        "ruleId": {"enum": rule_ids, "description": "A rule id (docs/rules.md)."},
        "ruleIds": {"anyOf": [{"type": "null"}, _ref("ruleId"), {"type": "array", "items": _ref("ruleId")}],
                    "description": "A rule id or a list of them."},
        "strings": {"type": ["array", "string", "null"], "minLength": 1, "items": {"type": "string", "minLength": 1},
                    "description": "A non-empty string or a list of them."},
        "globs": {"$ref": "#/$defs/strings",
                  "description": "Path globs from the repository root: ** spans folders, * and ? stay in one, "
                                 "a trailing / is everything below."},
        "resources": _object({"cpu": quantity, "memory": quantity}, "cpu and memory."),
        "environmentRow": _object({
            "replicas": {"type": "integer", "minimum": 0, "description": "Minimum replicas (env-defaults)."},
            "requests": {**_ref("resources"), "description": "Expected container requests (env-defaults)."},
            "limits": {**_ref("resources"), "description": "Expected container limits (env-defaults)."},
            "log_level": _words(LOG_LEVELS, "The environment's log level; unless it is trace or debug, "
                                            "containers logging at those are flagged (env-defaults)."),
        }, "This environment's defaults; the keys given replace rules/policy.yaml's."),
    }


def _policy() -> Schema:
    pattern = _object({"name": {"type": "string", "description": "What the finding calls it."},
                       "regex": {"type": "string", "description": "A Python regular expression."}},
                      "A credential format.", nullable=False, required=("name", "regex"))
    return _object({
        "environments": _by_environment(_ref("environmentRow"), "Per-environment defaults, merged into the seed's."),
        "labels": _object({
            "required": {**_ref("strings"), "description": "Labels every resource must carry (replaces the list)."},
            "managed_by": {"type": "string", "description": "The expected app.kubernetes.io/managed-by value."},
        }, "The standard labels (missing-labels)."),
        "sensitive_names": {**_ref("strings"),
                            "description": "Key name patterns whose values are secrets (replaces the list)."},
        "credential_patterns": {"type": "array", "items": pattern,
                                "description": "Credential formats hardcoded-secret looks for (replaces the list)."},
    }, "Overrides of rules/policy.yaml: maps merge, lists replace.")


def _creator() -> Schema:
    text = {"type": "string", "minLength": 1}
    creates = _object({"kind": {**text, "description": "The kind of the object created."},
                       "name": {**text, "description": "Its name: a template over {name}, {namespace}, {spec.x.y}."}},
                      "The object it creates.", nullable=False, required=("kind", "name"))
    return _object({
        "kind": {**text, "description": "The creating object's kind."},
        "group": {"type": ["string", "null"], "description": "Its API group ('' for the core group; absent: any)."},
        "creates": creates,
    }, "An object kind that creates another object the repository never writes.", nullable=False,
        required=("kind", "creates"))


def _top(rules: dict[str, KnownRule]) -> dict[str, Schema]:
    env_text = "Extra environment names: alias → environment (dev, stage, stg, prod, prd are built in)."
    return {
        "environments": _object({
            "aliases": {"type": ["object", "null"], "description": env_text,
                        "additionalProperties": {"type": "string", "minLength": 1}},
            "paths": _by_environment(_ref("globs"), "Where each environment's overlays live (globs)."),
        }, "Environment names and where their overlays live."),
        "rules": _object({rid: _rule(rule) for rid, rule in rules.items()},
                         "Per rule: a severity (or off), or {severity, params}."),
        "policy": _policy(),
        "ignore": {**_ref("globs"), "description": "Paths that are not part of the repository for infra-review: "
                                                   "nothing is discovered there and findings there are dropped."},
        "fail_on": {"enum": list(FAIL_ON), "default": FAIL_ON[0],
                    "description": "Which errors fail the check: only new ones, or all."},
        "comments": {"enum": list(COMMENT_MODES), "default": COMMENT_MODES[0],
                     "description": "Where review comments may sit: added lines, any line of the diff, or none."},
        "forbid_suppression": {**_ref("ruleIds"),
                               "description": "Rules the infra-review.io/ignore annotation cannot suppress."},
        "fetch": _object({
            "enabled": {"type": "boolean", "default": True, "description": "false: nothing remote is fetched."},
            "allow": {**_ref("strings"), "description": "URL prefixes that may be http, another port or private."},
        }, "Remote Kustomize resources and Helm charts."),
        "flux": _object({"no_remote_bases": {"type": "boolean", "default": False, "description":
                                             "The kustomize-controller runs with --no-remote-bases."}},
                        "How the cluster's Flux is run."),
        "third_party": {**_ref("globs"), "description": "Manifests that are not the team's own (vendored, generated)."},
        "creators": {"type": ["array", "null"], "items": _creator(),
                     "description": "Objects that create others the repository never writes (service-selector)."},
        "kubernetes": _object({
            "version": {"anyOf": [{"type": "string", "pattern": f"^(?:{KUBE_VERSION.pattern})$"},
                                  {"type": "number", "minimum": 0}], "default": DEFAULT_KUBE_VERSION,
                        "description": 'The version charts see, such as "1.33.0"; quote it (1.30 is the number 1.3).'},
            "api_versions": {**_ref("strings"), "description": "Extra API versions charts see (group/version)."},
        }, "What charts see as .Capabilities when rendered."),
        "helm": _object({"vendor_charts": _object({"skip_rules": {
            **_ref("ruleIds"), "default": list(VENDOR_SKIP_RULES),
            "description": "Rules not run on what charts from outside the repository install."}},
            "Charts from outside the repository.")}, "Helm charts."),
    }


def config_schema(catalogue: Iterable[KnownRule] | None = None) -> Schema:
    """The JSON Schema (draft 2020-12) of `.github/infra-review.yml` for `catalogue`'s rules (default: the
    registered catalogue, as parse_config)."""
    rules = known_rules() if catalogue is None else {rule.id: rule for rule in catalogue}
    schema = _object(_top(rules), "infra-review's settings for this repository. An unknown key is an error.")
    return {"$schema": DIALECT, "$id": SCHEMA_URL, "title": ".github/infra-review.yml", **schema,
            "$defs": _definitions(list(rules))}


def render(catalogue: Iterable[KnownRule] | None = None) -> str:
    return json.dumps(config_schema(catalogue), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.config_schema", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help=f"exit 1 if {SCHEMA_PATH.name} is stale")
    check = parser.parse_args(argv).check
    importlib.import_module("rules")  # registers the catalogue; bot modules import no rule module
    return write_or_check(SCHEMA_PATH, render(), "python -m bot.config_schema", check)


if __name__ == "__main__":
    sys.exit(main())
