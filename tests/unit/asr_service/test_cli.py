"""``omoai-asr``: argument parsing, outputs of ``transcribe`` with a tiny model, and its errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omoai_asr.cli import build_parser, main
from omoai_asr.engine import ChunkFormerEngine, DecodeOptions
from omoai_audio import decode_audio
from omoai_formats import render
from omoai_gpu.memory import MemoryPolicy
from prometheus_client import CollectorRegistry

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def engine(tiny_model: Path) -> ChunkFormerEngine:
    policy = MemoryPolicy(torch.device("cpu"), torch.float32, registry=CollectorRegistry())
    return ChunkFormerEngine.load(tiny_model, policy)


def test_parser_defaults_match_the_documented_ones() -> None:
    args = build_parser().parse_args(["transcribe", "m", "a.wav", "b.mp3"])
    assert (args.chunk_size, args.left_context, args.right_context) == (64, 128, 128)
    assert args.total_batch_duration == 1800.0 and args.format == "json" and args.output_dir is None
    assert args.include_frames is False and args.word_timestamps is True and args.inputs == ["m", "a.wav", "b.mp3"]
    args = build_parser().parse_args(["serve", "--model", "m", "--host", "0.0.0.0", "--port", "9000"])
    assert (args.model, args.host, args.port) == ("m", "0.0.0.0", 9000)


def test_help_lists_both_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "transcribe" in out and "serve" in out


def test_json_output_is_the_engine_transcript(
    tiny_model: Path, speech: list[Path], engine: ChunkFormerEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["transcribe", str(tiny_model), str(speech[0])]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    expected = engine.transcribe(decode_audio(speech[0]).samples, DecodeOptions())
    assert doc == expected.model_dump(exclude_none=True)
    assert set(doc) == {"text", "segments", "duration", "model"} and doc["model"] == "tiny-asr"
    assert all("words" in s for s in doc["segments"])


def test_include_frames_and_decode_flags_reach_the_engine(
    tiny_model: Path, speech: list[Path], engine: ChunkFormerEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "transcribe",
        str(tiny_model),
        str(speech[0]),
        "--include-frames",
        "--chunk-size",
        "32",
        "--left-context",
        "64",
        "--right-context",
        "32",
        "--no-word-timestamps",
    ]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    options = DecodeOptions(
        chunk_size=32, left_context=64, right_context=32, include_frames=True, word_timestamps=False
    )
    expected = engine.transcribe(decode_audio(speech[0]).samples, options)
    assert doc["frames"] == expected.frames and doc["text"] == expected.text
    assert all(not s.get("words") for s in doc["segments"])


def test_several_inputs_give_a_json_array_in_input_order(
    tiny_model: Path, speech: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["transcribe", str(tiny_model), str(speech[1]), str(speech[0])]) == 0
    docs = json.loads(capsys.readouterr().out)
    assert [round(d["duration"]) for d in docs] == [4, 3]


@pytest.mark.parametrize("fmt", ["txt", "srt", "vtt", "md"])
def test_text_formats_are_rendered_like_the_writers_do(
    fmt: str, tiny_model: Path, speech: list[Path], engine: ChunkFormerEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["transcribe", str(tiny_model), str(speech[0]), "--format", fmt]) == 0
    expected = engine.transcribe(decode_audio(speech[0]).samples, DecodeOptions())
    assert capsys.readouterr().out == render(expected, fmt)


def test_output_dir_gets_one_file_per_input_and_stdout_stays_empty(
    tiny_model: Path, speech: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    twin = tmp_path / "other"
    twin.mkdir()
    copy = twin / speech[0].name
    copy.write_bytes(speech[0].read_bytes())
    argv = ["transcribe", str(tiny_model), str(speech[0]), str(copy), "-f", "srt", "-o", str(tmp_path / "out")]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip0-2.srt", "clip0.srt"]
    assert "clip0.srt" in captured.err


def test_a_bad_input_is_reported_and_the_others_are_still_written(
    tiny_model: Path, speech: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tmp_path / "notes.wav"
    fake.write_text("this is not audio\n")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    assert main(["transcribe", str(tiny_model), str(fake), str(speech[0]), str(empty), "-f", "txt"]) == 1
    captured = capsys.readouterr()
    assert f"==> {speech[0]} <==" in captured.out
    assert "notes.wav" in captured.err and "empty.wav" in captured.err and "Traceback" not in captured.err


def test_options_the_model_cannot_run_fail_before_loading(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["transcribe", "/no/such/model", "x.wav", "--chunk-size", "0"]) == 2
    assert "chunk_size" in capsys.readouterr().err


def test_a_missing_model_is_a_clear_error_with_status_2(
    speech: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["transcribe", str(tmp_path), str(speech[0])]) == 2
    err = capsys.readouterr().err
    assert "omoai-asr: error:" in err and "config.yaml" in err


def test_serve_with_an_empty_model_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("OMOAI_MODEL", "")
    assert main(["serve"]) == 2
    assert "--model" in capsys.readouterr().err


def test_the_service_cli_and_chart_default_to_the_transducer_checkpoint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml
    from omoai_asr.checkpoints import DEFAULT_MODEL
    from omoai_asr.settings import AsrSettings

    assert DEFAULT_MODEL == "khanhld/chunkformer-rnnt-large-vie"
    monkeypatch.delenv("OMOAI_MODEL", raising=False)
    assert AsrSettings().model == DEFAULT_MODEL
    values = yaml.safe_load((Path(__file__).resolve().parents[3] / "charts" / "omoai" / "values.yaml").read_text())
    assert values["asr"]["config"]["model"] == DEFAULT_MODEL
    for command in ("transcribe", "serve"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert f"default {DEFAULT_MODEL}" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(
    ("inputs", "model", "audio"),
    [
        (["a.wav"], None, ["a.wav"]),
        (["-"], None, ["-"]),
        (["khanhld/chunkformer-rnnt-large-vie", "a.wav", "-"], "khanhld/chunkformer-rnnt-large-vie", ["a.wav", "-"]),
        (["-", "b.wav"], None, ["-", "b.wav"]),
    ],
)
def test_the_transcribe_model_argument_is_optional(inputs: list[str], model: str | None, audio: list[str]) -> None:
    from omoai_asr.cli import split_model

    assert split_model(inputs) == (model, audio)


def test_an_existing_file_first_is_audio_and_a_directory_first_is_the_model(
    tiny_model: Path, speech: list[Path]
) -> None:
    from omoai_asr.cli import split_model

    assert split_model([str(speech[0]), str(speech[1])]) == (None, [str(speech[0]), str(speech[1])])
    assert split_model([str(tiny_model), str(speech[0])]) == (str(tiny_model), [str(speech[0])])


def test_transcribe_without_a_model_uses_the_configured_default(
    tiny_model: Path, speech: list[Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OMOAI_MODEL", str(tiny_model))  # the default hub id needs the network
    assert main(["transcribe", str(speech[0]), "-f", "txt"]) == 0
    monkeypatch.delenv("OMOAI_MODEL")
    with_model = capsys.readouterr().out
    assert main(["transcribe", str(tiny_model), str(speech[0]), "-f", "txt"]) == 0
    assert capsys.readouterr().out == with_model


def test_the_console_script_keeps_stdout_clean_and_prints_no_traceback(
    tiny_model: Path, speech: list[Path], tmp_path: Path
) -> None:
    exe = Path(sys.executable).with_name("omoai-asr")
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x10" + b"\xff\xfb" * 10)
    proc = subprocess.run(
        [str(exe), "transcribe", str(tiny_model), str(speech[0]), str(bad), "--format", "txt"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "OMOAI_LOG_LEVEL": "DEBUG"},
    )
    assert proc.returncode == 1
    assert proc.stdout.startswith(f"==> {speech[0]} <==\n")
    assert "bad.mp3" in proc.stderr and "Traceback" not in proc.stderr
    assert "\x1b[" not in proc.stderr  # no progress bar when stderr is not a terminal


def test_transcribe_help_names_the_default_checkpoint_and_every_license(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["transcribe", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "khanhld/chunkformer-rnnt-large-vie (transducer, CC-BY-4.0)" in out
    assert "khanhld/chunkformer-large-vie (ctc, CC-BY-NC-4.0, non-commercial)" in out
    assert "khanhld/chunkformer-ctc-large-vie (ctc, CC-BY-NC-4.0, non-commercial)" in out


def test_a_transducer_checkpoint_transcribes_through_the_cli(
    tmp_path: Path, speech: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from omoai_asr.engine.testing import TINY_RNNT, write_random_checkpoint

    model = write_random_checkpoint(tmp_path / "tiny-rnnt", TINY_RNNT)
    assert main(["transcribe", str(model), str(speech[1]), "--include-frames"]) == 0
    doc = json.loads(capsys.readouterr().out)
    policy = MemoryPolicy(torch.device("cpu"), torch.float32, registry=CollectorRegistry())
    expected = ChunkFormerEngine.load(model, policy).transcribe(
        decode_audio(speech[1]).samples, DecodeOptions(include_frames=True)
    )
    assert doc == expected.model_dump(exclude_none=True)
    assert doc["model"] == "tiny-rnnt" and doc["duration"] == pytest.approx(4.0)
    assert doc["text"] == " ".join(s["text"] for s in doc["segments"])
    assert len(doc["frames"]) == 48  # (400 fbank frames - 7) // 8
