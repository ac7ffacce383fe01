"""remote-unchecked: a remote resource that was not fetched, so what it holds was not checked (repo scope).

The renderer reports these (bot.fetch.resources.Unfetched); the pipeline turns each into a finding with
`findings()`. Never an error: Flux fetches remote resources, so not having fetched one says nothing
about whether Flux can apply the target, only that infra-review did not look at it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.model import Finding, Origin
from rules.base import Rule, all_envs, example, example_deployment

if TYPE_CHECKING:
    from bot.config import Config
    from bot.fetch.resources import Unfetched

RULE = Rule(
    id="remote-unchecked",
    title="Remote resource not checked",
    rationale="Flux fetches the remote bases and URLs a kustomization names (unless its controller runs with "
    "`--no-remote-bases`), so what they hold is applied to the cluster. When infra-review could not fetch one "
    "(fetching off, refused by the fetch policy, a failed download, a host it does not fetch from), the objects "
    "it holds were not checked, and the review says so rather than pass them silently. A notice everywhere: "
    "nothing says Flux would fail.",
    remediation="Let infra-review fetch it: drop `--offline` / `fetch: {enabled: false}`, or list its URL prefix "
    "in `fetch: {allow: [...]}` of .github/infra-review.yml when it is served over http or from a private address; "
    "or vendor it into the repository.",
    severity=all_envs("notice"),
    scope="repo",
    check=None,
    edge_cases=(
        "Located at the repository's own entry that names the remote resource (`resources:`, `components:`, a "
        "patch's `path:`, ...); for a remote resource named by fetched content, at the repository entry it came "
        "through, the message naming both.",
        "The target is built without the entry: for `resources:`, the objects of the rest are checked; for a patch "
        "or a generator file, the objects are checked without it. When the build fails without it (an overlay "
        "patching the remote base), nothing in the target is checked and the message says kustomize's sentence; "
        "this is no `build-error`, since Flux fetches the entry.",
        "Fetched: https URLs on the default port resolving to public addresses only, or under a `fetch.allow` "
        "prefix; file URLs as they are; repository references on github.com and gitlab.com as an archive of their "
        "ref (never with git); remote entries of fetched content three levels deep. Other hosts, `file://` and "
        "deeper nesting are reported here.",
        "With `flux: {no_remote_bases: true}` a remote entry is a `build-error` instead: the cluster refuses it.",
    ),
    example=example(
        {"overlays/production/kustomization.yaml": """\
            resources:
              - https://raw.githubusercontent.com/example/web/v1.4.2/deploy/web.yaml  #-
              - web.yaml  #+
            """},
        added={"overlays/production/web.yaml": example_deployment()},
        note="The file is vendored into the repository, so what it holds is checked; a remote one is checked only "
        "where infra-review can fetch it (not with `--offline`).",
    ),
)


def findings(unfetched: list[Unfetched], target: str, environment: str, config: Config,
             unbuilt: str | None = None) -> list[Finding]:
    """One notice per remote entry of `target` that was not fetched (none when the rule is off)."""
    severity = config.severity_for(RULE, environment)
    if severity is None:
        return []
    out: list[Finding] = []
    for u in unfetched:
        what = f"`{u.via}`, which the fetched `{u.value}` names," if u.via else f"`{u.value}`"
        if unbuilt:
            effect = (f"without it `{target}` cannot be built ({unbuilt}), so nothing in it was checked; Flux "
                      f"fetches it, so this is not a build error")
        elif u.field.split(".", 1)[0] in ("resources", "bases"):
            effect = f"the objects it holds were not checked (the rest of `{target}` was)"
        else:
            effect = f"`{target}` was checked without it"
        out.append(Finding(
            rule=RULE.id, severity=severity, environment=environment,
            message=f"The remote {u.field.split('.', 1)[0]} entry {what} was not fetched: {u.reason}. {effect[0].upper()}"
                    f"{effect[1:]}.",
            remediation=RULE.remediation, target=target, field=u.via or u.value,
            origin=Origin(u.file, u.line, u.line, "kustomization", "remote"),
        ))
    return out
