"""Webhook handlers, one Router per feature, combined here. Handlers are `(event, gh, *, ctx)`
and only decide and enqueue; reviews run in the worker."""

from __future__ import annotations

from gidgethub.routing import Router

from . import checks, installation, issue_comment, pull_request

# The App's event subscription (deploy/README.md) plus `ping`: the only event names worth a metric label.
EVENTS = frozenset({"pull_request", "issue_comment", "check_run", "check_suite", "installation",
                    "installation_repositories", "ping"})


def build_router() -> Router:
    return Router(pull_request.router, issue_comment.router, checks.router, installation.router)
