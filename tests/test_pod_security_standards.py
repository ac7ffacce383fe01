"""The Pod Security Standards' checks against upstream's own fixtures (k8s.io/pod-security-admission,
test/testdata, see tests/fixtures/pod-security/README.md): every pass fixture passes at its level and
every fail fixture fails, for the check its name says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest_paths import REPO

from bot.validate.podsecurity import OVERRIDES, violations

FIXTURES = REPO / "tests" / "fixtures" / "pod-security"
VERSION = (1, 37)  # the version of the fixtures


def cases(outcome: str) -> list[tuple[str, Path]]:
    return [(level, path) for level in ("baseline", "restricted")
            for path in sorted((FIXTURES / level / outcome).glob("*.yaml"))]


def pod(path: Path) -> tuple[dict, dict]:
    data = yaml.safe_load(path.read_text())
    return data.get("spec") or {}, data.get("metadata") or {}


def check_of(path: Path) -> str:
    return re.sub(r"\d+$", "", path.stem)


@pytest.mark.parametrize(("level", "path"), cases("pass"), ids=lambda x: x if isinstance(x, str) else x.stem)
def test_upstreams_passing_pods_pass(level, path):
    spec, meta = pod(path)
    assert violations(spec, meta, level, VERSION) == []


@pytest.mark.parametrize(("level", "path"), cases("fail"), ids=lambda x: x if isinstance(x, str) else x.stem)
def test_upstreams_failing_pods_fail_for_their_check(level, path):
    spec, meta = pod(path)
    found = {v.check for v in violations(spec, meta, level, VERSION)}
    # At restricted, a check that replaces a baseline one (upstream's overrides) reports in its place.
    replacing = {r for r, (b, since) in OVERRIDES.items() if b == check_of(path) and VERSION >= since}
    assert ({check_of(path)} | (replacing if level == "restricted" else set())) & found, found


def test_there_are_fixtures_of_every_check():
    checks = {check_of(p) for _level, p in cases("fail")}
    assert len(checks) == 19 and len(cases("pass")) + len(cases("fail")) == 148


def test_controls_that_changed_follow_the_configured_version():
    unmasked = {"containers": [{"name": "c", "image": "x", "securityContext": {"procMount": "Unmasked"}}],
                "hostUsers": False}
    assert violations(unmasked, {}, "baseline", (1, 37)) == []
    assert [v.check for v in violations(unmasked, {}, "baseline", (1, 33))] == ["procmount"]
    host_probe = {"containers": [{"name": "c", "image": "x", "livenessProbe": {"httpGet": {"host": "a", "port": 1}}}]}
    assert violations(host_probe, {}, "baseline", (1, 33)) == []
    assert [v.check for v in violations(host_probe, {}, "baseline", (1, 34))] == ["hostprobesandhostlifecycle"]
    sysctl = {"securityContext": {"sysctls": [{"name": "net.ipv4.tcp_rmem", "value": "4096 87380 6291456"}]},
              "containers": [{"name": "c", "image": "x"}]}
    assert [v.check for v in violations(sysctl, {}, "baseline", (1, 31))] == ["sysctls"]
    assert violations(sysctl, {}, "baseline", (1, 32)) == []
