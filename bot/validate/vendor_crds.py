"""Vendor upstream CustomResourceDefinitions as the compact JSON schemas `bot/validate/crds/*.json` hold.

    python -m bot.validate.vendor_crds [--source TEXT] OUT.json CRD.yaml [CRD.yaml ...]

Reads every CRD in the YAML files (several documents a file are fine; documents of another kind are
skipped), converts each served version with `bot.validate.crd.crd_schemas`, drops every `description`
and writes `{"source": TEXT, "schemas": {"<apiVersion>|<Kind>": schema}}` as compact, sorted JSON.
When two files give the same apiVersion and kind, the later file wins (a note goes to stderr).
Nothing is downloaded: fetch the CRD files first, into a scratch folder outside the repository.

Regenerating (bump the tags; the `source` text must name the tags and commits actually used):

  Flux: the CRDs of the controller versions that fluxcd/flux2's release pins in
  `manifests/bases/<controller>/kustomization.yaml` (each controller's `config/crd/bases/*.yaml` at
  that tag, or the release's `<controller>.crds.yaml`), e.g.

    python -m bot.validate.vendor_crds --source "Flux v2.9.4: ..." bot/validate/crds/flux.json \\
        /tmp/crds/source-controller.yaml /tmp/crds/kustomize-controller/*.yaml ...

  Gateway API: kubernetes-sigs/gateway-api at a release tag; the experimental channel's TCP/TLS/UDP
  routes first (for their alpha versions), then the whole standard channel, which wins for the
  versions both serve:

    python -m bot.validate.vendor_crds --source "Gateway API v1.6.1: ..." bot/validate/crds/gateway-api.json \\
        /tmp/gw/experimental/gateway.networking.k8s.io_{tcp,tls,udp}routes.yaml /tmp/gw/standard/*.yaml

Then run `pytest tests/test_vendored_crds.py`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from bot.validate.crd import crd_schemas

# Keywords whose value is data, not a schema: a `description` key inside them is content, kept as is.
DATA_KEYWORDS = frozenset({"default", "enum", "const", "example", "examples", "required"})
# Keywords whose value maps names to schemas: the names are fields (GatewayClass has `spec.description`).
NAMED_SCHEMAS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})


def strip_descriptions(node: Any) -> Any:
    """A JSON schema without its `description` annotations; a field named `description` stays."""
    if isinstance(node, list):
        return [strip_descriptions(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "description":
            continue
        if key in NAMED_SCHEMAS and isinstance(value, dict):
            out[key] = {name: strip_descriptions(sub) for name, sub in value.items()}
        elif key in DATA_KEYWORDS:
            out[key] = value
        else:
            out[key] = strip_descriptions(value)
    return out


def read_crds(path: Path) -> list[dict[str, Any]]:
    """The CustomResourceDefinitions among the YAML documents of one file."""
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream)
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"]


def vendor(paths: Sequence[Path], source: str) -> dict[str, Any]:
    """The document `bot/validate/crds/*.json` holds, for the CRDs in `paths` (later files win)."""
    schemas: dict[str, Any] = {}
    for path in paths:
        for crd in read_crds(path):
            for (api_version, kind), schema in crd_schemas(crd).items():
                key = f"{api_version}|{kind}"
                if key in schemas:
                    print(f"{key}: replaced by {path}", file=sys.stderr)
                schemas[key] = strip_descriptions(schema)
    return {"source": " ".join(source.split()), "schemas": schemas}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.validate.vendor_crds",
                                     description="Write upstream CRDs' schemas as one compact JSON file.")
    parser.add_argument("--source", help="where the CRDs came from: repositories, tags, commits (one line)")
    parser.add_argument("out", type=Path, metavar="OUT.json")
    parser.add_argument("crds", type=Path, nargs="+", metavar="CRD.yaml")
    args = parser.parse_args(argv)
    doc = vendor(args.crds, args.source or ", ".join(str(p) for p in args.crds))
    if not doc["schemas"]:
        print("no CustomResourceDefinition with a served, schema-bearing version found", file=sys.stderr)
        return 1
    text = json.dumps(doc, separators=(",", ":"), sort_keys=True)
    args.out.write_text(text + "\n", encoding="utf-8")
    print(f"{args.out}: {len(doc['schemas'])} schemas, {len(text) + 1} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
