"""What the API server would reject: objects validated against the schema of their kind.

    schemas.py   which schema a kind has (kubernetes-validate's, vendored CRDs, the repository's CRDs)
    crd.py       a CRD's openAPIV3Schema as a strict JSON Schema
    problems.py  one object's problems, in plain words, with the field path each is at
    vendor_crds.py  regenerates bot/validate/crds/ from upstream CRD files
"""
