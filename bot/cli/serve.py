"""`infra-review serve`: the GitHub App service with the real review wired in."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from bot.app.cli import serve
    from bot.app.review import fail, review

    return serve(args.host, args.port, review=review, fail=fail, with_worker=not args.no_worker,
                 public_url=args.public_url)


def add_parser(sub) -> None:
    s = sub.add_parser("serve", help="run the GitHub App (webhooks in, check runs and reviews out); "
                                     "configured by GITHUB_APP_ID, GITHUB_PRIVATE_KEY, GITHUB_WEBHOOK_SECRET, …")
    s.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    s.add_argument("--port", type=int, help="port to listen on (default: PORT, else 8080)")
    s.add_argument("--public-url", help="where GitHub reaches this service (default: PUBLIC_URL): the setup page's "
                                        "webhook and redirect URLs")
    s.add_argument("--no-worker", action="store_true",
                   help="only accept webhooks; `infra-review worker` runs the reviews (as does WORKERS=0)")
    s.set_defaults(func=run)
