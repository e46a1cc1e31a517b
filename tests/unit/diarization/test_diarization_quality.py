"""The default backend with its real pretrained weights on committed multi-speaker conversations:
DER by pyannote.metrics (0.25 s collar) and the number of speakers found."""

from __future__ import annotations

import numpy as np
import pytest
from omoai_asr.diarization.types import DiarizationOptions

from tests.unit.diarization.conftest import conversation, der

ESTIMATED = ["quick-2spk-100", "quick-3spk-100", "pauses-3spk-101", "overlap-2spk-100"]


@pytest.mark.parametrize("name", ESTIMATED)
def test_estimated_speaker_count_and_der_on_conversations(diarizer, name):
    samples, ref = conversation(name)
    result = diarizer.diarize(samples, DiarizationOptions())
    assert len(result.speakers) == len({t.speaker for t in ref})
    # Overlapped speech is scored (one voice per instant is output): a few percent more there.
    assert der(ref, result.turns) < (0.10 if "overlap" not in name else 0.15)


def test_given_speaker_count_is_used_and_scores_well(diarizer):
    samples, ref = conversation("quick-3spk-100")
    result = diarizer.diarize(samples, DiarizationOptions(num_speakers=3))
    assert len(result.speakers) == 3
    assert der(ref, result.turns) < 0.10
    assert len(diarizer.diarize(samples, DiarizationOptions(num_speakers=4)).speakers) == 4


def test_count_bounds_limit_the_estimate(diarizer):
    samples, _ = conversation("quick-3spk-100")
    assert len(diarizer.diarize(samples, DiarizationOptions(max_speakers=2)).speakers) == 2
    samples, _ = conversation("quick-2spk-100")
    assert len(diarizer.diarize(samples, DiarizationOptions(min_speakers=3, max_speakers=4)).speakers) >= 3


def test_labels_are_s1_s2_in_order_of_first_appearance(diarizer):
    samples, _ = conversation("quick-2spk-100")
    result = diarizer.diarize(samples, DiarizationOptions())
    assert result.speakers == ("S1", "S2")
    assert result.turns[0].speaker == "S1"
    assert all(a.start <= b.start for a, b in zip(result.turns, result.turns[1:], strict=False))


def test_known_reference_voice_names_its_speaker(diarizer):
    # The reference clip is a turn of the same voice taken from another recording.
    samples, ref = conversation("quick-3spk-100")  # kal, ked, lp
    other, other_ref = conversation("quick-2spk-100")  # dita, kal
    kal = next(t for t in other_ref if t.speaker == "kal")
    clip = other[int(kal.start * 16000) : int(kal.end * 16000)]
    result = diarizer.diarize(samples, DiarizationOptions(references={"Kal": clip}))
    assert "Kal" in result.speakers
    named = [t for t in result.turns if t.speaker == "Kal"]
    kal_ref = [t for t in ref if t.speaker == "kal"]
    covered = sum(max(0.0, min(a.end, b.end) - max(a.start, b.start)) for a in named for b in kal_ref)
    assert covered > 0.8 * sum(t.end - t.start for t in kal_ref)
    assert sorted(set(result.speakers) - {"Kal"}) == ["S1", "S2"]  # the others keep S-labels, in order


def test_silence_has_no_speakers_and_one_voice_has_one(diarizer):
    rng = np.random.default_rng(0)
    silence = rng.normal(0, 20, 16000 * 5).astype(np.int16)
    assert diarizer.diarize(silence, DiarizationOptions()).turns == ()
    samples, ref = conversation("quick-2spk-100")
    first = ref[0]
    one = samples[int(first.start * 16000) : int(first.end * 16000)]
    assert len(diarizer.diarize(one, DiarizationOptions()).speakers) == 1


def test_one_short_voice_is_one_speaker_and_two_short_turns_are_two(diarizer):
    from pathlib import Path

    from omoai_audio import decode_audio

    sample = Path(__file__).resolve().parents[3] / "samples" / "xin-chao.wav"  # 7 s, one espeak-ng voice
    assert diarizer.diarize(decode_audio(sample).samples, DiarizationOptions()).speakers == ("S1",)
    samples, ref = conversation("pauses-3spk-101")
    first_two = samples[: int((ref[1].end + 0.3) * 16000)]  # 8 s: two voices, one turn each
    assert len(diarizer.diarize(first_two, DiarizationOptions()).speakers) == 2
