"""`.github/infra-review.yml`: strict parsing, defaults, policy merging, environment names."""

from __future__ import annotations

import re

import pytest

from bot.config import Config, ConfigError, Creator, effective_policy, normalise_env, parse_config
from rules import get_rule

FULL = """
environments:
  aliases: {qa: staging, live: prod}
  paths:
    production: ["deploy/prod/**"]
rules:
  latest-tag:
    severity: {production: error, development: off}
  single-replica: off
  missing-probes: {severity: notice, params: {required: [readinessProbe]}}
policy:
  environments:
    prod: {replicas: 4, limits: {memory: 2Gi}}
  labels: {managed_by: argocd}
  sensitive_names: [password, pin]
  credential_patterns: [{name: internal token, regex: 'itk_[0-9a-f]{32}'}]
ignore: ["legacy/**", "*.tmp.yaml"]
fail_on: all
comments: diff
forbid_suppression: [hardcoded-secret]
"""


def test_full_config():
    c = parse_config(FULL)
    assert (c.fail_on, c.comments, c.forbid_suppression) == ("all", "diff", frozenset({"hardcoded-secret"}))
    assert normalise_env("QA", c) == "staging" and normalise_env("live", c) == "production"
    assert c.env_for_path("deploy/prod/shop/kustomization.yaml") == "production"
    assert c.env_for_path("deploy/dev/x") is None
    latest = get_rule("latest-tag")
    assert c.severity_for(latest, "production") == "error"
    assert c.severity_for(latest, "dev") is None
    assert c.severity_for(latest, "staging") == "warning"  # rule default
    assert c.severity_for(get_rule("single-replica"), "production") is None
    assert c.severity_for(get_rule("missing-probes"), "staging") == "notice"
    assert c.params_for("missing-probes") == {"required": ["readinessProbe"]}
    assert (
        c.is_ignored("legacy/a/b.yaml") and c.is_ignored("x.tmp.yaml") and not c.is_ignored("dir/x.tmp.yaml")
    )
    assert not c.is_ignored(None)


def test_effective_policy_merges_maps_and_replaces_lists():
    p = effective_policy(parse_config(FULL))
    prod = p["environments"]["production"]
    assert prod["replicas"] == 4 and prod["limits"] == {"cpu": "500m", "memory": "2Gi"}
    assert prod["requests"] == {"cpu": "250m", "memory": "512Mi"}
    assert p["labels"]["managed_by"] == "argocd" and len(p["labels"]["required"]) == 6
    assert p["sensitive_names"] == ["password", "pin"]
    assert p["aliases"]["qa"] == "staging"
    assert effective_policy()["environments"]["staging"]["replicas"] == 2


def test_defaults():
    for text in (None, "", "# nothing\n"):
        assert parse_config(text) == Config.default()
    c = Config.default()
    assert (c.fail_on, c.comments, c.ignore) == ("new", "added", ())
    assert [normalise_env(n) for n in ("dev", "Stage", "stg", "PROD", "prd", "qa")] == [
        "development", "staging", "staging", "production", "production", "qa",
    ]  # fmt: skip
    p = effective_policy()
    assert p["environments"]["production"] == {
        "replicas": 3, "requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "500m", "memory": "1Gi"},
        "log_level": "info",
    }  # fmt: skip
    assert p["labels"]["managed_by"] == "flux"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules:\n  latest-tag:\n    severty: error\n", "rules.latest-tag.severty: unknown key"),
        ("rule: {}\n", "rule: unknown key"),
        ("rules:\n  latest-tags: off\n", "rules.latest-tags: unknown key"),
        ("rules:\n  latest-tag: {params: {tags: [x]}}\n", "rules.latest-tag.params.tags: unknown key"),
        (
            "rules:\n  latest-tag: {params: {forbidden_tags: x}}\n",
            "rules.latest-tag.params.forbidden_tags: must be a list",
        ),
        ("rules:\n  latest-tag: {severity: fatal}\n", "rules.latest-tag.severity: must be one of"),
        (
            "rules:\n  latest-tag: {severity: {production: bad}}\n",
            "rules.latest-tag.severity.production: must be one of",
        ),
        ("environments: {alias: {}}\n", "environments.alias: unknown key"),
        (
            "policy:\n  environments:\n    production: {replica: 3}\n",
            "policy.environments.production.replica: unknown key",
        ),
        (
            "policy:\n  environments:\n    production: {limits: {cpu: lots}}\n",
            "policy.environments.production.limits.cpu: 'lots'",
        ),
        ("policy:\n  labels: {require: []}\n", "policy.labels.require: unknown key"),
        (
            "policy:\n  credential_patterns: [{name: x, regex: '('}]\n",
            "policy.credential_patterns[0].regex: invalid",
        ),
        ("fail_on: sometimes\n", "fail_on: must be one of new, all"),
        ("comments: everywhere\n", "comments: must be one of"),
        ("forbid_suppression: [nope]\n", "forbid_suppression: 'nope' is not a rule id"),
        ("- a\n", "must be a mapping"),
        ("a: [\n", "invalid YAML"),
    ],
)
def test_errors_name_the_key(text, message):
    with pytest.raises(ConfigError) as exc:
        parse_config(text)
    assert message in str(exc.value)


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        Config.default().fail_on = "all"  # type: ignore[misc]


def test_fetch_flux_third_party_and_creators_are_read_strictly():
    config = parse_config(
        "fetch: {enabled: false, allow: ['http://charts.internal/']}\nflux: {no_remote_bases: true}\n"
        "third_party: [vendor/**]\n"
        "creators:\n- {kind: EventListener, group: triggers.tekton.dev, creates: {kind: Service, name: 'el-{name}'}}\n")
    assert (config.fetch_enabled, config.fetch_allow, config.no_remote_bases) == (False, ("http://charts.internal/",), True)
    assert config.is_third_party("vendor/cert-manager/crds.yaml") and not config.is_third_party("apps/a.yaml")
    assert config.creators == (Creator("EventListener", "triggers.tekton.dev", "Service", "el-{name}"),)
    defaults = Config.default()
    assert defaults.fetch_enabled and not defaults.no_remote_bases and defaults.creators == ()
    for text, says in [("fetch: {enabled: maybe}", "fetch.enabled: must be true or false"),
                       ("fetch: {alow: []}", "fetch.alow: unknown key"),
                       ("creators: [{kind: X}]", "creators[0].creates.kind: must be a non-empty string"),
                       ("flux: {no_remote_bases: 1}", "flux.no_remote_bases: must be true or false")]:
        with pytest.raises(ConfigError, match=re.escape(says)):
            parse_config(text)
