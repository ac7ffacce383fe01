"""invalid-manifest: what the API server would reject, found in the pull request at the line that wrote it,
through a patch, a base, a Flux postBuild substitution and a chart."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from trees import flux_kustomization, line_of, write

from bot.config import Config
from bot.model import Finding
from bot.publish.report import Report
from bot.render.build import DiskCache
from bot.review.pipeline import run_check
from bot.validate.problems import nearest, problems
from bot.validate.schemas import Catalog, builtin_group

DEPLOYMENT = """\
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: api
    spec:
      replicas: 3
      selector:
        matchLabels: {app: api}
      template:
        metadata:
          labels: {app: api}
        spec:
          containers:
            - name: api
              image: ghcr.io/example/api:1.4.2
              ports:
                - containerPort: 8080
              resources:
                requests: {cpu: 100m, memory: 128Mi}
                limits: {cpu: 500m, memory: 256Mi}
    """


def check(root: Path) -> Report:
    return run_check(root, None, Config.default(), cache=DiskCache(None))


def invalid(report: Report) -> list[Finding]:
    return [f for f in report.findings if f.rule == "invalid-manifest"]



def overlay(tmp_path: Path, patch: str, base: str = DEPLOYMENT) -> Path:
    return write(tmp_path, {
        "clusters/production/apps.yaml": flux_kustomization("./overlays/production"),
        "base/kustomization.yaml": "resources: [deployment.yaml]\n",
        "base/deployment.yaml": base,
        "overlays/production/kustomization.yaml": "resources: [../../base]\npatches:\n  - path: patch.yaml\n",
        "overlays/production/patch.yaml": patch,
    })


PATCH_HEAD = textwrap.dedent("""\
    apiVersion: apps/v1
    kind: Deployment
    metadata:
      name: api
    spec:
    """)


def test_a_typo_in_an_overlay_patch_is_found_in_the_patch_with_a_rename(tmp_path):
    root = overlay(tmp_path, PATCH_HEAD + "  replcas: 2\n")
    (f,) = invalid(check(root))
    assert (f.origin.file, f.origin.line) == ("overlays/production/patch.yaml", 6)
    assert "`spec.replcas`: unknown field — did you mean `replicas`?" in f.message
    assert f.severity == "error" and f.field == "spec.replcas"
    assert f.suggestion is not None and f.suggestion.text == "  replicas: 2"


def test_a_misspelt_probe_in_a_base_is_found_at_its_line(tmp_path):
    base = DEPLOYMENT.replace("              ports:", "              livenessprobe: {httpGet: {path: /, port: 8080}}\n"
                                                   "              ports:")
    root = overlay(tmp_path, PATCH_HEAD + "  replicas: 3\n", base)
    (f,) = invalid(check(root))
    assert (f.origin.file, f.origin.line) == ("base/deployment.yaml", line_of(root, "base/deployment.yaml", "livenessprobe"))
    assert "containers[api].livenessprobe`: unknown field — did you mean `livenessProbe`?" in f.message
    assert f.suggestion is not None and f.suggestion.text.strip().startswith("livenessProbe:")


@pytest.mark.parametrize(("patch", "says", "at"), [
    ("  template:\n    spec:\n      containers:\n        - name: api\n          ports:\n            - containerPort: '80'\n",
     "a string ('80') where an integer belongs", "containerPort: '80'"),
    ("  template:\n    spec:\n      containers:\n        - name: api\n          resources:\n            limits: {cpu: 500 m}\n",
     "'500 m' is not a Kubernetes quantity", "limits: {cpu: 500 m}"),
])
def test_types_quantities_and_required_fields_are_checked_where_the_patch_wrote_them(tmp_path, patch, says, at):
    root = overlay(tmp_path, PATCH_HEAD + patch)
    found = invalid(check(root))
    assert found, "no invalid-manifest finding"
    (f,) = [f for f in found if says in f.message]
    assert (f.origin.file, f.origin.line) == ("overlays/production/patch.yaml",
                                              line_of(root, "overlays/production/patch.yaml", at))


def test_a_required_field_missing_in_a_base_is_found_at_the_item(tmp_path):
    base = DEPLOYMENT.replace("              resources:", "            - image: busybox:1.36\n              resources:", 1)
    root = overlay(tmp_path, PATCH_HEAD + "  replicas: 3\n", base)
    # Without a patch: a strategic merge drops a list item that lacks its merge key.
    (root / "overlays/production/kustomization.yaml").write_text("resources: [../../base]\n")
    (f,) = [f for f in invalid(check(root)) if "required field `name` is missing" in f.message]
    assert (f.origin.file, f.origin.line) == ("base/deployment.yaml", line_of(root, "base/deployment.yaml", "- image: busybox"))


def test_two_containers_of_one_name_in_a_patch_are_found_before_the_merge_hides_them(tmp_path):
    patch = PATCH_HEAD + textwrap.indent(textwrap.dedent("""\
        template:
          spec:
            containers:
              - name: api
                image: ghcr.io/example/api:1.5.0
              - name: api
                env: [{name: MODE, value: fast}]
        """), "  ")
    root = overlay(tmp_path, patch)
    found = invalid(check(root))
    (f,) = found
    assert f.origin.file == "overlays/production/patch.yaml"
    assert f.origin.line == [n for n, line in enumerate((root / "overlays/production/patch.yaml").read_text()
                                                        .splitlines(), 1) if "- name: api" in line][1]
    assert "holds the name 'api' twice" in f.message and "strategic merge keeps one of the two" in f.message


def test_duplicate_env_vars_and_ports_in_a_base_are_found_once(tmp_path):
    base = DEPLOYMENT.replace("              ports:\n                - containerPort: 8080\n",
                              "              ports:\n                - containerPort: 8080\n"
                              "                - {containerPort: 8080, protocol: TCP}\n"
                              "              env:\n                - {name: A, value: '1'}\n                - {name: A, value: '2'}\n")
    root = overlay(tmp_path, PATCH_HEAD + "  replicas: 3\n", base)
    found = invalid(check(root))
    assert len(found) == 2 and {f.origin.file for f in found} == {"base/deployment.yaml"}
    said = " ".join(f.message for f in found)
    assert "`spec.template.spec.containers[api].env` holds the name 'A' twice" in said
    assert "`spec.template.spec.containers[api].ports` holds the containerPort 8080 and the protocol 'TCP' twice" in said


def test_a_postbuild_substitution_that_yields_a_wrong_type_is_found_at_the_variable(tmp_path):
    root = overlay(tmp_path, PATCH_HEAD + "  replicas: ${REPLICAS}\n")
    flux = (root / "clusters/production/apps.yaml")
    flux.write_text(flux.read_text() + "  postBuild:\n    substitute:\n      REPLICAS: three\n")
    (f,) = invalid(check(root))
    assert "`spec.replicas`: a string ('three') where an integer belongs" in f.message
    assert (f.origin.file, f.origin.line) == ("clusters/production/apps.yaml",
                                              line_of(root, "clusters/production/apps.yaml", "REPLICAS: three"))


def test_a_sops_encrypted_secret_is_validated_without_its_sops_metadata(tmp_path):
    secret = textwrap.dedent("""\
        apiVersion: v1
        kind: Secret
        metadata: {name: s}
        stringData: {TOKEN: ENC[AES256_GCM,data:abc,iv:def,tag:ghi,type:str]}
        sops: {mac: x, version: 3.8.1}
        """)
    root = overlay(tmp_path, PATCH_HEAD + "  replicas: 3\n")
    (root / "base/secret.yaml").write_text(secret)
    (root / "base/kustomization.yaml").write_text("resources: [deployment.yaml, secret.yaml]\n")
    assert not invalid(check(root))


def test_a_kind_defined_by_a_crd_in_the_repository_is_validated_and_others_are_counted(tmp_path):
    crd = textwrap.dedent("""\
        apiVersion: apiextensions.k8s.io/v1
        kind: CustomResourceDefinition
        metadata: {name: widgets.example.com}
        spec:
          group: example.com
          names: {kind: Widget, plural: widgets}
          scope: Namespaced
          versions:
            - name: v1
              served: true
              storage: true
              schema:
                openAPIV3Schema:
                  type: object
                  properties:
                    spec:
                      type: object
                      properties:
                        size: {type: integer}
        """)
    objects = textwrap.dedent("""\
        apiVersion: example.com/v1
        kind: Widget
        metadata: {name: w}
        spec: {sise: 3}
        ---
        apiVersion: example.org/v1
        kind: Gadget
        metadata: {name: g}
        spec: {anything: true}
        """)
    root = overlay(tmp_path, PATCH_HEAD + "  replicas: 3\n")
    (root / "crds").mkdir()
    (root / "crds/widget.yaml").write_text(crd)
    (root / "base/objects.yaml").write_text(objects)
    (root / "base/kustomization.yaml").write_text("resources: [deployment.yaml, objects.yaml]\n")
    report = check(root)
    (f,) = invalid(report)
    assert "`spec.sise`: unknown field — did you mean `size`?" in f.message and f.origin.file == "base/objects.yaml"
    assert any("1 object of 1 kind without a schema were not validated (`Gadget (example.org/v1)`)" in n
               for n in report.notes)


def test_chart_output_is_validated_too(tmp_path):
    files = {
        "clusters/production/apps.yaml": flux_kustomization("./deploy"),
        "deploy/kustomization.yaml": "resources: [release.yaml]\n",
        "deploy/release.yaml": textwrap.dedent("""\
            apiVersion: helm.toolkit.fluxcd.io/v2
            kind: HelmRelease
            metadata: {name: app, namespace: apps}
            spec:
              interval: 10m
              chart:
                spec:
                  chart: ./charts/app
                  sourceRef: {kind: GitRepository, name: flux-system, namespace: flux-system}
              values: {port: "8080"}
            """),
        "charts/app/Chart.yaml": "apiVersion: v2\nname: app\nversion: 1.0.0\n",
        "charts/app/values.yaml": "port: 8080\n",
        "charts/app/templates/service.yaml": textwrap.dedent("""\
            apiVersion: v1
            kind: Service
            metadata: {name: app}
            spec:
              selector: {app: app}
              ports:
                - {name: http, port: {{ .Values.port }}}
                - {name: http, port: {{ .Values.port }}}
            """),
    }
    report = check(write(tmp_path, files))
    messages = " ".join(f.message for f in invalid(report))
    assert "holds the port 8080 and the protocol 'TCP' twice" in messages


@pytest.mark.parametrize(("api_version", "builtin"), [
    ("v1", True), ("apps/v1", True), ("rbac.authorization.k8s.io/v1", True), ("gateway.networking.k8s.io/v1", True),
    ("cert-manager.io/v1", False), ("kustomize.toolkit.fluxcd.io/v1", False),
])
def test_builtin_groups_are_told_from_custom_ones(api_version, builtin):
    assert builtin_group(api_version) is builtin


def test_nearest_prefers_a_case_difference_then_a_close_spelling():
    known = ["livenessProbe", "readinessProbe", "ports", "resources"]
    assert nearest("livenessprobe", known) == "livenessProbe"
    assert nearest("resoures", known) == "resources"
    assert nearest("tolerations", known) is None


def test_an_unknown_kind_has_no_problems_and_a_valid_object_none():
    catalog = Catalog("1.33.0")
    assert problems(catalog, {"apiVersion": "example.org/v1", "kind": "Gadget"}) is None
    ok = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {"a": "b"}}
    assert problems(catalog, ok) == []


def test_an_item_without_its_key_is_found_in_the_document_before_a_merge_drops_it(tmp_path):
    base = DEPLOYMENT.replace("              resources:", "            - image: busybox:1.36\n              resources:", 1)
    root = overlay(tmp_path, PATCH_HEAD + "  replicas: 3\n", base)
    found = invalid(check(root))
    (f,) = [f for f in found if "has no `name`, the key of its list" in f.message]
    assert (f.origin.file, f.origin.line) == ("base/deployment.yaml", line_of(root, "base/deployment.yaml", "- image: busybox"))
    assert "drops the item without a word" in f.message


def test_a_vendored_flux_crd_validates_flux_objects_but_not_the_kinds_an_alert_may_name():
    catalog = Catalog("1.33.0")
    kustomization = {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                     "metadata": {"name": "apps"},
                     "spec": {"intervall": "10m", "interval": "10m", "prune": True, "path": "./apps",
                              "sourceRef": {"kind": "GitRepository", "name": "flux-system"}}}
    (typo,) = problems(catalog, kustomization) or []
    assert typo.message == "`spec.intervall`: unknown field — did you mean `interval`?"
    alert = {"apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Alert", "metadata": {"name": "a"},
             "spec": {"providerRef": {"name": "slack"}, "eventSeverity": "erorr",
                      "eventSources": [{"kind": "FluxInstance", "name": "flux"}]}}
    (severity,) = problems(catalog, alert) or []
    assert severity.path == "spec.eventSeverity" and severity.kind == "enum"
