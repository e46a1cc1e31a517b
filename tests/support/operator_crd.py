"""Test support: the TranscriptionJob CRD as the API server would apply it.

- ``json_schema()``: the ``openAPIV3Schema`` translated to JSON Schema (``nullable``,
  ``x-kubernetes-int-or-string``, ``x-kubernetes-preserve-unknown-fields``; unknown fields are
  errors, as with ``kubectl apply --validate=strict``).
- ``apply_defaults()``: structural defaulting, as the API server does before validation.
- ``CEL``: a Python evaluator for each of our ``x-kubernetes-validations`` rules, keyed by the exact
  rule text, so a new or edited rule without a checker fails the tests instead of going unchecked.
- ``validate()``: all three, returning the error messages (empty when valid).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "charts" / "omoai" / "crds" / "transcriptionjobs.omoai.io.yaml"
EXAMPLES = ROOT / "examples"


def load_crd() -> dict[str, Any]:
    return copy.deepcopy(_crd())


@functools.cache
def _crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_PATH.read_text())


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json_schema())


def openapi_schema(crd: dict[str, Any] | None = None) -> dict[str, Any]:
    crd = crd or _crd()
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    return version["schema"]["openAPIV3Schema"]


def _translate(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k.startswith("x-kubernetes-") or k == "nullable":
            continue
        if k == "properties":
            out[k] = {name: _translate(sub) for name, sub in v.items()}
        elif k in ("items", "additionalProperties") and isinstance(v, dict):
            out[k] = _translate(v)
        else:
            out[k] = copy.deepcopy(v)
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if node.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    is_object = node.get("type") == "object"
    closed = "properties" in node and "additionalProperties" not in node
    if is_object and closed and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def json_schema(crd: dict[str, Any] | None = None) -> dict[str, Any]:
    schema = _translate(openapi_schema(crd))
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def apply_defaults(obj: Any, schema: dict[str, Any] | None = None) -> Any:
    """Fill in ``default`` values the way the API server does (objects and list items that are present,
    recursively)."""
    schema = schema if schema is not None else openapi_schema()
    if isinstance(obj, list) and schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        for item in obj:  # the API server defaults inside list items too
            apply_defaults(item, schema["items"])
        return obj
    if not isinstance(obj, dict) or schema.get("type") != "object":
        return obj
    for name, sub in (schema.get("properties") or {}).items():
        if name not in obj and "default" in sub:
            obj[name] = copy.deepcopy(sub["default"])
        if name in obj:
            apply_defaults(obj[name], sub)
    return obj


# -- CEL: one Python evaluator per rule ----------------------------------------------------------
def _exactly_one(*fields: str) -> Callable[[dict[str, Any], Any], bool]:
    return lambda self, old: sum(f in self for f in fields) == 1


def _relative(self: dict[str, Any], old: Any) -> bool:
    return not self["path"].startswith("/") and ".." not in self["path"].split("/")


def _immutable(self: dict[str, Any], old: Any) -> bool:
    if old is None:
        return True  # transition rules only run on updates
    fields = ("source", "output", "language", "asr", "postprocess", "diarization", "notifications")
    return all(self.get(k) == old.get(k) for k in fields)


def _counts_need_enabled(self: dict[str, Any], old: Any) -> bool:
    return bool(self.get("enabled")) or not any(k in self for k in ("numSpeakers", "minSpeakers", "maxSpeakers"))


def _min_le_max(self: dict[str, Any], old: Any) -> bool:
    return "minSpeakers" not in self or "maxSpeakers" not in self or self["minSpeakers"] <= self["maxSpeakers"]


def _num_within(self: dict[str, Any], old: Any) -> bool:
    if "numSpeakers" not in self:
        return True
    n = self["numSpeakers"]
    return self.get("minSpeakers", n) <= n <= self.get("maxSpeakers", n)


CEL: dict[str, Callable[[dict[str, Any], Any], bool]] = {
    "[has(self.url), has(self.s3), has(self.pvc)].filter(x, x).size() == 1": _exactly_one("url", "s3", "pvc"),
    "[has(self.pvc), has(self.s3)].filter(x, x).size() == 1": _exactly_one("pvc", "s3"),
    "!self.path.startsWith('/') && !self.path.split('/').exists(p, p == '..')": _relative,
    "self.source == oldSelf.source && self.output == oldSelf.output && self.language == oldSelf.language "
    "&& self.asr == oldSelf.asr && self.postprocess == oldSelf.postprocess "
    "&& self.diarization == oldSelf.diarization && self.notifications == oldSelf.notifications": _immutable,
    "self.enabled || (!has(self.numSpeakers) && !has(self.minSpeakers) && !has(self.maxSpeakers))": _counts_need_enabled,
    "!has(self.minSpeakers) || !has(self.maxSpeakers) || self.minSpeakers <= self.maxSpeakers": _min_le_max,
    "!has(self.numSpeakers) || ((!has(self.minSpeakers) || self.minSpeakers <= self.numSpeakers) "
    "&& (!has(self.maxSpeakers) || self.numSpeakers <= self.maxSpeakers))": _num_within,
}


def cel_rules(
    schema: dict[str, Any] | None = None, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    """Every ``x-kubernetes-validations`` rule with the property path it sits on."""
    schema = schema if schema is not None else openapi_schema()
    found = [(path, r) for r in schema.get("x-kubernetes-validations", [])]
    for name, sub in (schema.get("properties") or {}).items():
        found += cel_rules(sub, (*path, name))
    return found


def _at(obj: Any, path: tuple[str, ...]) -> Any:
    for p in path:
        if not isinstance(obj, dict) or p not in obj:
            return None
        obj = obj[p]
    return obj


def check_cel(obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    errors = []
    for path, rule in cel_rules():
        node = _at(obj, path)
        if node is None:
            continue
        uses_old = "oldSelf" in rule["rule"]
        if uses_old and old is None:
            continue
        fn = CEL[rule["rule"]]
        if not fn(node, _at(old, path) if old is not None else None):
            errors.append(f"{'.'.join(path)}: {rule.get('message', rule['rule'])}")
    return errors


def validate(obj: dict[str, Any], old: dict[str, Any] | None = None, *, defaults: bool = True) -> list[str]:
    """What the API server would answer: the list of errors (empty = accepted)."""
    obj = copy.deepcopy(obj)
    if defaults:
        apply_defaults(obj)
    validator = _validator()
    errors = [
        f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in validator.iter_errors(obj)
    ]
    if errors:
        return errors  # like the API server: schema first, CEL on schema-valid objects
    return check_cel(obj, old)
