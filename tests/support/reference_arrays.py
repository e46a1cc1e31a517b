"""The reference fixtures' expected arrays, packed: ``expected/arrays.npz`` read by original file name.

The tests compare these arrays with an absolute tolerance (1e-3 for fbank, encoder output and
CTC log-probs; 5e-5 for the transducer's joint log-probs), so float32 carries far more precision
than any comparison reads. Each float array is stored as integers on a grid of ``step`` (the
rounding error is at most ``step / 2`` plus float32 rounding, at least 15 times below the
comparison's tolerance), split into its four byte planes so zlib sees the slowly varying high
bytes together; byte-identical arrays (one-window entries, equal for every ``total_batch_duration``) are stored
once with an alias. The packer checks every array it writes by unpacking it again.

Regenerated fixtures come as ``.npy`` files; pack them (checked) and remove them with

    .venv/bin/python -m tests.support.reference_arrays tests/data/chunkformer/small --delete

Tests read an array with :func:`expected_array` (``tests/unit/asr/conftest.py`` re-exports it).
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import cache
from pathlib import Path

import numpy as np

# Grid step per array kind (the file name's prefix): the stored error is at most half of it.
STEPS = {"fbank": 2e-5, "encoder_out": 2e-5, "ctc_logprobs": 2e-5, "joint_logprobs": 4e-6}
ENCODER_STEP_FOR_JOINT = 1e-6
ALIASES = "__aliases__"
PACKED = "arrays.npz"


def _step(expected: Path, kind: str) -> float:
    """The grid of one array kind; a transducer's encoder output is also the input of the joint
    log-prob comparison (5e-5), through weights that amplify its error, so it is kept finer."""
    if kind == "encoder_out" and any(expected.glob("joint_logprobs__*")):
        return ENCODER_STEP_FOR_JOINT
    return STEPS[kind]


def pack(array: np.ndarray, step: float) -> np.ndarray:
    """float (...) -> uint8 (4, N): int32 grid values, one row per byte plane."""
    q = np.rint(array.astype(np.float64) / step)
    if np.abs(q).max(initial=0) >= 2**31:
        raise ValueError(f"values up to {np.abs(array).max()} do not fit an int32 grid of step {step}")
    return np.ascontiguousarray(q.astype("<i4").reshape(-1).view(np.uint8).reshape(-1, 4).T)


def unpack(planes: np.ndarray, shape: tuple[int, ...], step: float) -> np.ndarray:
    """The inverse of :func:`pack`, as float32."""
    q = np.ascontiguousarray(planes.T).view("<i4").reshape(shape)
    return (q.astype(np.float64) * step).astype(np.float32)


@cache
def expected_array(fixture_dir: Path, file_name: str) -> np.ndarray:
    """One expected array by its original file name (``encoder_out__long__c16_l32_r16_tbd11.npy``,
    as ``expected.json`` names it): float32 on the stored grid, or the original integers."""
    arrays = _load_cached(fixture_dir / "expected" / PACKED)
    name = file_name.removesuffix(".npy")
    if name not in arrays:
        raise KeyError(f"{fixture_dir.name} has no expected array {file_name!r}")
    return arrays[name].copy()


@cache
def _load_cached(path: Path) -> dict[str, np.ndarray]:
    return load(path)


def load(path: Path) -> dict[str, np.ndarray]:
    """Every array of a packed file by its original stem (``encoder_out__long__c16_...``)."""
    with np.load(path) as z:
        stored = {k: z[k] for k in z.files}
    aliases: dict[str, str] = json.loads(str(stored.pop(ALIASES)))
    out: dict[str, np.ndarray] = {}
    for name in {k.split("::")[0] for k in stored}:
        if f"{name}::planes" in stored:
            shape = tuple(int(n) for n in stored[f"{name}::shape"])
            out[name] = unpack(stored[f"{name}::planes"], shape, float(stored[f"{name}::step"]))
        else:
            out[name] = stored[name]
    for alias, name in aliases.items():
        out[alias] = out[name]
    return out


def pack_directory(expected: Path) -> dict[str, float]:
    """Write ``expected/arrays.npz`` from ``expected/*.npy``; returns the worst error per kind."""
    members: dict[str, np.ndarray] = {}
    aliases: dict[str, str] = {}
    seen: dict[bytes, str] = {}
    originals: dict[str, np.ndarray] = {}
    for path in sorted(expected.glob("*.npy")):
        name = path.stem
        array = np.load(path)
        originals[name] = array
        key = array.dtype.str.encode() + str(array.shape).encode() + array.tobytes()
        if key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        kind = name.split("__")[0]
        if array.dtype.kind == "f":
            step = _step(expected, kind)
            members[f"{name}::planes"] = pack(array, step)
            members[f"{name}::shape"] = np.array(array.shape, dtype=np.int64)
            members[f"{name}::step"] = np.array(step)
        else:
            members[name] = array
    members[ALIASES] = np.array(json.dumps(aliases, sort_keys=True))
    target = expected / PACKED
    np.savez_compressed(target, **members)  # type: ignore[arg-type]
    worst: dict[str, float] = {}
    for name, array in load(target).items():
        original = originals[name]
        if original.dtype.kind != "f":
            if not np.array_equal(array, original) or array.dtype != original.dtype:
                raise AssertionError(f"{name}: integer array changed by packing")
            continue
        err = float(np.abs(array.astype(np.float64) - original.astype(np.float64)).max(initial=0))
        kind = name.split("__")[0]
        # Half a grid step, plus the float32 rounding of the unpacked value.
        bound = _step(expected, kind) / 2 + float(np.abs(original).max(initial=0)) * 2.0**-24
        if err > bound:
            raise AssertionError(f"{name}: stored error {err} above {bound}")
        worst[kind] = max(worst.get(kind, 0.0), err)
    if set(load(target)) != set(originals):
        raise AssertionError("packed names differ from the .npy files")
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fixtures", nargs="+", type=Path, help="fixture directories (holding expected/)")
    parser.add_argument("--delete", action="store_true", help="remove the .npy files once packed and checked")
    args = parser.parse_args(argv)
    for fixture in args.fixtures:
        expected = fixture / "expected"
        before = sum(p.stat().st_size for p in expected.glob("*.npy"))
        worst = pack_directory(expected)
        after = (expected / PACKED).stat().st_size
        print(f"{fixture}: {before / 2**20:.2f} MiB of .npy -> {after / 2**20:.2f} MiB; worst stored error {worst}")
        if args.delete:
            for p in expected.glob("*.npy"):
                p.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
