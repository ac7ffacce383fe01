"""`infra-review worker`: the review worker without the web server, beside `serve --no-worker`."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from bot.app.cli import work
    from bot.app.review import fail, review

    return work(review=review, fail=fail)


def add_parser(sub) -> None:
    w = sub.add_parser("worker", help="run the reviews without the web server: stored deliveries, review jobs, "
                                      "pruning; configured like serve; SIGTERM drains it (DRAIN_GRACE)")
    w.set_defaults(func=run)
