from __future__ import annotations

import json

import jsonschema
import pytest
from conftest_paths import SARIF_SCHEMA
from test_publish_samples import DEPLOY, RULES, build_error, latest_tag, sample_report

from bot.publish.report import Report
from bot.publish.sarif import FINGERPRINT_KEY, default_level, render_sarif, to_sarif

SCHEMA = SARIF_SCHEMA


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def test_validates_against_official_schema(validator) -> None:
    for report in (sample_report(), Report([build_error()]), Report([])):
        doc = json.loads(render_sarif(report))
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


def test_schema_catches_a_broken_document(validator) -> None:
    doc = to_sarif(sample_report())
    doc["runs"][0]["results"][0]["level"] = "fatal"
    assert not validator.is_valid(doc)


def test_one_rule_entry_per_id_with_help_from_rule_docs() -> None:
    driver = to_sarif(sample_report())["runs"][0]["tool"]["driver"]
    ids = [r["id"] for r in driver["rules"]]
    assert ids == sorted(set(RULES) | {"build-error"})
    probes = driver["rules"][ids.index("missing-probes")]
    assert probes["shortDescription"]["text"] == RULES["missing-probes"].title
    assert RULES["missing-probes"].rationale in probes["fullDescription"]["text"]
    assert RULES["missing-probes"].remediation in probes["help"]["text"]
    assert probes["defaultConfiguration"]["level"] == "error"
    assert default_level({"production": None, "staging": "warning", "development": "notice"}) == "warning"
    assert default_level({"production": None}) == "none"


def test_results_located_fingerprinted_and_baselined() -> None:
    run = to_sarif(sample_report())["runs"][0]
    results = run["results"]
    rules = run["tool"]["driver"]["rules"]
    first = results[0]
    assert rules[first["ruleIndex"]]["id"] == first["ruleId"] == "latest-tag"
    assert first["level"] == "error" and first["baselineState"] == "new"
    region = first["locations"][0]["physicalLocation"]
    assert region["artifactLocation"]["uri"] == DEPLOY
    assert region["region"] == {"startLine": 21, "endLine": 21}
    assert first["partialFingerprints"] == {FINGERPRINT_KEY: latest_tag().fingerprint}
    probe = next(r for r in results if r["ruleId"] == "missing-probes")
    assert probe["level"] == "warning" and probe["baselineState"] == "unchanged"
    no_file = next(r for r in results if r["ruleId"] == "build-error")
    assert "locations" not in no_file
    secret = next(r for r in results if r["ruleId"] == "hardcoded-secret")
    assert secret["suppressions"] == [{"kind": "inSource", "status": "accepted", "justification": "test fixture only"}]
    assert "suppressions" not in first


def test_fix_replaces_the_suggested_lines() -> None:
    fix = to_sarif(Report([latest_tag()]))["runs"][0]["results"][0]["fixes"][0]
    change = fix["artifactChanges"][0]
    assert change["artifactLocation"]["uri"] == DEPLOY
    assert change["replacements"] == [{"deletedRegion": {"startLine": 21, "endLine": 21},
                                       "insertedContent": {"text": "        image: nginx:1.27.3"}}]
