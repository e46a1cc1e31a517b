"""JSON merge patches (RFC 7386), the way a status reaches the API server: :func:`diff` turns two
statuses into the patch between them, :func:`merge_patch` applies one (``None`` deletes a field,
lists are replaced whole).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``target`` with ``patch`` applied, as a new dict."""
    out = copy.deepcopy(dict(target))
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, Mapping):
            current = out.get(k)
            out[k] = merge_patch(current if isinstance(current, Mapping) else {}, v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """The smallest merge patch that turns ``before`` into ``after`` (``merge_patch(before, diff(before,
    after)) == after`` for JSON documents without nulls)."""
    out: dict[str, Any] = {}
    for k in before.keys() - after.keys():
        out[k] = None
    for k, v in after.items():
        old = before.get(k)
        if isinstance(v, Mapping) and isinstance(old, Mapping):
            inner = diff(old, v)
            if inner:
                out[k] = inner
        elif k not in before or old != v:
            out[k] = copy.deepcopy(v)
    return out
