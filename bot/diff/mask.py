"""Secrets never appear in a diff: each value a secret rule would protect is replaced by a marker that
still shows *that* it changed — a digest salted per run, so equal values get equal markers within
one diff and nothing can be looked up across runs.

Masked: every value of a core Secret's `data` and `stringData`; a scalar the hardcoded-secret rule
would call a credential by its key (`password`, `token`, … of the policy's `sensitive_names`; not a
`${VAR}` reference, a file path, a SOPS ciphertext, or a key naming a Secret such as `secretName`), including the `value` of a `{name, value}`
pair such as a container's env entry; in a multi-line string (a values file a generator packs), the
value of each `key: value` or `KEY=value` line so named; and anything credential-shaped (the policy's
`credential_patterns`) anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from typing import Any

from rules.hardcoded_secret import literal_problem

_REFERENCE_KEYS = ("name", "ref")
_LINE = re.compile(r"^([ \t-]*+([\w.-]++)[ \t]*+[:=][ \t]*+)(\S.*)$", re.M)


class Masker:
    def __init__(self, policy: dict[str, Any], salt: bytes | None = None) -> None:
        self.policy = policy
        self.salt = salt if salt is not None else os.urandom(16)
        self._patterns = [re.compile(p["regex"]) for p in policy.get("credential_patterns") or ()]

    def marker(self, value: Any) -> str:
        digest = hmac.new(self.salt, str(value).encode(), hashlib.sha256).hexdigest()[:8]
        return f"<masked {digest}>"

    def mask(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A copy of a rendered object with every secret value replaced by its marker."""
        out = self._walk(obj)
        if obj.get("kind") == "Secret" and str(obj.get("apiVersion")) == "v1":
            for section in ("data", "stringData"):
                values = out.get(section)
                if isinstance(values, dict):
                    out[section] = {k: self.marker(v) for k, v in values.items()}
        return out

    def _walk(self, data: Any, key: str = "") -> Any:
        if isinstance(data, dict):
            name = data.get("name") if isinstance(data.get("name"), str) else None
            return {k: self.marker(v) if (k == "value" and name and self._secret(name, v)) else self._walk(v, str(k))
                    for k, v in data.items()}
        if isinstance(data, list):
            return [self._walk(item, key) for item in data]
        if key and self._secret(key, data):
            return self.marker(data)
        if isinstance(data, str):
            return self._text(data)
        return data

    def _text(self, text: str) -> str:
        if "\n" in text:
            text = _LINE.sub(lambda m: m.group(1) + self.marker(m.group(3)) if self._secret(
                m.group(2), m.group(3).strip().strip("'\"")) else m.group(0), text)
        for pattern in self._patterns:
            text = pattern.sub(lambda m: self.marker(m.group(0)), text)
        return text

    def _secret(self, key: str, value: Any) -> bool:
        if key.lower().endswith(_REFERENCE_KEYS):  # `secretName: tls`: the name of a Secret, not a value
            return False
        return _scalar(value) and literal_problem(key, str(value), self.policy) is not None


def _scalar(value: Any) -> bool:
    return value is not None and not isinstance(value, dict | list | bool)
