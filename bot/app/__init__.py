"""The GitHub App: webhooks in, jobs queued, reviews run in the background."""
