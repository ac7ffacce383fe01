"""Write a synthetic seed-shaped repository: N services × 3 environments, for scale runs.

Layout (as in shared/seed/infrastructure-patterns.md): `base/<svc>/` (Deployment, Service, a
configMapGenerator reading an env file), `overlays/<env>/<svc>/` (a patch, images, replicas), and
`clusters/<env>/<svc>.yaml`, one Flux Kustomization per service and environment with
`targetNamespace` and `postBuild.substitute`. That gives 3·N build targets.

Usage: python -m bench.generate N DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

ENVIRONMENTS = {"development": 1, "staging": 2, "production": 3}


def _base(svc: str) -> dict[str, str]:
    return {
        "kustomization.yaml": f"""\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - deployment.yaml
  - service.yaml
configMapGenerator:
  - name: {svc}-config
    envs:
      - config.env
""",
        "deployment.yaml": f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {svc}
  labels:
    app: {svc}
spec:
  replicas: 1
  selector:
    matchLabels:
      app: {svc}
  template:
    metadata:
      labels:
        app: {svc}
    spec:
      containers:
        - name: {svc}
          image: registry.example.com/{svc}:1.0.0
          ports:
            - containerPort: 8080
          envFrom:
            - configMapRef:
                name: {svc}-config
          resources:
            requests:
              cpu: 100m
              memory: 128Mi
""",
        "service.yaml": f"""\
apiVersion: v1
kind: Service
metadata:
  name: {svc}
spec:
  selector:
    app: {svc}
  ports:
    - port: 80
      targetPort: 8080
""",
        "config.env": f"SERVICE_NAME={svc}\nLOG_LEVEL=info\n",
    }


def _overlay(svc: str, env: str, replicas: int) -> dict[str, str]:
    return {
        "kustomization.yaml": f"""\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../../base/{svc}
patches:
  - path: patch-deployment.yaml
images:
  - name: registry.example.com/{svc}
    newTag: 1.0.{replicas}
replicas:
  - name: {svc}
    count: {replicas}
""",
        "patch-deployment.yaml": f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {svc}
spec:
  template:
    spec:
      containers:
        - name: {svc}
          env:
            - name: ENVIRONMENT
              value: ${{ENVIRONMENT}}
""",
    }


def _flux(svc: str, env: str) -> str:
    return f"""\
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: {svc}
  namespace: flux-system
spec:
  interval: 10m
  path: ./overlays/{env}/{svc}
  prune: true
  targetNamespace: {env}
  sourceRef:
    kind: GitRepository
    name: flux-system
  postBuild:
    substitute:
      ENVIRONMENT: {env}
"""


def generate(n: int, root: Path) -> int:
    """Write the repository; returns the number of files written."""
    files: dict[str, str] = {}
    for i in range(n):
        svc = f"svc{i:04d}"
        files.update({f"base/{svc}/{k}": v for k, v in _base(svc).items()})
        for env, replicas in ENVIRONMENTS.items():
            files.update({f"overlays/{env}/{svc}/{k}": v for k, v in _overlay(svc, env, replicas).items()})
            files[f"clusters/{env}/{svc}.yaml"] = _flux(svc, env)
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return len(files)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[0].isdigit():
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    count = generate(int(argv[0]), Path(argv[1]))
    print(f"wrote {count} files for {argv[0]} services x {len(ENVIRONMENTS)} environments to {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
