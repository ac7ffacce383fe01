"""Kubernetes label-selector semantics, shared by the rules that match pods."""

from __future__ import annotations

from typing import Any

SELECTOR_KEYS = frozenset({"matchLabels", "matchExpressions"})


def selector_matches(selector: Any, labels: dict[str, Any]) -> bool:
    """A `LabelSelector` (matchLabels + matchExpressions, ANDed; `{}` selects everything).

    A selector that is not a mapping, has keys other than the two, or uses an unknown operator
    selects nothing: the API server would reject it, so it protects nothing.
    """
    if not isinstance(selector, dict) or set(selector) - SELECTOR_KEYS:
        return False
    labels = {str(k): str(v) for k, v in labels.items()}
    match = selector.get("matchLabels") or {}
    if not isinstance(match, dict) or any(labels.get(str(k)) != str(v) for k, v in match.items()):
        return False
    exprs = selector.get("matchExpressions") or []
    if not isinstance(exprs, list):
        return False
    return all(_expression(e, labels) for e in exprs)


def _expression(expr: Any, labels: dict[str, str]) -> bool:
    if not isinstance(expr, dict):
        return False
    key, op, values = str(expr.get("key", "")), expr.get("operator"), expr.get("values") or []
    values = {str(v) for v in values} if isinstance(values, list) else set()
    if op == "In":
        return labels.get(key) in values
    if op == "NotIn":
        return labels.get(key) not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    return False


def map_selects(selector: Any, labels: dict[str, Any]) -> bool:
    """A plain map selector (Service `spec.selector`): every pair present; empty selects nothing."""
    if not isinstance(selector, dict) or not selector:
        return False
    return all(str(labels.get(k)) == str(v) and k in labels for k, v in selector.items())


def pairs_on_no_template(selector: dict[str, Any], templates: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The `key=value` pairs of a map selector that none of the pod-template label sets carries: labels
    only something outside the templates can give a pod (a controller at run time, another repository)."""
    carried = {(str(k), str(v)) for labels in templates for k, v in labels.items()}
    return [(str(k), str(v)) for k, v in selector.items() if (str(k), str(v)) not in carried]
