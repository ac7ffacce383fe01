"""schema/infra-review.schema.json: generated, a valid draft 2020-12 schema, and in step with the parser
(a file both accept or both reject, but where bot.config_schema says the schema is looser)."""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import jsonschema_rs
import pytest
from conftest_paths import REPO

import bot.config
import bot.config_schema as config_schema_module
from bot.config import ENV_ROW_KEYS, TOP_KEYS, ConfigError, parse_config
from bot.config_schema import SCHEMA_PATH, SCHEMA_URL, config_schema, render
from bot.publish.report import DOCS_URL
from bot.yamlpos import load_data
from rules import all_rules

SCHEMA = config_schema()
VALIDATOR = jsonschema_rs.validator_for(SCHEMA)
README_LINE = "# yaml-language-server: $schema="


@dataclass(frozen=True)
class Fake:
    """A rule of a made-up catalogue, with a parameter of every type a default can have."""

    id: str
    params: dict[str, Any] = field(default_factory=dict)

    def severity_for(self, environment: str | None) -> str | None:
        return "error"


FAKE = Fake("fake", {"flag": False, "count": 1, "ratio": 0.5, "name": "x", "names": [], "ports": [80],
                     "table": {"a": "b"}})
FAKE_VALIDATOR = jsonschema_rs.validator_for(config_schema([FAKE]))


def parser_error(text: str, catalogue: list[Any] | None = None) -> str | None:
    try:
        parse_config(text, catalogue)
    except ConfigError as exc:
        return str(exc)
    return None


def schema_errors(text: str, validator: Any = VALIDATOR) -> list[str]:
    docs = load_data(text)
    return [error.message for error in validator.iter_errors(docs[0] if docs else None)]


def docstring_example() -> str:
    """The example in bot.config's docstring, its `params: {...}` placeholder emptied."""
    lines = [line for line in (bot.config.__doc__ or "").splitlines() if line.startswith("    ")]
    return textwrap.dedent("\n".join(lines)).replace("{...}", "{}") + "\n"


def readme_example() -> str:
    """The README's example `.github/infra-review.yml`: the YAML block that names the schema."""
    blocks = re.findall(r"```yaml\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    return next(block for block in blocks if block.startswith(README_LINE))


def texts_of_test_config() -> dict[str, str]:
    """Every string literal of tests/test_config.py that parses as a configuration, by its line."""
    path = REPO / "tests" / "test_config.py"
    nodes = [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Constant)]
    return {f"test_config.py:{node.lineno}": node.value for node in nodes
            if isinstance(node.value, str) and ":" in node.value and parser_error(node.value) is None}


def cases(table: dict[str, str]) -> list[Any]:
    return [pytest.param(text, id=name) for name, text in table.items()]


VALID = cases({
    "empty": "",
    "comment-only": "# nothing\n",
    "null-document": "~\n",
    "bot-config-docstring": docstring_example(),
    "readme-example": readme_example(),
    **texts_of_test_config(),
    "requests-only": "policy: {environments: {production: {requests: {cpu: 100m}}}}\n",
    "rule-off": "rules: {latest-tag: off}\n",
    "rule-false": "rules: {latest-tag: false}\n",
    "severities-any-case-any-environment":
        "rules:\n  latest-tag: Warning\n  single-replica: {severity: {PROD: OFF, qa: Error, x-env: notice}}\n",
    "empty-rule-bodies": "rules:\n  latest-tag: {}\n  single-replica: {params: }\n  missing-probes: {severity: {}}\n",
    "params-of-every-rule": (
        "rules:\n  single-replica: {params: {min_replicas: 3}}\n"
        "  latest-tag: {params: {forbidden_tags: [latest, main], pinned_tags: []}}\n"
        "  env-defaults: {params: {log_level_keys: [LOG_LEVEL, LEVEL]}}\n"
        "  pod-security: {params: {target: {production: restricted}}}\n"),
    "empty-sections": "".join(f"{key}:\n" for key in TOP_KEYS if key not in ("fail_on", "comments")),
    "empty-nested-sections": (
        "environments: {aliases: , paths: }\npolicy: {environments: {qa: , live: {limits: }}, labels: }\n"
        "helm: {vendor_charts: {skip_rules: }}\n"),
    "one-string-for-a-list": (
        "ignore: legacy/**\nthird_party: vendor/**\nforbid_suppression: hardcoded-secret\n"
        "fetch: {allow: 'https://charts.example/'}\nhelm: {vendor_charts: {skip_rules: latest-tag}}\n"
        "policy: {labels: {required: app.kubernetes.io/name}, sensitive_names: token}\n"
        "kubernetes: {api_versions: monitoring.coreos.com/v1}\nenvironments: {paths: {qa: deploy/qa/**}}\n"),
    "kubernetes-v-prefix": "kubernetes: {version: v1.30, api_versions: [a.example/v1]}\n",
    "kubernetes-version-number": "kubernetes: {version: 1.29}\n",
    "environment-rows": (
        "policy:\n  environments:\n    QA: {replicas: 0, requests: {cpu: 0.5, memory: 1e3}, "
        "limits: {cpu: 1, memory: 128Mi}, log_level: DEBUG}\n    live: {log_level: warn}\n"),
    "empty-policy-lists":
        "policy: {labels: {required: [], managed_by: ''}, sensitive_names: [], credential_patterns: []}\n",
    "python-only-regex": "policy: {credential_patterns: [{name: token, regex: '(?i)tok_(?P<body>[a-z]{8})'}]}\n",
    "empty-rule-lists": "helm: {vendor_charts: {skip_rules: []}}\nforbid_suppression: []\n",
    "creator-groups": (
        "creators:\n- {kind: A, creates: {kind: Service, name: a}}\n"
        "- {kind: B, group: '', creates: {kind: Service, name: b}}\n"
        "- {kind: C, group: null, creates: {kind: Service, name: c}}\n"),
    "aliases-and-paths":
        "environments:\n  aliases: {QA: Staging, live: prod}\n  paths: {qa: [a/**], Production: [b/, c/*]}\n",
    "modes": "fail_on: all\ncomments: none\n",
})

INVALID = cases({
    "unknown-top-key": "rule: {}\n",
    "not-a-mapping": "- a\n",
    "section-not-a-mapping": "fetch: true\n",
    "unknown-key-environments": "environments: {alias: {}}\n",
    "alias-to-nothing": "environments: {aliases: {qa: ''}}\n",
    "path-not-a-string": "environments: {paths: {qa: [1]}}\n",
    "misspelt-rule-id": "rules: {latest-tags: off}\n",
    "unknown-key-rule": "rules: {latest-tag: {severty: error}}\n",
    "unknown-param": "rules: {latest-tag: {params: {tags: [x]}}}\n",
    "params-not-a-mapping": "rules: {latest-tag: {params: [x]}}\n",
    "param-string-for-list": "rules: {latest-tag: {params: {forbidden_tags: x}}}\n",
    "param-list-item-type": "rules: {latest-tag: {params: {forbidden_tags: [1]}}}\n",
    "param-string-for-integer": "rules: {single-replica: {params: {min_replicas: '2'}}}\n",
    "param-boolean-for-integer": "rules: {single-replica: {params: {min_replicas: true}}}\n",
    "param-fraction-for-integer": "rules: {single-replica: {params: {min_replicas: 2.5}}}\n",
    "param-list-for-mapping": "rules: {pod-security: {params: {target: [restricted]}}}\n",
    "bad-severity": "rules: {latest-tag: {severity: fatal}}\n",
    "bad-severity-shorthand": "rules: {latest-tag: fatal}\n",
    "null-rule": "rules: {latest-tag: }\n",
    "true-severity": "rules: {latest-tag: true}\n",
    "null-severity": "rules: {latest-tag: {severity: }}\n",
    "bad-environment-severity": "rules: {latest-tag: {severity: {production: bad}}}\n",
    "bad-fail-on": "fail_on: sometimes\n",
    "fail-on-is-case-sensitive": "fail_on: New\n",
    "null-fail-on": "fail_on:\n",
    "bad-comments": "comments: everywhere\n",
    "unknown-key-policy": "policy: {env: {}}\n",
    "environment-row-not-a-mapping": "policy: {environments: {production: 3}}\n",
    "unknown-key-environment-row": "policy: {environments: {production: {replica: 3}}}\n",
    "unknown-key-limits": "policy: {environments: {production: {limits: {gpu: 1}}}}\n",
    "quantity-boolean": "policy: {environments: {production: {requests: {cpu: true}}}}\n",
    "negative-replicas": "policy: {environments: {production: {replicas: -1}}}\n",
    "boolean-replicas": "policy: {environments: {production: {replicas: true}}}\n",
    "bad-log-level": "policy: {environments: {production: {log_level: verbose}}}\n",
    "unknown-key-labels": "policy: {labels: {require: []}}\n",
    "managed-by-not-a-string": "policy: {labels: {managed_by: 3}}\n",
    "empty-sensitive-name": "policy: {sensitive_names: ['']}\n",
    "null-credential-patterns": "policy: {credential_patterns: }\n",
    "credential-pattern-without-regex": "policy: {credential_patterns: [{name: x}]}\n",
    "unknown-key-credential-pattern": "policy: {credential_patterns: [{name: x, regex: y, flags: i}]}\n",
    "empty-glob": "ignore: ['']\n",
    "glob-not-a-string": "third_party: [1]\n",
    "forbid-suppression-unknown-rule": "forbid_suppression: [nope]\n",
    "unknown-key-fetch": "fetch: {alow: []}\n",
    "fetch-enabled-yes": "fetch: {enabled: yes}\n",
    "fetch-enabled-null": "fetch: {enabled: }\n",
    "no-remote-bases-number": "flux: {no_remote_bases: 1}\n",
    "unknown-key-flux": "flux: {no_remote: true}\n",
    "bad-kubernetes-version": "kubernetes: {version: latest}\n",
    "kubernetes-version-four-parts": "kubernetes: {version: '1.33.0.1'}\n",
    "unknown-key-kubernetes": "kubernetes: {versions: '1.33'}\n",
    "unknown-key-helm": "helm: {vendor: {}}\n",
    "unknown-key-vendor-charts": "helm: {vendor_charts: {skip: []}}\n",
    "skip-rules-unknown-rule": "helm: {vendor_charts: {skip_rules: [nope]}}\n",
    "creators-not-a-list": "creators: {kind: X}\n",
    "creator-without-kind": "creators: [{creates: {kind: Service, name: x}}]\n",
    "creator-without-creates": "creators: [{kind: X}]\n",
    "creates-without-name": "creators: [{kind: X, creates: {kind: Service}}]\n",
    "creator-group-number": "creators: [{kind: X, group: 1, creates: {kind: S, name: n}}]\n",
    "unknown-key-creator": "creators: [{kind: X, namespace: y, creates: {kind: S, name: n}}]\n",
    "unknown-key-creates": "creators: [{kind: X, creates: {kind: S, name: n, namespace: y}}]\n",
})

# What the module docstring says the schema lets through and the parser does not.
LOOSER = cases({
    "quantity-syntax": "policy: {environments: {production: {limits: {cpu: lots}}}}\n",
    "regex-validity": "policy: {credential_patterns: [{name: x, regex: '('}]}\n",
    "integer-parameter-2.0": "rules: {single-replica: {params: {min_replicas: 2.0}}}\n",
    "replicas-2.0": "policy: {environments: {production: {replicas: 2.0}}}\n",
    "kubernetes-version-integer": "kubernetes: {version: 1}\n",
    "two-documents": "fail_on: new\n---\nfail_on: all\n",
})

FAKE_PARAMS = [
    *(pytest.param(text, True, id=f"ok-{text}") for text in (
        "{flag: true}", "{count: 3}", "{ratio: 1}", "{ratio: 0.25}", "{name: ''}", "{names: [a, b]}",
        "{ports: [443]}", "{table: {x: 1}}", "{}")),
    *(pytest.param(text, False, id=f"bad-{text}") for text in (
        "{flag: 'yes'}", "{count: 1.5}", "{count: true}", "{ratio: true}", "{ratio: '1'}", "{name: 1}",
        "{names: [1]}", "{ports: ['80']}", "{ports: [true]}", "{table: [a]}", "{other: 1}")),
]


def test_committed_schema_is_current():
    assert SCHEMA_PATH.read_text(encoding="utf-8") == render(), "stale: run `python -m bot.config_schema`"
    assert config_schema_module.main(["--check"]) == 0


def test_check_detects_stale_and_main_rewrites(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(config_schema_module, "SCHEMA_PATH", tmp_path / "schema" / "infra-review.schema.json")
    assert config_schema_module.main(["--check"]) == 1
    assert "run `python -m bot.config_schema`" in capsys.readouterr().err
    assert config_schema_module.main([]) == 0 and config_schema_module.main(["--check"]) == 0
    assert (tmp_path / "schema" / "infra-review.schema.json").read_text(encoding="utf-8") == render()


def test_schema_is_a_valid_draft_2020_12_schema():
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema_rs.meta.validate(SCHEMA)
    assert isinstance(VALIDATOR, jsonschema_rs.Draft202012Validator)


def subschemas(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, list):
        for item in node:
            yield from subschemas(item)
    elif isinstance(node, dict):
        yield node
        for key, value in node.items():
            yield from subschemas(list(value.values()) if key in ("properties", "$defs") else value)


def test_every_mapping_says_what_other_keys_may_be():
    """The parser rejects unknown keys: each mapping of the schema has additionalProperties (false, or
    the schema of a value under any name, such as an environment's)."""
    found = [schema for schema in subschemas(SCHEMA) if "properties" in schema]
    assert len(found) > 15
    assert all("additionalProperties" in schema for schema in found)


def test_every_key_and_rule_is_in_the_schema():
    assert list(SCHEMA["properties"]) == list(TOP_KEYS)
    assert set(SCHEMA["properties"]["rules"]["properties"]) == {rule.id for rule in all_rules()}
    assert set(SCHEMA["$defs"]["environmentRow"]["properties"]) == set(ENV_ROW_KEYS)
    assert SCHEMA["$defs"]["ruleId"]["enum"] == [rule.id for rule in all_rules()]


def test_schema_url_is_the_repository_the_docs_links_name():
    repository_and_branch = DOCS_URL.removeprefix("https://github.com/").split("/docs/")[0].replace("/blob/", "/")
    path = SCHEMA_PATH.relative_to(REPO).as_posix()
    assert SCHEMA["$id"] == SCHEMA_URL == f"https://raw.githubusercontent.com/{repository_and_branch}/{path}"


def test_readme_example_names_the_schema():
    first = readme_example().splitlines()[0]
    assert first == f"{README_LINE}{SCHEMA['$id']}"


@pytest.mark.parametrize("text", VALID)
def test_parser_and_schema_accept(text):
    assert parser_error(text) is None
    assert schema_errors(text) == []


@pytest.mark.parametrize("text", INVALID)
def test_parser_and_schema_reject(text):
    assert parser_error(text) is not None, "the parser accepts it"
    assert schema_errors(text), "the schema accepts it"


@pytest.mark.parametrize("text", LOOSER)
def test_schema_is_looser_only_as_documented(text):
    assert parser_error(text) is not None
    assert schema_errors(text) == []


def test_enough_cases():
    assert len(VALID) >= 15 and len(INVALID) >= 15 and len(texts_of_test_config()) >= 2


@pytest.mark.parametrize(("params", "ok"), FAKE_PARAMS)
def test_parameters_are_typed_like_their_defaults(params, ok):
    """With a catalogue whose parameters have every type a default can have, parser and schema agree."""
    text = f"rules: {{fake: {{params: {params}}}}}\n"
    assert (parser_error(text, [FAKE]) is None, schema_errors(text, FAKE_VALIDATOR) == []) == (ok, ok)
