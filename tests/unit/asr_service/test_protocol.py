"""Request validation and settings of the ASR service: every bad value is a 400 or a ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest
from omoai_asr.engine.options import DecodeOptions
from omoai_asr.protocol import OpenAIOptions, TranscriptionOptions, UrlTranscriptionRequest, verbose_json
from omoai_asr.routes import validate
from omoai_asr.settings import AsrSettings
from omoai_core.errors import ConfigError, InvalidInputError
from omoai_core.schemas import Segment, Transcript, Word
from omoai_core.settings import load_settings


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> AsrSettings:
    for var in ("OMOAI_CHUNK_SIZE", "OMOAI_WORD_TIMESTAMPS", "OMOAI_MAX_QUEUE"):
        monkeypatch.delenv(var, raising=False)
    return load_settings(AsrSettings, model="m")


def test_unset_options_take_the_server_defaults(settings: AsrSettings) -> None:
    assert TranscriptionOptions().decode_options(settings) == DecodeOptions()


def test_form_strings_are_coerced_and_applied(settings: AsrSettings) -> None:
    opts = validate(TranscriptionOptions, {"chunk_size": "32", "word_timestamps": "false", "format": "srt"})
    assert opts.decode_options(settings) == DecodeOptions(chunk_size=32, word_timestamps=False)
    assert opts.format == "srt"


@pytest.mark.parametrize(
    "fields, needle",
    [
        ({"chunk_size": "0"}, "chunk_size"),
        ({"chunk_size": "abc"}, "chunk_size"),
        ({"left_context": "-1"}, "left_context"),
        ({"total_batch_duration": "0"}, "total_batch_duration"),
        ({"format": "docx"}, "format"),
        ({"colour": "blue"}, "colour: unknown field"),
    ],
)
def test_bad_options_are_invalid_input_naming_the_field(fields: dict, needle: str) -> None:
    with pytest.raises(InvalidInputError, match=needle) as e:
        validate(TranscriptionOptions, fields)
    assert e.value.http_status == 400


def test_options_the_model_cannot_run_are_invalid_input(settings: AsrSettings) -> None:
    opts = validate(TranscriptionOptions, {"chunk_size": "3000", "left_context": "3000"})
    with pytest.raises(InvalidInputError, match="relative position"):
        opts.decode_options(settings)


def test_url_requests_need_an_audio_url() -> None:
    with pytest.raises(InvalidInputError, match="audio_url"):
        validate(UrlTranscriptionRequest, {"format": "txt"})
    assert validate(UrlTranscriptionRequest, {"audio_url": "s3://b/k"}).audio_url == "s3://b/k"


def test_openai_options_take_streaming_and_refuse_out_of_range_temperature() -> None:
    assert validate(OpenAIOptions, {"model": "m", "stream": "true"}).stream is True
    with pytest.raises(InvalidInputError, match="stream"):
        validate(OpenAIOptions, {"model": "m", "stream": "sometimes"})
    with pytest.raises(InvalidInputError, match="temperature"):
        validate(OpenAIOptions, {"model": "m", "temperature": "1.5"})
    with pytest.raises(InvalidInputError, match="model"):
        validate(OpenAIOptions, {})
    with pytest.raises(InvalidInputError, match="timestamp_granularities"):
        validate(OpenAIOptions, {"model": "m", "timestamp_granularities": ["char"]})


def test_granularities_need_verbose_json() -> None:
    opts = validate(OpenAIOptions, {"model": "m", "timestamp_granularities": ["word"]})
    with pytest.raises(InvalidInputError, match="verbose_json"):
        opts.check_granularities()


def _transcript() -> Transcript:
    words = [Word(word="xin", start=0.1, end=0.3), Word(word="chào", start=0.3, end=0.6)]
    return Transcript(
        text="xin chào", segments=[Segment(text="xin chào", start=0.1, end=0.6, words=words)], duration=1.0, model="m"
    )


def test_verbose_json_has_segments_by_default_and_words_only_when_asked() -> None:
    body = verbose_json(_transcript(), "vi", [])
    assert body.segments and body.segments[0].text == "xin chào" and body.words is None
    body = verbose_json(_transcript(), "vi", ["word"])
    assert body.segments is None and [w.word for w in body.words or []] == ["xin", "chào"]
    body = verbose_json(_transcript(), "vi", ["word", "segment"])
    assert body.segments and body.words and body.duration == 1.0 and body.language == "vi"


# -- settings -----------------------------------------------------------------------------------


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OMOAI_MAX_QUEUE", "3")
    monkeypatch.setenv("OMOAI_URL_ALLOWED_SCHEMES", "https, S3")
    monkeypatch.setenv("OMOAI_URL_ALLOWED_NETWORKS", '["10.0.12.0/24"]')
    monkeypatch.setenv("OMOAI_FILE_ROOT", str(tmp_path))
    monkeypatch.setenv("OMOAI_S3_SECRET_ACCESS_KEY", "s3cr3t")
    monkeypatch.setenv("OMOAI_S3_ACCESS_KEY_ID", "id")
    s = load_settings(AsrSettings, model="m")
    assert s.max_queue == 3 and s.url_allowed_schemes == ["https", "s3"]
    assert [str(n) for n in s.url_allowed_networks] == ["10.0.12.0/24"]
    assert s.file_root == tmp_path.resolve()
    assert "s3cr3t" not in repr(s)


@pytest.mark.parametrize(
    "env, needle",
    [
        ({"OMOAI_FILE_ROOT": "/no/such/dir"}, "OMOAI_FILE_ROOT"),
        ({"OMOAI_URL_ALLOWED_SCHEMES": "ftp"}, "OMOAI_URL_ALLOWED_SCHEMES"),
        ({"OMOAI_MAX_BATCH_SIZE": "0"}, "OMOAI_MAX_BATCH_SIZE"),
        ({"OMOAI_S3_ACCESS_KEY_ID": "id"}, "OMOAI_S3_SECRET_ACCESS_KEY"),
        ({"OMOAI_ALLOW_PRIVATE_ADDRESSES": "maybe"}, "OMOAI_ALLOW_PRIVATE_ADDRESSES"),
    ],
)
def test_bad_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch, env: dict, needle: str) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match=needle):
        load_settings(AsrSettings, model="m")


def test_served_name_is_the_directory_name_or_the_hub_id(tmp_path: Path) -> None:
    (tmp_path / "chunkformer-x").mkdir()
    assert AsrSettings(model=str(tmp_path / "chunkformer-x")).served_name() == "chunkformer-x"
    assert AsrSettings(model="khanhld/chunkformer-large-vie").served_name() == "khanhld/chunkformer-large-vie"
    assert AsrSettings(model="x", served_model_name="vi-asr").served_name() == "vi-asr"
