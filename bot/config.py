"""`.github/infra-review.yml`: a repository's own settings, validated strictly.

An unknown key anywhere is a `ConfigError` naming the key and where it is
(`rules.latest-tag.severty: unknown key`), because a misspelt setting that is silently ignored
looks like a setting that works. Defaults come from `rules/policy.yaml` (bot.policy) and the rule
catalogue: rule ids and parameters are checked against the rules the caller passes, else against
the catalogue the `rules` package registered with bot.catalogue when it was imported. This module
is a parser of data and imports nothing from `rules`.

    environments:
      aliases: {qa: staging}                 # extra names for environments
      paths: {production: ["deploy/prod/**"]}  # where an environment's overlays live
    rules:
      latest-tag:
        severity: warning                    # every environment, or per environment:
        # severity: {production: error, development: off}
        params: {...}                        # the rule's parameters (see docs/rules.md)
      single-replica: off                    # shorthand for severity: off
    policy:                                  # overrides rules/policy.yaml (maps merge, lists replace)
      environments: {production: {replicas: 4}}
      labels: {required: [...], managed_by: flux}
      sensitive_names: [...]
      credential_patterns: [{name: ..., regex: ...}]
    ignore: ["legacy/**"]                    # not part of the repo for us: no targets or Flux objects
                                             # are discovered there, findings located there are dropped
    fail_on: new                             # new | all
    comments: added                          # added | diff | none
    forbid_suppression: [hardcoded-secret]
    fetch:                                   # remote kustomize resources (and charts), through one fetcher
      enabled: true                          # false: nothing is fetched (the CLI's --offline)
      allow: ["http://charts.internal/"]     # URL prefixes that may be http:// and on private addresses
    flux:
      no_remote_bases: false                 # the kustomize-controller runs with --no-remote-bases
    kubernetes:                              # what charts see as .Capabilities when rendered
      version: "1.33.0"
      api_versions: [monitoring.coreos.com/v1]
    helm:
      vendor_charts:                         # objects installed by charts from outside the repository:
        skip_rules: [missing-labels]         # rules not run on them (the team cannot edit the chart)
    third_party: ["vendor/**"]               # manifests that are not the team's own (vendored, generated)
    creators:                                # objects that create others the repository never writes
      - {kind: EventListener, group: triggers.tekton.dev, creates: {kind: Service, name: "el-{name}"}}
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from bot.catalogue import KnownRule, known_rules
from bot.model import SEVERITIES, type_name
from bot.policy import default_policy
from bot.quantity import parse_quantity

TOP_KEYS = ("environments", "rules", "policy", "ignore", "fail_on", "comments", "forbid_suppression", "fetch",
            "flux", "third_party", "creators", "kubernetes", "helm")
DEFAULT_KUBE_VERSION = "1.33.0"  # a current stable release; bot.render.helm's default too
VENDOR_SKIP_RULES = ("missing-labels",)
FAIL_ON = ("new", "all")
COMMENT_MODES = ("added", "diff", "none")
OFF = "off"
DEFAULT_ALIASES = {
    "dev": "development",
    "stage": "staging",
    "stg": "staging",
    "prod": "production",
    "prd": "production",
}
ENV_ROW_KEYS = ("replicas", "requests", "limits", "log_level")
LOG_LEVELS = ("trace", "debug", "info", "warn", "warning", "error")
KUBE_VERSION = re.compile(r"v?[0-9]+\.[0-9]+(?:\.[0-9]+)?")  # ASCII digits: what Helm can read


class ConfigError(ValueError):
    """An invalid configuration; the message starts with the key's location."""


@dataclass(frozen=True)
class Creator:
    """An object kind that makes another object the repository never writes down (a Tekton
    EventListener creates the Service `el-<name>`): `name` is a template over the creator's `{name}`,
    `{namespace}` and `{spec.some.field}` values."""

    kind: str
    group: str | None
    creates_kind: str
    name: str


@dataclass(frozen=True)
class Config:
    aliases: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ALIASES))
    env_paths: dict[str, tuple[str, ...]] = field(default_factory=dict)
    severities: dict[str, dict[str, str | None]] = field(default_factory=dict)  # rule -> env|'*' -> sev
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)  # overrides, not yet merged
    ignore: tuple[str, ...] = ()
    fail_on: str = "new"
    comments: str = "added"
    forbid_suppression: frozenset[str] = frozenset()
    fetch_enabled: bool = True
    fetch_allow: tuple[str, ...] = ()
    no_remote_bases: bool = False
    third_party: tuple[str, ...] = ()
    creators: tuple[Creator, ...] = ()
    kube_version: str = DEFAULT_KUBE_VERSION
    api_versions: tuple[str, ...] = ()
    vendor_skip_rules: frozenset[str] = frozenset(VENDOR_SKIP_RULES)

    def is_third_party(self, path: str | None) -> bool:
        """Whether the repository's `third_party` globs name `path` (vendored or generated manifests
        that are not the team's own)."""
        return path is not None and any(_glob(g).fullmatch(path) for g in self.third_party)

    @classmethod
    def default(cls) -> Config:
        return cls()

    def severity_for(self, rule: KnownRule, environment: str | None) -> str | None:
        """The severity `rule` has in `environment` here (None: off)."""
        over = self.severities.get(rule.id, {})
        env = normalise_env(environment, self) if environment else ""
        if env in over:
            return over[env]
        if "*" in over:
            return over["*"]
        return rule.severity_for(env or None)

    def has_severity_override(self, rule_id: str, environment: str | None) -> bool:
        over = self.severities.get(rule_id, {})
        return "*" in over or (environment is not None and normalise_env(environment, self) in over)

    def params_for(self, rule_id: str) -> dict[str, Any]:
        return dict(self.params.get(rule_id, {}))

    def is_ignored(self, path: str | None) -> bool:
        return path is not None and any(_glob(g).fullmatch(path) for g in self.ignore)

    def env_for_path(self, path: str) -> str | None:
        """The environment whose configured path globs match `path`, if any."""
        for env, globs in self.env_paths.items():
            if any(_glob(g).fullmatch(path.strip("/")) for g in globs):
                return env
        return None


def normalise_env(name: str, config: Config | None = None) -> str:
    """Canonical environment name: lower-cased, then through the aliases (unknown names pass through)."""
    low = name.strip().lower()
    aliases = config.aliases if config else DEFAULT_ALIASES
    return aliases.get(low, low)


def glob_matches(pattern: str, path: str) -> bool:
    """`**` spans directories, `*` and `?` stay within one; a trailing `/` means everything below."""
    return _glob(pattern).fullmatch(path) is not None


@cache
def _glob(pattern: str) -> re.Pattern[str]:
    """`**` spans directories, `*` and `?` stay within one; a trailing `/` means everything below."""
    pattern = pattern.strip()
    pattern = pattern[2:] if pattern.startswith("./") else pattern
    if pattern.endswith("/"):
        pattern += "**"
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


# --- parsing -----------------------------------------------------------------------------


def _where(loc: str, key: Any) -> str:
    return f"{loc}.{key}" if loc else str(key)


def _mapping(value: Any, loc: str, allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{loc}: must be a mapping, not {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(f"{_where(loc, key)}: keys must be strings")
        if allowed is not None and key not in allowed:
            raise ConfigError(f"{_where(loc, key)}: unknown key (expected one of: {', '.join(allowed)})")
    return value


def _strings(value: Any, loc: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{loc}: must be a list of non-empty strings")
    return tuple(value)


def _choice(value: Any, loc: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{loc}: must be one of {', '.join(choices)}, not {value!r}")
    return value


def _severity(value: Any, loc: str) -> str | None:
    if value is False:  # YAML `off` is a string here (bounded loader), but accept a bare false too
        return None
    text = str(value).lower() if isinstance(value, str) else value
    _choice(text, loc, (*SEVERITIES, OFF))
    return None if text == OFF else text


def _known(given: dict[str, KnownRule] | None) -> dict[str, KnownRule]:
    return given if given is not None else known_rules()


def _parse_rules(raw: Any, config_aliases: dict[str, str], given: dict[str, KnownRule] | None) -> tuple[dict, dict]:
    entries = _mapping(raw, "rules")
    rules = _known(given) if entries else {}
    severities: dict[str, dict[str, str | None]] = {}
    params: dict[str, dict[str, Any]] = {}
    for rule_id, body in entries.items():
        loc = f"rules.{rule_id}"
        if rule_id not in rules:
            raise ConfigError(f"{loc}: unknown key (no rule has this id)")
        if not isinstance(body, dict):
            severities[rule_id] = {"*": _severity(body, loc)}
            continue
        body = _mapping(body, loc, ("severity", "params"))
        sev = body.get("severity")
        if isinstance(sev, dict):
            severities[rule_id] = {
                config_aliases.get(env.lower(), env.lower()): _severity(v, f"{loc}.severity.{env}")
                for env, v in _mapping(sev, f"{loc}.severity").items()
            }
        elif "severity" in body:
            severities[rule_id] = {"*": _severity(sev, f"{loc}.severity")}
        if "params" in body:
            known = tuple(rules[rule_id].params)
            given = _mapping(body["params"], f"{loc}.params", known)
            for key, value in given.items():
                _check_like(value, rules[rule_id].params[key], f"{loc}.params.{key}")
            params[rule_id] = dict(given)
    return severities, params


def _check_like(value: Any, default: Any, loc: str) -> None:
    """A parameter must have its default's type, and a list's items the type of the default's items,
    so a rule never meets a value it cannot use (`forbidden_tags: [1]`)."""
    if isinstance(default, bool) or not isinstance(default, int | float):
        ok = type(value) is type(default)
    else:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and (
            isinstance(default, float) or isinstance(value, int))
    if not ok:
        raise ConfigError(f"{loc}: must be {type_name(default)}, not {type_name(value)}")
    if isinstance(value, list):  # every list parameter is a list of strings when its default is empty
        for i, item in enumerate(value):
            _check_like(item, default[0] if default else "", f"{loc}[{i}]")


def _parse_policy(raw: Any, aliases: dict[str, str]) -> dict[str, Any]:
    policy = _mapping(raw, "policy", ("environments", "labels", "sensitive_names", "credential_patterns"))
    out: dict[str, Any] = {}
    if "environments" in policy:
        envs: dict[str, Any] = {}
        for env, row in _mapping(policy["environments"], "policy.environments").items():
            loc = f"policy.environments.{env}"
            row = _mapping(row, loc, ENV_ROW_KEYS)
            for part in ("requests", "limits"):
                for res, q in _mapping(row.get(part), f"{loc}.{part}", ("cpu", "memory")).items():
                    if parse_quantity(q) is None:
                        raise ConfigError(f"{loc}.{part}.{res}: {q!r} is not a Kubernetes quantity")
            replicas = row.get("replicas", 0)
            if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
                raise ConfigError(f"{loc}.replicas: must be a non-negative integer")
            if "log_level" in row:
                _choice(str(row["log_level"]).lower(), f"{loc}.log_level", LOG_LEVELS)
            envs[aliases.get(env.lower(), env.lower())] = row
        out["environments"] = envs
    if "labels" in policy:
        labels = _mapping(policy["labels"], "policy.labels", ("required", "managed_by"))
        out["labels"] = {}
        if "required" in labels:
            out["labels"]["required"] = list(_strings(labels["required"], "policy.labels.required"))
        if "managed_by" in labels:
            if not isinstance(labels["managed_by"], str):
                raise ConfigError("policy.labels.managed_by: must be a string")
            out["labels"]["managed_by"] = labels["managed_by"]
    if "sensitive_names" in policy:
        out["sensitive_names"] = list(_strings(policy["sensitive_names"], "policy.sensitive_names"))
    if "credential_patterns" in policy:
        pats = policy["credential_patterns"]
        if not isinstance(pats, list):
            raise ConfigError("policy.credential_patterns: must be a list of {name, regex}")
        for i, pat in enumerate(pats):
            loc = f"policy.credential_patterns[{i}]"
            pat = _mapping(pat, loc, ("name", "regex"))
            if not isinstance(pat.get("name"), str) or not isinstance(pat.get("regex"), str):
                raise ConfigError(f"{loc}: needs a string name and regex")
            try:
                re.compile(pat["regex"])
            except re.error as exc:
                raise ConfigError(f"{loc}.regex: invalid regular expression: {exc}") from None
        out["credential_patterns"] = [dict(p) for p in pats]
    return out


def parse_config(text: str | None, catalogue: Iterable[KnownRule] | None = None) -> Config:
    """Parse the text of `.github/infra-review.yml` (None or empty: the defaults).

    `rules:` and `forbid_suppression:` name rules of `catalogue` (default: the registered one,
    bot.catalogue.known_rules, which importing `rules` provides)."""
    from bot.yamlpos import YamlError, load_data

    if not text or not text.strip():
        return Config.default()
    try:
        docs = load_data(text, ".github/infra-review.yml")
    except YamlError as exc:
        raise ConfigError(
            f"invalid YAML: {exc.message}" + (f" (line {exc.line})" if exc.line else "")
        ) from None
    if len(docs) > 1:
        raise ConfigError("the file must hold one YAML document")
    raw = _mapping(docs[0] if docs else None, "", TOP_KEYS)

    envs = _mapping(raw.get("environments"), "environments", ("aliases", "paths"))
    aliases = dict(DEFAULT_ALIASES)
    for alias, target in _mapping(envs.get("aliases"), "environments.aliases").items():
        if not isinstance(target, str) or not target:
            raise ConfigError(f"environments.aliases.{alias}: must name an environment")
        aliases[alias.lower()] = aliases.get(target.lower(), target.lower())
    env_paths = {
        aliases.get(env.lower(), env.lower()): _strings(globs, f"environments.paths.{env}")
        for env, globs in _mapping(envs.get("paths"), "environments.paths").items()
    }
    given = None if catalogue is None else {rule.id: rule for rule in catalogue}
    severities, params = _parse_rules(raw.get("rules"), aliases, given)
    forbid = _strings(raw.get("forbid_suppression"), "forbid_suppression")
    known = _known(given) if forbid else {}
    for rid in forbid:
        if rid not in known:
            raise ConfigError(f"forbid_suppression: {rid!r} is not a rule id")
    fetch = _mapping(raw.get("fetch"), "fetch", ("enabled", "allow"))
    flux = _mapping(raw.get("flux"), "flux", ("no_remote_bases",))
    kube = _mapping(raw.get("kubernetes"), "kubernetes", ("version", "api_versions"))
    version = str(kube.get("version", DEFAULT_KUBE_VERSION))
    if not KUBE_VERSION.fullmatch(version):
        raise ConfigError(f"kubernetes.version: {version!r} is not a Kubernetes version such as 1.33.0")
    vendor = _mapping(_mapping(raw.get("helm"), "helm", ("vendor_charts",)).get("vendor_charts"),
                      "helm.vendor_charts", ("skip_rules",))
    skip = _strings(vendor.get("skip_rules", list(VENDOR_SKIP_RULES)), "helm.vendor_charts.skip_rules")
    if "skip_rules" in vendor and skip:
        known_ids = _known(given)
        for rid in skip:
            if rid not in known_ids:
                raise ConfigError(f"helm.vendor_charts.skip_rules: {rid!r} is not a rule id")
    return Config(
        aliases=aliases,
        env_paths=env_paths,
        severities=severities,
        params=params,
        policy=_parse_policy(raw.get("policy"), aliases),
        ignore=_strings(raw.get("ignore"), "ignore"),
        fail_on=_choice(raw.get("fail_on", "new"), "fail_on", FAIL_ON),
        comments=_choice(raw.get("comments", "added"), "comments", COMMENT_MODES),
        forbid_suppression=frozenset(forbid),
        fetch_enabled=_boolean(fetch.get("enabled", True), "fetch.enabled"),
        fetch_allow=_strings(fetch.get("allow"), "fetch.allow"),
        no_remote_bases=_boolean(flux.get("no_remote_bases", False), "flux.no_remote_bases"),
        third_party=_strings(raw.get("third_party"), "third_party"),
        creators=_creators(raw.get("creators")),
        kube_version=version.removeprefix("v") + (".0" if version.count(".") == 1 else ""),
        api_versions=_strings(kube.get("api_versions"), "kubernetes.api_versions"),
        vendor_skip_rules=frozenset(skip),
    )


def _boolean(value: Any, loc: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{loc}: must be true or false, not {type_name(value)}")
    return value


def _creators(raw: Any) -> tuple[Creator, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"creators: must be a list of {{kind, group, creates: {{kind, name}}}}, not {type_name(raw)}")
    out = []
    for i, entry in enumerate(raw):
        loc = f"creators[{i}]"
        entry = _mapping(entry, loc, ("kind", "group", "creates"))
        creates = _mapping(entry.get("creates"), f"{loc}.creates", ("kind", "name"))
        for key, value in (("kind", entry.get("kind")), ("creates.kind", creates.get("kind")),
                           ("creates.name", creates.get("name"))):
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{loc}.{key}: must be a non-empty string")
        if entry.get("group") is not None and not isinstance(entry.get("group"), str):
            raise ConfigError(f"{loc}.group: must be a string (the API group, '' for the core group)")
        out.append(Creator(entry["kind"], entry.get("group"), creates["kind"], creates["name"]))
    return tuple(out)


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = _merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return out
    return copy.deepcopy(over)


def effective_policy(config: Config | None = None) -> dict[str, Any]:
    """The seed policy with the repository's overrides merged in (maps merge, lists replace)."""
    config = config or Config.default()
    policy = default_policy()
    policy["aliases"] = {**policy.get("aliases", {}), **config.aliases}
    return _merge(policy, config.policy)
