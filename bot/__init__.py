"""infra-review: reviews pull requests on Kustomize/Flux GitOps repositories."""

__version__ = "0.1.0"
