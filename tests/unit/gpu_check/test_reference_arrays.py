"""The packed reference arrays (``tests/support/reference_arrays.py``): what the fidelity tests read
is the reference's float32 output to within half a grid step, integers exactly, duplicates once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.support import reference_arrays as ra


def test_packing_keeps_floats_within_half_a_step_integers_exactly_and_duplicates_once(tmp_path: Path) -> None:
    expected = tmp_path / "expected"
    expected.mkdir()
    rng = np.random.default_rng(0)
    enc = (rng.standard_normal((50, 16)) * 3).astype(np.float32)
    steps = rng.integers(0, 100, (20, 2)).astype(np.int32)
    np.save(expected / "encoder_out__short__c64_l128_r128_tbd1800.npy", enc)
    np.save(expected / "encoder_out__short__c64_l128_r128_tbd11.npy", enc)
    np.save(expected / "joint_steps__short__c64_l128_r128_tbd11.npy", steps)
    worst = ra.pack_directory(expected)
    assert 0 < worst["encoder_out"] <= ra.STEPS["encoder_out"] / 2 + 3 * 2.0**-24 * np.abs(enc).max()
    got = ra.load(expected / ra.PACKED)
    assert set(got) == {p.stem for p in expected.glob("*.npy")}
    assert got["encoder_out__short__c64_l128_r128_tbd11"].dtype == np.float32
    assert np.abs(got["encoder_out__short__c64_l128_r128_tbd11"] - enc).max() == pytest.approx(worst["encoder_out"])
    np.testing.assert_array_equal(got["joint_steps__short__c64_l128_r128_tbd11"], steps)
    with np.load(expected / ra.PACKED) as z:
        assert sum(name.endswith("::planes") for name in z.files) == 1  # the duplicate is an alias


def test_every_array_the_fixtures_name_is_stored_and_unknown_names_are_an_error() -> None:
    import json

    root = Path(__file__).resolve().parents[2] / "data" / "chunkformer"
    for fixture in ("small", "wide_k31", "rnnt_small"):
        doc = json.loads((root / fixture / "expected" / "expected.json").read_text(encoding="utf-8"))
        names = {v for e in doc["endless_decode"].values() for k, v in e.items() if k.endswith("_file")}
        stored = set(ra.load(root / fixture / "expected" / ra.PACKED))
        assert {n.removesuffix(".npy") for n in names} <= stored
        assert {f"fbank__{a}" for a in ("short", "long", "tiny")} <= stored
    with pytest.raises(KeyError, match="no expected array"):
        ra.expected_array(root / "small", "encoder_out__nothing.npy")
