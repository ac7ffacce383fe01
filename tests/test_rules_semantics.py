"""Issue 9, sections 2 and 3: objects the repository creates indirectly, and Kubernetes' own semantics.

Each test is a minimal reproduction: a few manifests on which the rules used to say something false
(an object "does not exist" that a controller creates, a numeric port "not declared", requests
"missing" where Kubernetes sets them to the limits).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from trees import flux_kustomization, write

from bot.config import Config, parse_config
from bot.render.build import DiskCache
from bot.repo.discover import RepoModel
from bot.repo.tree import RepoTree
from bot.review.pipeline import run_check
from bot.review.run_rules import run_env_rules, run_repo_rules
from rules import get_rule
from rules.creators import created_by, expand
from rules.testing import env_from_yaml, of_rule


def run(ctx, rule_id):
    rule = get_rule(rule_id)
    return list(rule.check(ctx, rule))


def route(backend: str, ns: str = "shop") -> str:
    return f"""
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: hooks, namespace: {ns}}}
spec:
  rules:
    - backendRefs:
        - {{name: {backend}, port: 8080}}
"""


EVENT_LISTENER = """
---
apiVersion: triggers.tekton.dev/v1beta1
kind: EventListener
metadata: {name: github, namespace: shop}
spec:
  serviceAccountName: tekton-triggers
  triggers: []
"""


# --- section 2: objects that something in the repository creates ------------------------------


def test_route_to_the_service_a_tekton_event_listener_creates_is_not_missing(tmp_path):
    """Tekton names the EventListener's Service `el-<name>`: a route to it is fine."""
    ctx = env_from_yaml(tmp_path, EVENT_LISTENER + route("el-github"))
    assert run(ctx, "route-backend") == []
    # The listener's name is what counts: another name is still reported.
    (f,) = run(env_from_yaml(tmp_path, EVENT_LISTENER + route("el-gitlab")), "route-backend")
    assert f.field == "spec.rules[0].backendRefs[0].name"


def test_route_to_a_knative_service_is_not_missing(tmp_path):
    knative = ("apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: hello, namespace: shop}\n"
               "spec:\n  template:\n    spec:\n      containers: [{image: 'hello:1'}]\n")
    assert run(env_from_yaml(tmp_path, knative + route("hello")), "route-backend") == []


def test_a_backend_nothing_defines_is_a_warning_not_defined_in_this_repository(tmp_path):
    """It may be managed elsewhere: a warning in true words, not an error saying it does not exist."""
    ctx = env_from_yaml(tmp_path, route("billing"))
    (f,) = run(ctx, "route-backend")
    assert f.severity == "warning"
    assert "is not defined in this repository (it may be managed elsewhere; if not," in f.message
    assert "does not exist" not in f.message
    # A per-repository severity still raises it; the environment rules' runner applies it.
    config = parse_config("rules:\n  route-backend: {severity: error}\n")
    (raised,) = of_rule(run_env_rules(ctx, config), "route-backend")
    assert raised.severity == "error"
    (default,) = of_rule(run_env_rules(ctx, Config.default()), "route-backend")
    assert default.severity == "warning"


def test_a_backend_the_repository_renders_in_another_namespace_stays_an_error(tmp_path):
    svc = "apiVersion: v1\nkind: Service\nmetadata: {name: billing, namespace: pay}\nspec:\n  ports: [{port: 8080}]\n"
    (f,) = run(env_from_yaml(tmp_path, svc + route("billing")), "route-backend")
    assert f.severity == "error" and "not rendered in production" in f.message
    assert "rendered in namespace pay" in f.message


def test_a_backend_renamed_by_a_name_prefix_stays_an_error_naming_the_file(tmp_path):
    """The base defines Service `api`; the overlay's namePrefix renders it `prod-api`, and the route
    (whose backendRefs kustomize does not rename) still says `api`: the repository defines it, so this
    is the real mistake the rule exists for."""
    root = write(tmp_path / "repo", {
        "base/kustomization.yaml": "resources:\n- service.yaml\n- route.yaml\n",
        "base/service.yaml": "apiVersion: v1\nkind: Service\nmetadata:\n  name: api\n  namespace: shop\n"
                             "spec:\n  ports:\n  - port: 8080\n",
        "base/route.yaml": route("api").lstrip("-\n"),
        "overlays/production/kustomization.yaml": "namePrefix: prod-\nresources:\n- ../../base\n",
    })
    report = run_check(root, None, Config.default(), cache=DiskCache(None))
    (f,) = of_rule(report.findings, "route-backend")
    assert f.severity == "error"
    assert "not rendered in production" in f.message and "`base/service.yaml`" in f.message


def test_repository_creators_extend_the_table(tmp_path):
    """`creators:` in .github/infra-review.yml (bot.config.Creator) adds kinds to the built-in table."""
    crd = "apiVersion: example.com/v1\nkind: Webhook\nmetadata: {name: github, namespace: shop}\nspec: {}\n"
    write(tmp_path, {"overlays/production/kustomization.yaml": "resources:\n- hooks.yaml\n",
                     "overlays/production/hooks.yaml": crd + route("github-webhook")})

    def backends(config: Config) -> list:
        report = run_check(tmp_path, None, config, cache=DiskCache(None))
        return [f for f in report.findings if f.rule == "route-backend"]

    assert len(backends(Config.default())) == 1
    config = "creators:\n- {kind: Webhook, group: example.com, creates: {kind: Service, name: '{name}-webhook'}}\n"
    assert backends(parse_config(config)) == []


@pytest.mark.parametrize(
    ("doc", "created"),
    [
        ("apiVersion: fluxcd.controlplane.io/v1\nkind: FluxInstance\nmetadata: {name: flux, namespace: flux-system}\n"
         "spec:\n  sync: {kind: OCIRepository, url: 'oci://x', ref: latest, path: ./}\n",
         {("OCIRepository", "flux-system", "flux-system"), ("Kustomization", "flux-system", "flux-system")}),
        ("apiVersion: fluxcd.controlplane.io/v1\nkind: FluxInstance\nmetadata: {name: flux, namespace: flux-system}\n"
         "spec:\n  sync: {kind: GitRepository, name: cluster, url: 'https://x', ref: main, path: ./}\n",
         {("GitRepository", "flux-system", "cluster"), ("Kustomization", "flux-system", "cluster")}),
        ("apiVersion: fluxcd.controlplane.io/v1\nkind: FluxInstance\nmetadata: {name: flux, namespace: flux-system}\n"
         "spec: {distribution: {version: 2.x}}\n", set()),  # no sync: nothing is generated
        ("apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: web, namespace: shop}\n"
         "spec: {secretName: web-tls}\n", {("Secret", "shop", "web-tls")}),
        ("apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: db, namespace: shop}\n"
         "spec: {target: {name: db-creds}}\n", {("Secret", "shop", "db-creds")}),
        ("apiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {name: db, namespace: shop}\n"
         "spec: {}\n", {("Secret", "shop", "db")}),
        ("apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {name: db, namespace: shop}\n"
         "spec: {}\n", {("Secret", "shop", "db")}),
        ("apiVersion: example.com/v1\nkind: EventListener\nmetadata: {name: x, namespace: shop}\n", set()),  # group
    ],
)  # fmt: skip
def test_the_built_in_table(doc, created):
    import yaml

    assert set(created_by([yaml.safe_load(doc)])) == created


def test_templates_need_every_field():
    data = {"metadata": {"name": "a", "namespace": "n"}, "spec": {"x": {"y": "z"}, "flag": True}}
    assert expand("{name}-{spec.x.y}", data) == "a-z"
    assert expand("{spec.missing}", data) is None and expand("{spec.flag}", data) is None
    assert expand("{spec.x}", data) is None  # a mapping is not a name


def flux_findings(root: Path, config: str | None = None):
    found = run_repo_rules(RepoModel(RepoTree(root)), parse_config(config))
    return [f for f in of_rule(found, "flux-config") if f.field == "spec.sourceRef.name"]


def test_the_sync_source_a_flux_instance_creates_is_defined(tmp_path):
    """The Flux Operator names the sync source after the FluxInstance's namespace (or `spec.sync.name`)."""
    instance = ("apiVersion: fluxcd.controlplane.io/v1\nkind: FluxInstance\nmetadata:\n  name: flux\n"
                "  namespace: flux-system\nspec:\n  distribution: {version: 2.x, registry: ghcr.io/fluxcd}\n"
                "  sync:\n    kind: OCIRepository\n    url: oci://ghcr.io/org/fleet\n    ref: latest\n"
                "    path: clusters/production\n")
    write(tmp_path, {
        "apps/kustomization.yaml": "resources: []\n",
        "clusters/production/apps.yaml": flux_kustomization("./apps", source="OCIRepository/flux-system"),
        "clusters/production/flux-system/instance.yaml": instance,
    })
    assert flux_findings(tmp_path) == []
    # Without the instance nothing defines it: a warning that says it may be managed elsewhere.
    (tmp_path / "clusters/production/flux-system/instance.yaml").unlink()
    (f,) = flux_findings(tmp_path)
    assert f.severity == "warning"
    assert "is not defined in this repository (it may be managed elsewhere; if not," in f.message


def test_the_sync_source_of_the_flux_instance_chart_is_defined(tmp_path):
    """onedr0p/home-ops installs the FluxInstance with the Flux Operator's flux-instance chart."""
    release = ("apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: flux-instance\n"
               "  namespace: flux-system\nspec:\n  interval: 1h\n  chartRef: {kind: OCIRepository, name: flux-instance}\n"
               "  values:\n    instance:\n      sync:\n        kind: OCIRepository\n        url: oci://x\n"
               "        ref: latest\n        path: clusters/production\n")
    oci = ("apiVersion: source.toolkit.fluxcd.io/v1\nkind: OCIRepository\nmetadata: {name: flux-instance, "
           "namespace: flux-system}\nspec: {url: 'oci://ghcr.io/controlplaneio-fluxcd/charts/flux-instance'}\n")
    write(tmp_path, {
        "apps/kustomization.yaml": "resources: []\n",
        "clusters/production/apps.yaml": flux_kustomization("./apps", source="OCIRepository/flux-system"),
        "clusters/production/flux-system/release.yaml": release + "---\n" + oci,
    })
    assert flux_findings(tmp_path) == []


def test_repository_creators_define_flux_sources(tmp_path):
    write(tmp_path, {
        "apps/kustomization.yaml": "resources: []\n",
        "clusters/production/apps.yaml": flux_kustomization("./apps", source="GitRepository/team-a"),
        "clusters/production/tenant.yaml": "apiVersion: example.com/v1\nkind: Tenant\nmetadata: {name: team-a}\n",
    })
    assert len(flux_findings(tmp_path)) == 1
    config = "creators:\n- {kind: Tenant, group: example.com, creates: {kind: GitRepository, name: '{name}'}}\n"
    assert flux_findings(tmp_path, config) == []


# --- section 3: Kubernetes' own semantics ----------------------------------------------------

POD = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: api, namespace: shop}}
spec:
  template:
    metadata: {{labels: {{app: api}}}}
    spec:
      containers:
        - name: api
          image: a:1
{extra}"""


def test_a_numeric_probe_port_works_whether_or_not_it_is_declared(tmp_path):
    extra = "          readinessProbe: {httpGet: {path: /, port: 8080}}\n          livenessProbe: {tcpSocket: {port: 8080}}\n"
    assert run(env_from_yaml(tmp_path, POD.format(extra=extra)), "probe-port") == []


def test_a_named_probe_port_the_container_does_not_declare_is_an_error(tmp_path):
    extra = ("          ports: [{containerPort: 8080, name: http}]\n"
             "          readinessProbe: {httpGet: {path: /, port: web}}\n")
    (f,) = run(env_from_yaml(tmp_path, POD.format(extra=extra)), "probe-port")
    assert f.severity == "error" and "the port named 'web'" in f.message and "http" in f.message


SERVICE = """
---
apiVersion: v1
kind: Service
metadata: {{name: api, namespace: shop}}
spec:
  selector: {selector}
  ports:
    - {{name: web, port: 80, targetPort: {target}}}
"""


def test_a_numeric_target_port_works_whether_or_not_it_is_declared(tmp_path):
    text = POD.format(extra="") + SERVICE.format(selector="{app: api}", target=8080)
    assert run(env_from_yaml(tmp_path, text), "service-selector") == []


def test_a_named_target_port_the_pods_do_not_declare_is_reported(tmp_path):
    text = POD.format(extra="") + SERVICE.format(selector="{app: api}", target="http")
    (f,) = run(env_from_yaml(tmp_path, text), "service-selector")
    assert (f.severity, f.field) == ("warning", "spec.ports[web].targetPort") and "named 'http'" in f.message


def test_a_selector_label_no_template_carries_may_come_at_run_time(tmp_path):
    """A leader-election label on the leader pod: the selector looks empty offline. Still a warning,
    saying that possibility and naming the label."""
    text = POD.format(extra="") + SERVICE.format(selector="{app: api, role: leader}", target=8080)
    (f,) = run(env_from_yaml(tmp_path, text), "service-selector")
    assert f.severity == "warning" and f.field == "spec.selector"
    assert "role=leader is on no pod template of the namespace at all" in f.message
    assert "run time" in f.message and "leader" in f.message


def test_a_selector_whose_labels_are_all_carried_but_not_together_says_no_run_time_story(tmp_path):
    other = POD.format(extra="").replace("name: api, namespace", "name: worker, namespace").replace(
        "{app: api}}", "{app: worker, tier: web}}")
    text = POD.format(extra="") + "---\n" + other + SERVICE.format(selector="{app: api, tier: web}", target=8080)
    (f,) = run(env_from_yaml(tmp_path, text), "service-selector")
    assert "no pod template this repository renders in namespace shop of production carries all of them" in f.message
    assert "run time" not in f.message


def test_a_selector_for_pods_a_controller_creates_names_the_creator(tmp_path):
    text = EVENT_LISTENER + SERVICE.format(selector="{eventlistener: github}", target=8080)
    (f,) = run(env_from_yaml(tmp_path, text), "service-selector")
    assert f.severity == "warning"
    assert "EventListener shop/github creates Deployment el-github" in f.message


def deployment(resources: str) -> str:
    return POD.format(extra=resources)


def test_limits_only_is_complete_since_requests_default_to_limits(tmp_path):
    text = deployment("          resources:\n            limits: {cpu: 500m, memory: 1Gi}\n")
    assert run(env_from_yaml(tmp_path, text), "missing-resources") == []
    # Per resource: a request with no limit of its own is missing, and said in true words.
    text = deployment("          resources:\n            limits: {memory: 1Gi}\n")
    (f,) = run(env_from_yaml(tmp_path, text), "missing-resources")
    assert "requests.cpu, limits.cpu" in f.message and "requests.memory" not in f.message
    assert "neither a request nor a limit for cpu" in f.message


@pytest.mark.parametrize(
    ("resources", "words"),
    [
        ("", "neither a request nor a limit for cpu and memory, the scheduler reserves no cpu and memory"),
        ("          resources:\n            requests: {cpu: 100m, memory: 128Mi}\n",
         "a request but no limit for cpu and memory, one pod can take all the cpu and memory its node has spare"),
    ],
)  # fmt: skip
def test_missing_resources_say_what_is_actually_missing(tmp_path, resources, words):
    (f,) = run(env_from_yaml(tmp_path, deployment(resources)), "missing-resources")
    assert words in f.message and "packs pods blindly" not in f.message
