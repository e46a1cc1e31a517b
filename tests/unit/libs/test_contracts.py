"""The values every component must agree on are defined once (omoai_core.contracts, durations,
errors) and every component takes them from there."""

from __future__ import annotations

import pytest
from omoai_core.contracts import FORMATS, InvalidLanguageError, primary_language
from omoai_core.contracts.asr import DECODE_DEFAULTS, TranscriptionOptions, UrlTranscriptionRequest
from omoai_core.durations import clock, timestamp
from omoai_core.errors import AUDIO_ERROR_CODES, AudioError, InvalidInputError


@pytest.mark.parametrize(
    ("tag", "lang"), [("vi", "vi"), ("vi-VN", "vi"), ("VI_vn", "vi"), (" en ", "en"), ("yue", "yue")]
)
def test_a_language_tag_means_its_primary_subtag(tag: str, lang: str) -> None:
    assert primary_language(tag) == lang


@pytest.mark.parametrize("tag", ["", "english", "v", "1a", "vi1-VN"])
def test_what_is_not_a_language_tag_is_a_400_and_a_value_error(tag: str) -> None:
    with pytest.raises(InvalidLanguageError) as e:
        primary_language(tag)
    assert isinstance(e.value, InvalidInputError) and isinstance(e.value, ValueError)
    assert e.value.http_status == 400


def test_durations_read_the_same_everywhere() -> None:
    assert timestamp(3725.0456) == "01:02:05,046" and timestamp(1.5, ".") == "00:00:01.500"
    assert timestamp(-1) == "00:00:00,000"
    assert clock(65.9) == "1:05" and clock(3725) == "1:02:05" and clock(7.9, hours=True) == "0:00:07"


def test_every_component_takes_the_decode_defaults_and_formats_from_the_contract() -> None:
    from omoai_asr.geometry import DecodeOptions
    from omoai_asr.settings import AsrSettings
    from omoai_core.settings import load_settings
    from omoai_formats import FORMATS as WRITER_FORMATS
    from omoai_operator.spec import AsrOptions

    from tests.support import operator_crd

    expected = (
        DECODE_DEFAULTS.chunk_size,
        DECODE_DEFAULTS.left_context,
        DECODE_DEFAULTS.right_context,
        DECODE_DEFAULTS.total_batch_duration,
    )
    assert expected == (64, 128, 128, 1800.0)
    for o in (DecodeOptions(), AsrOptions(), load_settings(AsrSettings, model="m")):
        assert (o.chunk_size, o.left_context, o.right_context, o.total_batch_duration) == expected
    asr = operator_crd.load_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "properties"
    ]["asr"]["properties"]
    crd = tuple(asr[k]["default"] for k in ("chunkSize", "leftContext", "rightContext", "totalBatchDuration"))
    assert crd == expected
    assert WRITER_FORMATS == FORMATS == ("json", "txt", "srt", "vtt", "md")


def test_options_a_caller_set_are_what_goes_on_the_wire() -> None:
    opts = TranscriptionOptions(chunk_size=32, word_timestamps=False)
    assert opts.form_fields() == {"chunk_size": "32", "word_timestamps": "false"}
    body = UrlTranscriptionRequest(audio_url="s3://b/k", **opts.model_dump(exclude_unset=True))
    assert body.model_dump(exclude_unset=True) == {"audio_url": "s3://b/k", "chunk_size": 32, "word_timestamps": False}


def test_the_audio_error_codes_are_every_audio_error() -> None:
    def codes(cls: type[AudioError]) -> set[str]:
        return {cls.code}.union(*(codes(c) for c in cls.__subclasses__()))

    assert AUDIO_ERROR_CODES == codes(AudioError)
    assert {"invalid_audio", "empty_audio", "corrupt_audio", "not_audio", "audio_too_short", "audio_too_long"} <= (
        AUDIO_ERROR_CODES
    )
