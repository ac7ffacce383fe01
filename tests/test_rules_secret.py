"""hardcoded-secret: what counts as a clear-text credential, and that values are never echoed."""

from __future__ import annotations

import base64
from textwrap import dedent

import pytest

from bot.review.run_rules import run_env_rules
from rules import get_rule
from rules.testing import env_from_yaml, finding_text, of_rule

SECRET_VALUE = "Sup3rS3cretPassw0rd-do-not-print"
B64 = base64.b64encode(SECRET_VALUE.encode()).decode()


def secret_findings(tmp_path, text, environment="production"):
    ctx = env_from_yaml(tmp_path, text, environment=environment)
    return of_rule(
        list(get_rule("hardcoded-secret").check(ctx, get_rule("hardcoded-secret"))), "hardcoded-secret"
    )


def test_plain_secret_is_flagged_per_key_and_never_echoed(tmp_path):
    found = secret_findings(
        tmp_path,
        f"""
        apiVersion: v1
        kind: Secret
        metadata: {{name: db}}
        stringData:
          password: {SECRET_VALUE}
        data:
          other: {B64}
          empty: ""
        """,
    )
    # Only the credential is an error at its key; `other` holds nothing a credential test flags.
    (f,) = found
    assert (f.field, f.origin.line, f.severity) == ("stringData.password", 5, "error")
    text = finding_text(f)
    assert SECRET_VALUE not in text and B64 not in text and B64[:8] not in text
    assert f"{len(SECRET_VALUE)} characters" in text


def test_a_clear_text_secret_without_credentials_is_one_warning_not_an_error_per_key(tmp_path):
    found = secret_findings(tmp_path, """
        apiVersion: v1
        kind: Secret
        metadata: {name: db}
        stringData:
          username: app
          database: orders
        """)
    (f,) = found
    assert (f.field, f.severity, f.origin.line) == ("data", "warning", 3)
    assert "is not encrypted: 2 values ('username', 'database')" in f.message and "orders" not in f.message


def test_sops_encrypted_secret_passes_only_with_its_sops_block(tmp_path):
    enc = "ENC[AES256_GCM,data:abc=,iv:x,tag:y,type:str]"
    body = dedent(
        f"""
        apiVersion: v1
        kind: Secret
        metadata: {{name: db}}
        stringData:
          password: {enc}
        data:
          key: {enc}
        """
    )
    missing = secret_findings(tmp_path, body)
    assert [f.field for f in missing] == ["sops"]
    assert not secret_findings(tmp_path, body + "sops:\n  age: []\n  version: 3.8.1\n")
    partly = body.replace("key: ENC", "plain: bm9wZQ==\n  key: ENC") + "sops: {version: 3.8.1}\n"
    assert [(f.field, f.severity) for f in secret_findings(tmp_path, partly)] == [("data", "warning")]


def test_generated_secret_is_judged_on_values_only(tmp_path):
    ctx = env_from_yaml(
        tmp_path, f"apiVersion: v1\nkind: Secret\nmetadata: {{name: gen}}\ndata:\n  a: {B64}\n"
    )
    obj = ctx.objects[0]
    plain_locate = obj.locate
    obj.locate = lambda p: plain_locate(p).__class__(**{**plain_locate(p).__dict__, "via": "generator"})
    rule = get_rule("hardcoded-secret")
    (f,) = rule.check(ctx, rule)
    assert "secretGenerator" in f.message and f.field == "data" and f.severity == "warning"


@pytest.mark.parametrize(
    ("name", "value", "flagged"),
    [
        ("DB_PASSWORD", "hunter2hunter2", True),
        ("my-Api-Key", "abc", True),
        ("AWS_SECRET_ACCESS_KEY", "x", True),
        ("Secret_Blah", "x", True),
        ("GREETING", "hello", False),
        ("AZURE_BATCH_KEY", "xxxxx", False),
        ("TOKEN_FILE", "/var/run/secrets/token", False),
        ("DB_PASSWORD", "$(PASSWORD_FROM_ENV)", False),
        ("DB_PASSWORD", "", False),
        ("KEY", "-----BEGIN RSA PRIVATE KEY-----\\nMIIE", True),
        ("KEY", "---BEGIN OPENSSH PRIVATE KEY---", False),
        ("AWS", "AKIAIOSFODNN7EXAMPLE", True),
        ("GH", "ghp_abcdefghijklmnopqrstuvwxyz0123456789", True),
        ("SLACK", "xoxb-1234567890-abcdef", True),
        ("STRIPE", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", True),
        ("DATABASE_URL", "postgres://app:s3cr3t@db:5432/app", True),
        ("DATABASE_URL", "postgres://app@db:5432/app", False),
        ("DATABASE_URL", "postgres://app:${DB_PASS}@db/app", False),
    ],
)
def test_env_literals(tmp_path, name, value, flagged):
    found = secret_findings(
        tmp_path,
        f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: p}}
        spec:
          initContainers:
            - name: init
              image: busybox:1
              env:
                - name: "{name}"
                  value: "{value}"
          containers: []
        """,
    )
    assert bool(found) is flagged
    if flagged:
        (f,) = found
        assert f.container == "init" and f.origin.line == 10
        assert value.replace("\\n", "\n") not in finding_text(f) or len(value) <= 4


def test_value_from_and_env_from_are_never_flagged(tmp_path):
    assert not secret_findings(
        tmp_path,
        """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: d}
        spec:
          template:
            spec:
              containers:
                - name: app
                  image: a:1
                  envFrom: [{secretRef: {name: s}}]
                  env:
                    - name: DB_PASSWORD
                      valueFrom: {secretKeyRef: {name: s, key: pw}}
        """,
    )


def test_configmap_data(tmp_path):
    found = secret_findings(
        tmp_path,
        """
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: c}
        data:
          db_password: xxxxx
          message: hello
          app.properties: |
            url=https://example.com
            key=AKIAIOSFODNN7EXAMPLE
        """,
    )
    assert sorted(f.field for f in found) == sorted(['data["app.properties"]', "data.db_password"])
    assert all("AKIAIOSFODNN7EXAMPLE" not in finding_text(f) for f in found)


def test_known_secret_appears_in_no_field_of_any_finding(tmp_path):
    """End to end through the registry: every finding of every rule, every field."""
    ctx = env_from_yaml(
        tmp_path,
        f"""
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: d, annotations: {{infra-review.io/ignore: "hardcoded-secret"}}}}
        spec:
          template:
            spec:
              containers:
                - name: app
                  image: a:1
                  env:
                    - {{name: API_TOKEN, value: "{SECRET_VALUE}"}}
                    - {{name: URL, value: "https://u:{SECRET_VALUE}@h/"}}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {{name: c}}
        data: {{LOG_LEVEL: debug, token: "{SECRET_VALUE}"}}
        ---
        apiVersion: v1
        kind: Secret
        metadata: {{name: s}}
        data: {{pw: {B64}}}
        """,
    )
    found = run_env_rules(ctx)
    assert len(of_rule(found, "hardcoded-secret")) == 4
    for f in found:
        assert SECRET_VALUE not in finding_text(f)
        assert SECRET_VALUE[:5] not in finding_text(f)
