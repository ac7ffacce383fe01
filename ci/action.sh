#!/usr/bin/env bash
# What the GitHub Action (action.yml) runs, with its inputs as environment variables, so it can be run and
# tested anywhere: INPUT_PATH, INPUT_BASE, INPUT_FAIL_ON, INPUT_SARIF_FILE; GITHUB_BASE_REF on a pull request.
# Writes the SARIF report to INPUT_SARIF_FILE, prints workflow annotations for what the check decides on,
# and exits as `--fail-on` says. INFRA_REVIEW_INSTALLED=1 skips the install (a test, a runner that has it).
set -euo pipefail
path=${INPUT_PATH:-.}
fail_on=${INPUT_FAIL_ON:-new}
sarif=${INPUT_SARIF_FILE:-infra-review.sarif}
base=${INPUT_BASE:-}
if [ -z "$base" ] && [ -n "${GITHUB_BASE_REF:-}" ]; then
  base="origin/${GITHUB_BASE_REF}"   # the pull request's base branch (checkout with fetch-depth: 0)
fi
case "$fail_on" in new|all|never) ;; *) echo "infra-review: fail-on must be new, all or never, not '$fail_on'" >&2; exit 2;; esac
if [ "${INFRA_REVIEW_INSTALLED:-}" != "1" ]; then
  python -m pip install --quiet "${GITHUB_ACTION_PATH:-.}"
fi
cli=${INFRA_REVIEW_CLI:-infra-review}
args=(check "$path")
if [ -n "$base" ]; then
  args+=(--base "$base")
fi
# SARIF for code scanning: every finding, never failing here (the second run decides).
$cli "${args[@]}" --format sarif --output "$sarif" --fail-on never
# Annotations on the pull request's files, and the exit code; the render cache makes this run cheap.
$cli "${args[@]}" --format github --fail-on "$fail_on"
