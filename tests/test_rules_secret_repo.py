"""hardcoded-secret on manifests no target renders, and placeholders that are not secrets."""

from __future__ import annotations

from pathlib import Path

from trees import write

from bot.config import Config
from bot.review.pipeline import run_check

SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: {name}
stringData:
  password: {value}
"""



def secrets(root: Path) -> list:
    return [f for f in run_check(root, None, Config.default()).findings if f.rule == "hardcoded-secret"]


def test_a_stray_secret_no_target_renders_is_still_flagged(tmp_path):
    root = write(tmp_path, {
        "overlays/staging/kustomization.yaml": "resources:\n- secret.yaml\n",
        "overlays/staging/secret.yaml": SECRET.format(name="rendered", value="s3cr3t-rendered-value"),
        "overlays/staging/unused/secret.yaml": SECRET.format(name="stray", value="s3cr3t-stray-value"),
    })
    found = secrets(root)
    where = sorted((f.origin.file, f.environment, f.resource.name) for f in found)
    assert where == [("overlays/staging/secret.yaml", "staging", "rendered"),
                     ("overlays/staging/unused/secret.yaml", "staging", "stray")], "each once, none twice"
    assert all("s3cr3t" not in f.message for f in found)


def test_references_to_secret_stores_are_not_secrets(tmp_path):
    root = write(tmp_path, {
        "overlays/production/kustomization.yaml": "resources:\n- a.yaml\n- b.yaml\n",
        "overlays/production/a.yaml": SECRET.format(name="a", value="op://vault/item/password"),
        "overlays/production/b.yaml": SECRET.format(name="b", value="<path:secret/data/db#password>"),
        "bootstrap/c.yaml": SECRET.format(name="c", value="'${DB_PASSWORD}'"),
    })
    assert secrets(root) == []


def test_url_password_templates_are_not_credentials(tmp_path):
    """frigate's rtsp://view:{FRIGATE_RTSP_PASSWORD}@... (billimek/k8s-gitops) is filled in at run time."""
    cm = ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n"
          "  a: rtsp://view:{FRIGATE_RTSP_PASSWORD}@porch.home:554/cam\n  b: postgres://app:hunter2hunter2@db:5432/app\n")
    root = write(tmp_path, {"overlays/production/kustomization.yaml": "resources:\n- cm.yaml\n",
                            "overlays/production/cm.yaml": cm})
    assert [f.field for f in secrets(root)] == ["data.b"]


def test_backends_and_selectors_in_helm_namespaces_are_not_judged(tmp_path):
    """Charts are not rendered offline: what a HelmRelease installs cannot be seen, so a route or a
    Service pointing at it is not reported missing; elsewhere it still is."""
    route = ("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: r\n  namespace: {ns}\n"
             "spec:\n  rules:\n  - backendRefs:\n    - name: web\n      port: 80\n")
    svc = ("apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n  namespace: {ns}\nspec:\n  selector:\n"
           "    app: web\n  ports:\n  - port: 80\n")
    hr = ("apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata:\n  name: web\n  namespace: apps\n"
          "spec:\n  chart:\n    spec:\n      chart: web\n")
    root = write(tmp_path, {
        "overlays/production/kustomization.yaml": "resources:\n- a.yaml\n- b.yaml\n- c.yaml\n- d.yaml\n- hr.yaml\n",
        "overlays/production/a.yaml": route.format(ns="apps"), "overlays/production/b.yaml": svc.format(ns="apps"),
        "overlays/production/c.yaml": route.format(ns="other"), "overlays/production/d.yaml": svc.format(ns="other"),
        "overlays/production/hr.yaml": hr,
    })
    found = run_check(root, None, Config.default()).findings
    judged = sorted((f.rule, f.resource.namespace) for f in found if f.rule in ("route-backend", "service-selector"))
    assert judged == [("route-backend", "other"), ("service-selector", "other")]
