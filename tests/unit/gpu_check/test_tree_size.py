"""What travels to a GPU machine fits: the tracked tree plus the ``make gpu-bundle`` bundle stay
under 60 MiB (the device transfer's limit is 64 MiB), computed from ``git ls-files`` and the
committed bundle manifest, so it holds in CI where the bundle was never built; where ``.whl/`` was
built, its files are the manifest's."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
LIMIT_BYTES = 60 * 2**20

pytestmark = pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs the git checkout")


def _manifest() -> dict[str, int]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_bundle", ROOT / "scripts" / "gpu_bundle.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    files: dict[str, int] = module.read_manifest()
    return files


def tracked_bytes() -> dict[str, int]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    paths = [ROOT / p for p in out.decode().split("\0") if p]
    return {str(p.relative_to(ROOT)): p.stat().st_size for p in paths if p.is_file()}


def test_tracked_tree_plus_gpu_bundle_stays_under_60_mib() -> None:
    tree = tracked_bytes()
    bundle = _manifest()
    total = sum(tree.values()) + sum(bundle.values())
    largest = sorted(tree.items(), key=lambda kv: -kv[1])[:5]
    assert total < LIMIT_BYTES, (
        f"tree {sum(tree.values()) / 2**20:.1f} MiB + bundle {sum(bundle.values()) / 2**20:.1f} MiB "
        f"= {total / 2**20:.1f} MiB; largest tracked files {largest}"
    )


def test_the_bundle_manifest_names_every_part_the_gpu_check_uses() -> None:
    bundle = _manifest()
    groups = {name.split("/")[0] for name in bundle}
    assert groups == {"ours", "ref", "refstub", "assets"}
    assert any(name.startswith("ref/chunkformer-1.2.2-") for name in bundle)
    assert {"assets/speaker_encoder.pt", "assets/silero_vad_v6.onnx"} <= set(bundle)


def test_a_built_bundle_has_exactly_the_manifest_files_and_sizes() -> None:
    built = ROOT / ".whl"
    bundle = _manifest()
    present = {name: (built / name).stat().st_size for name in bundle if (built / name).is_file()}
    if not present:
        pytest.skip("the bundle is not built here (make gpu-bundle); the manifest alone was checked")
    assert present == bundle
