# The infra-review image: the GitHub App (`infra-review serve`, the default command) and the CLI
# (`docker run --rm -v "$PWD:/repo:ro" IMAGE check /repo`), with the pinned Kustomize. How to build, push and
# pin it: deploy/README.md. linux/amd64 only: the Kustomize release below and the helm-python-sdk wheel are
# amd64 builds. Needs BuildKit (the default builder since Docker 23) for `RUN --mount`.
#
# Python 3.11 on Debian 12, the Docker Official Image, pinned by the digest of its multi-platform index
# (docker-library/repo-info, repos/python/remote/3.11-slim-bookworm.md). Both stages use it; to move to a
# newer build, replace the digest with the one `docker buildx imagetools inspect python:3.11-slim-bookworm`
# prints.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:0bee7276f83efd4a1ee05bbbf4281d95ed28e079220a9457f25a93e3f1e3c31b

# --- builder: the wheels and the Kustomize binary; nothing of it but those reaches the final image ---
FROM ${PYTHON_IMAGE} AS builder

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1

# Kustomize is the renderer of record: the release and checksum the Makefile pins (tests/test_container.py
# keeps the two files equal). The slim image has no curl, so Python downloads it.
ARG KUSTOMIZE_VERSION=5.5.0
ARG KUSTOMIZE_SHA256=6703a3a70a0c47cf0b37694030b54f1175a9dfeb17b3818b623ed58b9dbc2a77
RUN url="https://github.com/kubernetes-sigs/kustomize/releases/download/kustomize%2Fv${KUSTOMIZE_VERSION}/kustomize_v${KUSTOMIZE_VERSION}_linux_amd64.tar.gz" \
 && python -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], "/tmp/kustomize.tgz")' "$url" \
 && echo "${KUSTOMIZE_SHA256}  /tmp/kustomize.tgz" | sha256sum -c - \
 && tar -xzf /tmp/kustomize.tgz -C /usr/local/bin kustomize \
 && rm /tmp/kustomize.tgz \
 && kustomize version

# The project's wheel (what .dockerignore lets in: pyproject.toml, README.md, bot/, rules/), then the
# wheels of its dependencies as its metadata lists them.
WORKDIR /src
COPY . .
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip wheel --wheel-dir /wheels /wheels/infra_review-*.whl

# --- the image: the installed wheels, kustomize, a non-root user; no compiler, no build tools ---
FROM ${PYTHON_IMAGE}

# The project version (pyproject.toml; tests/test_container.py keeps them equal): the label, and the
# wheel installed.
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="infra-review" \
      org.opencontainers.image.description="Reviews pull requests on Kustomize/Flux GitOps repositories" \
      org.opencontainers.image.source="https://github.com/infra-review/infra-review" \
      org.opencontainers.image.url="https://github.com/infra-review/infra-review" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# Only the wheels built above (--no-index), mounted for this step so they take no layer. No helm binary:
# the helm-python-sdk wheel bundles Helm's engine as a shared library, which renders charts when no
# `helm` is on PATH (bot/render/helm.py).
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
      pip install --no-cache-dir --no-index --find-links=/wheels "infra-review==${VERSION}" \
 && groupadd --system --gid 10001 infra-review \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/infra-review --no-create-home \
      --shell /usr/sbin/nologin infra-review \
 && mkdir -p /var/lib/infra-review/cache \
 && chown -R 10001:10001 /var/lib/infra-review

COPY --from=builder /usr/local/bin/kustomize /usr/local/bin/kustomize

# All it writes goes to /var/lib/infra-review (home, render and fetch cache) and /tmp (scratch copies of
# the trees it builds), so the root filesystem can be read-only: deploy/ mounts an emptyDir on each.
ENV HOME=/var/lib/infra-review \
    INFRA_REVIEW_CACHE=/var/lib/infra-review/cache \
    LOG_FORMAT=json \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /var/lib/infra-review
USER 10001:10001

EXPOSE 8080
# The slim image has no curl: Python asks the App's /health (on PORT, as the App reads it).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8080'), timeout=4)"]

ENTRYPOINT ["infra-review"]
CMD ["serve"]
