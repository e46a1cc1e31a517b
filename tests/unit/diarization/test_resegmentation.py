"""The diarization stages around clustering (omoai_asr.diarization.resegmentation), driven by
synthetic unit embeddings: where windows lie, frame-level resegmentation, short-run smoothing and
speaker turns, and PipelineConfig built from the service's settings."""

from __future__ import annotations

import numpy as np
import pytest
from omoai_asr.diarization.config import DEFAULTS, PipelineConfig
from omoai_asr.diarization.resegmentation import FRAME_S, Windows, resegment, smooth_runs, turns, window_offsets
from omoai_asr.settings import AsrSettings

#: Two orthogonal voices: window embeddings and centroids in one 4-d space.
A, B = np.eye(4, dtype=np.float32)[:2]
CENTROIDS = np.stack([A, B]).astype(np.float64)


def _windows(spans: list[tuple[int, float, float, np.ndarray]]) -> Windows:
    region, start, end, emb = zip(*spans, strict=True)
    return Windows(np.asarray(region), np.asarray(start), np.asarray(end), np.stack(emb))


def test_a_region_shorter_than_a_window_is_one_window_of_its_own_length():
    assert window_offsets(80, 150, 75) == ([0], 80)
    assert window_offsets(150, 150, 75) == ([0], 150)


def test_windows_step_through_a_region_and_the_last_is_flush_with_its_end():
    offsets, size = window_offsets(400, 150, 75)
    assert size == 150
    assert offsets == [0, 75, 150, 225, 250]
    assert offsets[-1] + size == 400
    assert window_offsets(375, 150, 75) == ([0, 75, 150, 225], 150)  # already flush: no extra tail


def test_frames_follow_the_speaker_whose_windows_cover_them_and_change_where_the_windows_do():
    # One 3 s region: voice A in the first 1.5 s window, voice B in the second.
    w = _windows([(0, 0.0, 1.5, A), (0, 1.5, 3.0, B)])
    [ids] = resegment(w, np.array([0, 1]), CENTROIDS, [(0.0, 3.0)], min_run_s=0.5)
    assert len(ids) == round(3.0 / FRAME_S)
    change = np.flatnonzero(np.diff(ids)) + 1
    assert ids[0] == 0 and ids[-1] == 1
    assert len(change) == 1 and abs(change[0] * FRAME_S - 1.5) <= 2 * FRAME_S


def test_overlapping_windows_weigh_towards_their_centres():
    # A covers 0-2 s, B covers 1-3 s: in the overlap each frame goes to the nearer window centre.
    w = _windows([(0, 0.0, 2.0, A), (0, 1.0, 3.0, B)])
    [ids] = resegment(w, np.array([0, 1]), CENTROIDS, [(0.0, 3.0)], min_run_s=0.1)
    change = np.flatnonzero(np.diff(ids)) + 1
    assert len(change) == 1 and abs(change[0] * FRAME_S - 1.5) <= 2 * FRAME_S


def test_each_region_is_resegmented_from_its_own_windows_only():
    w = _windows([(0, 0.0, 1.0, A), (1, 2.0, 3.0, B)])
    first, second = resegment(w, np.array([0, 1]), CENTROIDS, [(0.0, 1.0), (2.0, 3.0)], min_run_s=0.5)
    assert set(first.tolist()) == {0} and set(second.tolist()) == {1}


def test_a_run_shorter_than_the_minimum_takes_the_neighbour_that_scores_it_higher():
    ids = np.array([0] * 50 + [1] * 10 + [2] * 50)
    scores = np.zeros((110, 3))
    scores[50:60, 2] = 1.0  # the short run of 1 sounds more like the right-hand speaker
    out = smooth_runs(ids, scores, min_run=20)
    assert out.tolist() == [0] * 50 + [2] * 60
    assert ids[50] == 1, "the input is left as it was"


def test_runs_at_the_edges_are_smoothed_into_their_only_neighbour_and_long_runs_are_kept():
    ids = np.array([1] * 5 + [0] * 100 + [1] * 60)
    out = smooth_runs(ids, np.zeros((165, 2)), min_run=20)
    assert out.tolist() == [0] * 105 + [1] * 60


def test_turns_end_at_their_region_and_a_speakers_turns_across_a_short_pause_are_joined():
    frames = [np.array([0] * 100 + [1] * 50), np.array([1] * 100), np.array([0] * 80)]
    regions = [(0.0, 1.503), (1.7, 2.7), (3.5, 4.3)]
    got = turns(frames, regions, merge_gap_s=0.3)
    assert got == [(0, 0.0, pytest.approx(1.0)), (1, pytest.approx(1.0), 2.7), (0, 3.5, 4.3)]
    # With no merging the pause between the two regions of speaker 1 stays a boundary.
    assert len(turns(frames, regions, merge_gap_s=0.0)) == 4


def test_pipeline_config_comes_from_the_diarization_settings():
    settings = AsrSettings(
        diarization_window_s=2.0,
        diarization_step_s=1.0,
        diarization_min_run_s=0.25,
        diarization_merge_gap_s=0.1,
        diarization_distinct_similarity=0.8,
        diarization_over_partition=2,
        diarization_batch_windows=64,
    )
    config = PipelineConfig.from_settings(settings)
    assert (config.window_s, config.step_s, config.min_run_s, config.merge_gap_s) == (2.0, 1.0, 0.25, 0.1)
    assert config.clustering.distinct_similarity == 0.8 and config.clustering.over_partition == 2
    assert config.batch_windows == 64
    assert config.vad == DEFAULTS.vad  # not a setting: the default
    assert PipelineConfig.from_settings(AsrSettings()) == DEFAULTS


def test_diarization_settings_out_of_range_are_refused_with_the_variable_named(monkeypatch):
    from pydantic import ValidationError

    monkeypatch.setenv("OMOAI_DIARIZATION_WINDOW_S", "0")
    with pytest.raises(ValidationError, match="diarization_window_s"):
        AsrSettings()
