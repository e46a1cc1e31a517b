#!/usr/bin/env python3
"""Generate ``values.schema.json`` from ``values.yaml``: the defaults give the types, the comment
above each key gives its description, and ``# @schema {...}`` comment lines add JSON-schema
constraints (enum, minimum, pattern, items, ...).

Rules, so that the schema catches typos and bad values instead of letting Helm render a broken
release:

- a mapping becomes an object with ``additionalProperties: false`` whose properties are its keys,
  unless its annotation sets ``type``, ``$ref`` or ``additionalProperties`` (a free-form mapping
  such as ``nodeSelector`` or a Kubernetes object such as ``securityContext``);
- an annotation with ``type``, ``anyOf``, ``oneOf`` or ``$ref`` replaces the inferred type;
- every key outside free-form mappings and lists must have a comment (the house rule "a comment
  on every value"); a missing one is an error;
- ``{"$ref": "#/definitions/io.k8s..."}`` names a Kubernetes type: its definition (and every one it
  references) is copied from the strict JSON schemas kubernetes-validate bundles for
  ``KUBE_VERSION``, with unknown fields refused (``additionalProperties: false``), so a typo such as
  ``readOnlyRootFileSystem`` in a pass-through securityContext fails the install;
- a ``number`` also accepts a decimal string: ``helm --set x=0.9`` passes the string "0.9" (Helm
  only types whole numbers), and the templates print numbers as strings anyway.

Usage: ``gen_schema.py`` writes the schema; ``gen_schema.py --check`` exits 1 when the file on disk
differs from what would be generated (the chart tests run it).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent.parent
VALUES = CHART / "values.yaml"
SCHEMA = CHART / "values.schema.json"

_KEY = re.compile(r'^(?P<indent> *)(?P<key>"[^"]+"|\'[^\']+\'|[A-Za-z0-9_./-]+):(?:\s|$)')
_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"
_REPLACES_TYPE = ("type", "anyOf", "oneOf", "$ref")
_FREE_FORM = ("type", "$ref", "additionalProperties")
_DECIMAL = r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$"
#: Kubernetes version whose API schemas validate pass-through objects (the oldest the tests target).
KUBE_VERSION = "1.29.0"
_K8S_PREFIX = "#/definitions/io.k8s."

#: Shared definitions referenced from annotations with ``{"$ref": "#/definitions/<name>"}``.
DEFINITIONS: dict[str, Any] = {
    "quantity": {
        "anyOf": [
            {"type": "string", "pattern": _QUANTITY},
            {"type": "number", "minimum": 0},
        ]
    },
    "resources": {
        "type": "object",
        "description": "Kubernetes ResourceRequirements (requests and limits).",
        "additionalProperties": False,
        "properties": {
            "requests": {"type": "object", "additionalProperties": {"$ref": "#/definitions/quantity"}},
            "limits": {"type": "object", "additionalProperties": {"$ref": "#/definitions/quantity"}},
        },
    },
}


class SchemaError(Exception):
    """values.yaml breaks one of the rules above."""


@dataclass
class KeyDoc:
    description: str = ""
    annotation: dict[str, Any] = field(default_factory=dict)


def scan_comments(text: str) -> dict[tuple[str, ...], KeyDoc]:
    """Map each key path of a block-style YAML document to the comment block right above it.

    Keys inside list items are not recorded (lists are typed by their annotation instead).
    """
    docs: dict[tuple[str, ...], KeyDoc] = {}
    stack: list[tuple[int, str | None]] = []  # (indent, key); key None marks a list item
    pending: list[str] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            pending = []
            continue
        if stripped.startswith("#"):
            pending.append(stripped[1:].strip())
            continue
        indent = len(line) - len(line.lstrip(" "))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if stripped.startswith("- ") or stripped == "-":
            stack.append((indent, None))
            pending = []
            continue
        m = _KEY.match(line)
        if not m:
            pending = []
            continue
        if any(key is None for _, key in stack):
            pending = []
            continue
        key = m["key"].strip("\"'")
        path = tuple(k for _, k in stack if k is not None) + (key,)
        docs[path] = _parse_block(pending, path, lineno)
        pending = []
        stack.append((indent, key))
    return docs


def _parse_block(lines: list[str], path: tuple[str, ...], lineno: int) -> KeyDoc:
    doc = KeyDoc()
    words: list[str] = []
    for line in lines:
        if line.startswith("@schema"):
            try:
                doc.annotation.update(json.loads(line[len("@schema") :]))
            except json.JSONDecodeError as e:
                raise SchemaError(f"values.yaml:{lineno}: bad @schema JSON above {'.'.join(path)}: {e}") from e
        elif line and not set(line) <= {"-"}:
            words.append(line)
    doc.description = " ".join(words)
    return doc


def infer(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    if isinstance(value, list):
        return {"type": "array"}
    if isinstance(value, dict):
        return {"type": "object"}
    if value is None:
        return {}
    raise SchemaError(f"unsupported value type {type(value).__name__}")


def build(value: Any, docs: dict[tuple[str, ...], KeyDoc], path: tuple[str, ...]) -> dict[str, Any]:
    doc = docs.get(path)
    if path and (doc is None or not doc.description):
        raise SchemaError(f"values.yaml: {'.'.join(path)} has no comment (every value is documented)")
    annotation = dict(doc.annotation) if doc else {}
    schema: dict[str, Any] = {} if path else {"$schema": "http://json-schema.org/draft-07/schema#"}
    if doc and doc.description:
        schema["description"] = doc.description
    inferred = infer(value)
    if not any(k in annotation for k in _REPLACES_TYPE):
        schema.update(inferred)
    free_form = any(k in annotation for k in _FREE_FORM)
    if isinstance(value, dict) and not free_form:
        schema["additionalProperties"] = False
        schema["properties"] = {k: build(v, docs, (*path, str(k))) for k, v in value.items()}
    schema.update(annotation)
    return schema


def _numbers_accept_decimal_strings(node: Any) -> Any:
    """Rewrite every ``{"type": "number", ...}`` as anyOf that or a decimal string."""
    if isinstance(node, list):
        return [_numbers_accept_decimal_strings(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _numbers_accept_decimal_strings(v) for k, v in node.items()}
    if node.get("type") == "number":
        number = {k: v for k, v in node.items() if k != "description"}
        out: dict[str, Any] = {"description": node["description"]} if "description" in node else {}
        out["anyOf"] = [number, {"type": "string", "pattern": _DECIMAL}]
        return out
    return node


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


def _kubernetes_definitions() -> dict[str, Any]:
    import kubernetes_validate

    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    path = root / f"v{KUBE_VERSION}-local-strict" / "_definitions.json"
    return json.loads(path.read_text(encoding="utf-8"))["$defs"]


def _localise(node: Any) -> Any:
    """Kubernetes schema -> ours: refs into our ``definitions``, descriptions dropped (size)."""
    if isinstance(node, list):
        return [_localise(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k == "description" and isinstance(v, str):
            continue
        if k == "$ref" and isinstance(v, str):
            v = "#/definitions/" + v.rsplit("/", 1)[-1]
        out[k] = _localise(v)
    return out


def kubernetes_closure(schema: dict[str, Any]) -> dict[str, Any]:
    """The Kubernetes definitions ``schema`` references, transitively, keyed by their full name."""
    wanted = sorted(r for r in _refs(schema) if r.startswith(_K8S_PREFIX))
    if not wanted:
        return {}
    source = _kubernetes_definitions()
    out: dict[str, Any] = {}
    todo = [r.removeprefix("#/definitions/") for r in wanted]
    while todo:
        name = todo.pop()
        if name in out:
            continue
        if name not in source:
            raise SchemaError(f"no Kubernetes {KUBE_VERSION} definition named {name}")
        out[name] = _localise(source[name])
        todo += [r.removeprefix("#/definitions/") for r in _refs(out[name])]
    return dict(sorted(out.items()))


def generate(values_text: str) -> dict[str, Any]:
    values = yaml.safe_load(values_text)
    if not isinstance(values, dict):
        raise SchemaError("values.yaml must be a mapping")
    schema = _numbers_accept_decimal_strings(build(values, scan_comments(values_text), ()))
    schema["title"] = "Values of the omoai Helm chart"
    schema["definitions"] = {**DEFINITIONS, **kubernetes_closure(schema)}
    return schema


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail when values.schema.json is stale")
    args = parser.parse_args(argv)
    try:
        text = render(generate(VALUES.read_text(encoding="utf-8")))
    except SchemaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        current = SCHEMA.read_text(encoding="utf-8") if SCHEMA.exists() else ""
        if current != text:
            print(f"{SCHEMA} is stale: run {Path(__file__).name} to regenerate it", file=sys.stderr)
            return 1
        return 0
    SCHEMA.write_text(text, encoding="utf-8")
    print(f"wrote {SCHEMA}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
