"""The service's own pages, server-rendered HTML without JavaScript: the first-run setup page (GitHub's
App-manifest flow), what it says once the App is registered, and the operators' status page.

Everything shown is escaped here; the status page names repositories and counts, never their content.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html import escape
from typing import Any

STYLE = """
body{font:15px/1.5 system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#1f2328}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #d0d7de;vertical-align:top}
code,pre{font:13px ui-monospace,monospace;background:#f6f8fa}pre{padding:1rem;overflow:auto}
button{font-size:1rem;padding:.6rem 1.2rem;background:#1f883d;color:#fff;border:0;border-radius:6px;cursor:pointer}
.failure,.error{color:#cf222e}.success{color:#1a7f37}.muted{color:#59636e}
"""


def page(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width"><style>{STYLE}</style></head>'
            f"<body>{body}</body></html>")


def setup_page(form_action: str, manifest: Mapping[str, Any], org: str | None = None) -> str:
    """One button that posts the manifest to GitHub (the form action carries the `state` GitHub returns)."""
    where = f"the organisation <b>{escape(org)}</b>" if org else "your personal account"
    other = ("<a href='/'>register it on your personal account instead</a>" if org else
             "<form method='get' action='/'>or in an organisation: <input name='org' placeholder='organisation' "
             "pattern='[A-Za-z0-9-]+' required> <input type='submit' value='use it'></form>")
    return page("Set up infra-review", f"""
<h1>Set up infra-review</h1>
<p>This service has no GitHub App credentials yet. Register the App on GitHub with the permissions and
events it needs; GitHub sends you back here, and the credentials are stored for this service
(<code>.env</code>, mode 0600) and loaded without a restart.</p>
<p>It will be registered for {where}, with webhook URL <code>{escape(manifest["hook_attributes"]["url"])}</code>.</p>
<form method="post" action="{escape(form_action)}">
<input type="hidden" name="manifest" value="{escape(json.dumps(manifest))}">
<button type="submit" id="register">Register GitHub App</button>
</form>
<p class="muted">{other}</p>
<h2>Permissions</h2>
<table>{"".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>"
                 for k, v in manifest["default_permissions"].items())}</table>
<p>Events: {escape(", ".join(manifest["default_events"]))}.</p>""")


def registered_page(slug: str, html_url: str, stored: str, secret_yaml: str | None = None) -> str:
    """After the conversion: where the credentials went and the link that installs the App."""
    install = f"{html_url.rstrip('/')}/installations/new"
    kept = (f"<p>The credentials were written to <code>{escape(stored)}</code> (mode 0600) and are in use.</p>"
            if secret_yaml is None else
            "<p>This service cannot write its credentials here (a read-only file system). They are shown "
            "<b>once</b>, below, as a Kubernetes Secret: save it, encrypt it with "
            "<code>sops --encrypt --in-place infra-review-secrets.yaml</code>, commit it beside your overlay, "
            f"and let Flux apply it.</p><pre id='secret'>{escape(secret_yaml)}</pre>")
    return page("infra-review is registered", f"""
<h1>The GitHub App <code>{escape(slug)}</code> is registered</h1>
{kept}
<p><a id="install" href="{escape(install)}">Install it on your repositories</a>, then make the
<code>infra-review</code> check required (branch protection or a ruleset).</p>""")


def refused_page() -> str:
    return page("Already set up", "<h1>infra-review is already set up</h1><p>The setup page only runs while "
                                  "the service has no App credentials.</p>")


@dataclass(frozen=True)
class Status:
    """What the status page shows; built by the server from the queue's records."""

    version: str
    kustomize: str
    helm: str
    queued: int
    running: int
    oldest_age: float | None
    dead: int
    reviews: list[dict[str, Any]]
    dead_letters: list[dict[str, Any]]


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _when(epoch: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch)) if epoch else "—"


def _review_row(r: Mapping[str, Any]) -> str:
    summary = r.get("summary") or {}
    conclusion = str(summary.get("conclusion") or r.get("state") or "")
    link = summary.get("check_run_url")
    shown = f'<a href="{escape(str(link))}">{escape(conclusion)}</a>' if link else escape(conclusion)
    seconds = summary.get("seconds")
    return (f"<tr><td>{escape(str(r.get('repo', '')))}</td><td>#{escape(str(r.get('pr_number', '')))}</td>"
            f"<td><code>{escape(str(r.get('head_sha', ''))[:12])}</code></td><td class='{escape(conclusion)}'>{shown}</td>"
            f"<td>{escape(str(summary.get('findings', '—')))}</td>"
            f"<td>{escape(f'{seconds:.1f} s' if isinstance(seconds, int | float) else '—')}</td>"
            f"<td>{escape(_when(r.get('finished_at')))}</td></tr>")


def _rows(items: Iterable[str], columns: str, empty: str) -> str:
    rows = "".join(items)
    return f"<table><tr>{columns}</tr>{rows}</table>" if rows else f"<p class='muted'>{empty}</p>"


def status_page(s: Status) -> str:
    reviews = _rows((_review_row(r) for r in s.reviews),
                    "<th>repository</th><th>PR</th><th>SHA</th><th>conclusion</th><th>findings</th><th>duration</th>"
                    "<th>finished</th>", "No review has finished yet.")
    dead = _rows((f"<tr><td>{escape(str(d.get('repo', '')))}</td><td>#{escape(str(d.get('pr_number', '')))}</td>"
                  f"<td>{escape(str(d.get('failures', '')))}</td><td class='error'>{escape(str(d.get('error', '')))}</td>"
                  f"<td>{escape(_when(d.get('at')))}</td></tr>" for d in s.dead_letters),
                 "<th>repository</th><th>PR</th><th>failures</th><th>last error</th><th>when</th>",
                 "No job was given up.")
    return page("infra-review status", f"""
<h1>infra-review</h1>
<table id="versions"><tr><th>infra-review</th><td>{escape(s.version)}</td></tr>
<tr><th>Kustomize</th><td>{escape(s.kustomize)}</td></tr><tr><th>Helm</th><td>{escape(s.helm)}</td></tr></table>
<h2>Queue</h2>
<table id="queue"><tr><th>queued</th><td>{s.queued}</td></tr><tr><th>running</th><td>{s.running}</td></tr>
<tr><th>oldest queued job</th><td>{_age(s.oldest_age)}</td></tr><tr><th>given up</th><td>{s.dead}</td></tr></table>
<h2>Last reviews</h2><div id="reviews">{reviews}</div>
<h2>Given up (dead letters)</h2><div id="dead">{dead}</div>""")
