"""Provenance through every kind of layer: the exact file and line that set a value, and where an
absent field is reported (issue 8, provenance).

One tree uses every mechanism once, on distinct fields: a base, a multi-document file, a strategic-
merge patch file, an inline patch, JSON 6902 ops, `images`, `replicas`, a generator merged with
`behavior: merge`, a component (its patch and its images), and a Flux Kustomization (its patches,
images and postBuild substitution); a second Flux Kustomization builds a folder with no
kustomization file (Flux generates one).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bot.model import Origin
from bot.objects import RenderedObject
from bot.render.build import DiskCache, Renderer
from bot.repo.discover import RepoModel
from bot.repo.tree import RepoTree

FILES = {
    "base/app/kustomization.yaml": """\
        resources:
        - deployment.yaml
        - extra.yaml
        configMapGenerator:
        - name: app-config
          literals:
          - MODE=base
          - LOG=info
        """,
    "base/app/deployment.yaml": """\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: app
        spec:
          replicas: 1
          template:
            spec:
              containers:
              - name: app
                image: ghcr.io/x/app:1.0
                env:
                - name: REGION
                  value: ${region}
                - name: FROM_BASE
                  value: base
                resources:
                  requests:
                    cpu: 100m
                startupProbe:
                  tcpSocket: {port: 80}
              - name: sidecar
                image: ghcr.io/x/sidecar:1.0
              - name: helper
                image: ghcr.io/x/helper:1.0
                livenessProbe:
                  tcpSocket: {port: 80}
              - name: exporter
                image: ghcr.io/x/helper-exporter:0.1
        """,
    "base/app/extra.yaml": """\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: static
        data:
          key: one
        ---
        apiVersion: v1
        kind: Service
        metadata:
          name: app
        spec:
          ports:
          - port: 8080
        """,
    "components/tracing/kustomization.yaml": """\
        apiVersion: kustomize.config.k8s.io/v1alpha1
        kind: Component
        patches:
        - path: patch.yaml
        images:
        - name: ghcr.io/x/sidecar
          newTag: "2.0"
        """,
    "components/tracing/patch.yaml": """\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: app
        spec:
          template:
            spec:
              containers:
              - name: app
                env:
                - name: TRACING
                  value: "on"
        """,
    "overlays/production/kustomization.yaml": """\
        resources:
        - ../../base/app
        components:
        - ../../components/tracing
        patches:
        - path: patch-deployment.yaml
        - patch: |-
            apiVersion: apps/v1
            kind: Deployment
            metadata:
              name: app
              annotations:
                team: shop
        - path: json.yaml
          target: {kind: Deployment, name: app}
        images:
        - name: ghcr.io/x/app
          newTag: "1.1"
        replicas:
        - name: app
          count: 3
        configMapGenerator:
        - name: app-config
          behavior: merge
          literals:
          - MODE=prod
        labels:
        - pairs:
            tier: web
        transformers:
        - labels.yaml
        - |-
          apiVersion: builtin
          kind: PatchTransformer
          metadata:
            name: deadline
          patch: |-
            - op: add
              path: /spec/progressDeadlineSeconds
              value: 120
          target:
            kind: Deployment
        """,
    "overlays/production/labels.yaml": """\
        apiVersion: builtin
        kind: LabelTransformer
        metadata:
          name: labels
        labels:
          app.kubernetes.io/instance: app-production
          tier: frontend
        fieldSpecs:
        - path: metadata/labels
          create: true
        ---
        apiVersion: builtin
        kind: AnnotationsTransformer
        metadata:
          name: owner
        annotations:
          owner: team-shop
        fieldSpecs:
        - path: metadata/annotations
          create: true
        """,
    "overlays/production/patch-deployment.yaml": """\
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: app
        spec:
          template:
            spec:
              containers:
              - name: app
                resources:
                  limits:
                    cpu: 500m
                startupProbe: null
              - name: sidecar
                args: [--verbose]
        """,
    "overlays/production/json.yaml": """\
        - op: add
          path: /spec/minReadySeconds
          value: 5
        - op: remove
          path: /spec/template/spec/containers/2/livenessProbe
        """,
    "clusters/production/apps.yaml": """\
        apiVersion: kustomize.toolkit.fluxcd.io/v1
        kind: Kustomization
        metadata:
          name: apps
          namespace: flux-system
        spec:
          interval: 10m
          path: ./overlays/production
          prune: true
          wait: true
          sourceRef:
            kind: GitRepository
            name: flux-system
          patches:
          - patch: |
              apiVersion: apps/v1
              kind: Deployment
              metadata:
                name: app
                labels:
                  flux-patched: "yes"
          images:
          - name: ghcr.io/x/helper
            newTag: "3.0"
          postBuild:
            substitute:
              region: eu-west-1
        ---
        apiVersion: kustomize.toolkit.fluxcd.io/v1
        kind: Kustomization
        metadata:
          name: plain
          namespace: flux-system
        spec:
          interval: 10m
          path: ./plain
          prune: true
          wait: true
          sourceRef:
            kind: GitRepository
            name: flux-system
        """,
    "plain/cm.yaml": """\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: plain
        data:
          greeting: hello
        """,
}

CONTAINERS = "spec.template.spec.containers"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("layers")
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(textwrap.dedent(text))
    return root


@pytest.fixture(scope="module")
def objects(tree: Path) -> dict[tuple[str, str], RenderedObject]:
    model = RepoModel(RepoTree(tree))
    out: dict[tuple[str, str], RenderedObject] = {}
    renderer = Renderer(model, cache=DiskCache(None))
    for target in model.targets:
        rendered = renderer.render(target)
        assert rendered.ok, rendered.error
        for ro in rendered.objects:
            name = ro.name.rsplit("-", 1)[0] if ro.origin().via == "generator" else ro.name
            out[(ro.kind, name)] = ro
    return out


def line(rel: str, text: str, after: str | None = None) -> int:
    """1-based line of the first line of `rel` holding `text` (after the line holding `after`)."""
    lines = textwrap.dedent(FILES[rel]).splitlines()
    start = next(i for i, ln in enumerate(lines) if after in ln) + 1 if after else 0
    return next(i for i, ln in enumerate(lines) if i >= start and text in ln) + 1


def where(origin: Origin) -> tuple[str | None, int | None]:
    return origin.file, origin.line


DEPLOY = "base/app/deployment.yaml"
OVERLAY = "overlays/production/kustomization.yaml"
PATCH = "overlays/production/patch-deployment.yaml"
FLUX = "clusters/production/apps.yaml"

PRESENT = [
    ("base", ("Deployment", "app"), f"{CONTAINERS}[app].env[FROM_BASE].value", (DEPLOY, line(DEPLOY, "value: base"))),
    ("multi-document file", ("Service", "app"), "spec.ports[0].port",
     ("base/app/extra.yaml", line("base/app/extra.yaml", "port: 8080"))),
    ("strategic-merge patch file", ("Deployment", "app"), f"{CONTAINERS}[app].resources.limits.cpu",
     (PATCH, line(PATCH, "cpu: 500m"))),
    ("inline patch", ("Deployment", "app"), "metadata.annotations.team", (OVERLAY, line(OVERLAY, "team: shop"))),
    ("JSON 6902 op", ("Deployment", "app"), "spec.minReadySeconds",
     ("overlays/production/json.yaml", line("overlays/production/json.yaml", "value: 5"))),
    ("images", ("Deployment", "app"), f"{CONTAINERS}[app].image", (OVERLAY, line(OVERLAY, 'newTag: "1.1"'))),
    ("replicas", ("Deployment", "app"), "spec.replicas", (OVERLAY, line(OVERLAY, "count: 3"))),
    ("generator behavior: merge", ("ConfigMap", "app-config"), "data.MODE", (OVERLAY, line(OVERLAY, "- MODE=prod"))),
    ("generator base literal", ("ConfigMap", "app-config"), "data.LOG",
     ("base/app/kustomization.yaml", line("base/app/kustomization.yaml", "- LOG=info"))),
    ("component patch", ("Deployment", "app"), f"{CONTAINERS}[app].env[TRACING].value",
     ("components/tracing/patch.yaml", line("components/tracing/patch.yaml", 'value: "on"'))),
    ("component images", ("Deployment", "app"), f"{CONTAINERS}[sidecar].image",
     ("components/tracing/kustomization.yaml", line("components/tracing/kustomization.yaml", 'newTag: "2.0"'))),
    ("Flux postBuild substitution", ("Deployment", "app"), f"{CONTAINERS}[app].env[REGION].value",
     (FLUX, line(FLUX, "region: eu-west-1"))),
    ("Flux patches", ("Deployment", "app"), "metadata.labels.flux-patched", (FLUX, line(FLUX, 'flux-patched: "yes"'))),
    ("Flux images", ("Deployment", "app"), f"{CONTAINERS}[helper].image", (FLUX, line(FLUX, 'newTag: "3.0"'))),
    ("an image Flux's images do not name", ("Deployment", "app"), f"{CONTAINERS}[exporter].image",
     (DEPLOY, line(DEPLOY, "image: ghcr.io/x/helper-exporter:0.1"))),
    ("generated kustomization", ("ConfigMap", "plain"), "data.greeting", ("plain/cm.yaml", 6)),
    ("LabelTransformer under transformers", ("Deployment", "app"), 'metadata.labels["app.kubernetes.io/instance"]',
     ("overlays/production/labels.yaml", line("overlays/production/labels.yaml", "instance: app-production"))),
    ("a transformer runs after the kustomization's labels", ("Deployment", "app"), "metadata.labels.tier",
     ("overlays/production/labels.yaml", line("overlays/production/labels.yaml", "tier: frontend"))),
    ("AnnotationsTransformer", ("Deployment", "app"), "metadata.annotations.owner",
     ("overlays/production/labels.yaml", line("overlays/production/labels.yaml", "owner: team-shop"))),
    ("inline PatchTransformer", ("Deployment", "app"), "spec.progressDeadlineSeconds", (OVERLAY, line(OVERLAY, "value: 120"))),
]

ABSENT = [
    ("never there: the base container, not the patch that also defines it", ("Deployment", "app"),
     f"{CONTAINERS}[sidecar].readinessProbe", (DEPLOY, line(DEPLOY, "- name: sidecar"))),
    ("an ancestor only an overlay has: its line there", ("Deployment", "app"),
     f"{CONTAINERS}[app].resources.limits.memory", (PATCH, line(PATCH, "limits:"))),
    ("an ancestor both have: the base's", ("Deployment", "app"), f"{CONTAINERS}[app].resources.requests.memory",
     (DEPLOY, line(DEPLOY, "requests:"))),
    ("removed with null by a patch", ("Deployment", "app"), f"{CONTAINERS}[app].startupProbe",
     (PATCH, line(PATCH, "startupProbe: null"))),
    ("removed by a JSON 6902 op", ("Deployment", "app"), f"{CONTAINERS}[helper].livenessProbe",
     ("overlays/production/json.yaml", line("overlays/production/json.yaml", "op: remove"))),
    ("absent in a generated kustomization's file", ("ConfigMap", "plain"), "data.other",
     ("plain/cm.yaml", line("plain/cm.yaml", "name: plain"))),
]


@pytest.mark.parametrize("case, obj, path, expected", PRESENT, ids=[c[0] for c in PRESENT])
def test_a_present_value_points_at_the_line_that_set_it(objects, case, obj, path, expected):
    assert where(objects[obj].origin(path)) == expected


@pytest.mark.parametrize("case, obj, path, expected", ABSENT, ids=[c[0] for c in ABSENT])
def test_an_absent_field_points_where_adding_it_fixes_it(objects, case, obj, path, expected):
    assert where(objects[obj].origin(path)) == expected


def test_two_kinds_of_one_name_in_other_api_groups_keep_their_own_documents(tmp_path: Path) -> None:
    """A talos.dev ServiceAccount beside the core one of the same name (onedr0p's rbac.yaml): each
    object's lines are its own document's, so a finding on the second is not reported on the first."""
    files = {
        "overlays/production/kustomization.yaml": "resources:\n- rbac.yaml\n",
        "overlays/production/rbac.yaml": "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: runner\n---\n"
                         "apiVersion: talos.dev/v1alpha1\nkind: ServiceAccount\nmetadata:\n  name: runner\n"
                         "spec:\n  roles: [os:admin]\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    model = RepoModel(RepoTree(tmp_path))
    (target,) = model.targets
    rendered = Renderer(model, cache=DiskCache(None)).render(target)
    lines = {ro.obj["apiVersion"]: ro.origin("metadata.name").line for ro in rendered.objects}
    assert lines == {"v1": 4, "talos.dev/v1alpha1": 9}
