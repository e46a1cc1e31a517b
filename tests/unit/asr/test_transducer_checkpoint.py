"""Loading ``model: transducer`` checkpoints: every supported option decodes, every option the
reference cannot decode with is refused at load by name, the CTC/decoder heads are ignored."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from omoai_asr.engine import ChunkFormerEngine, DecodeOptions
from omoai_asr.engine.checkpoint import load_checkpoint
from omoai_asr.engine.model import TransducerDimensions
from omoai_asr.engine.testing import TINY_RNNT, synthetic_speech, write_random_checkpoint
from omoai_core.errors import ModelLoadError
from omoai_gpu.memory import MemoryPolicy

from .conftest import FIXTURES

CLIP = synthetic_speech(1.5, seed=3)  # 17 encoder frames: cheap even for a random joint


def _edit(directory: Path, section: str, **changes: object) -> None:
    path = directory / "config.yaml"
    config = yaml.safe_load(path.read_text())
    target = config if section == "" else config.setdefault(section, {})
    for key, value in changes.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    path.write_text(yaml.safe_dump(config, allow_unicode=True))


@pytest.fixture(scope="module")
def tiny_rnnt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_checkpoint(tmp_path_factory.mktemp("rnnt") / "tiny-rnnt", TINY_RNNT)


def test_fixture_checkpoint_loads_predictor_and_joint_and_ignores_ctc_and_decoder() -> None:
    loaded = load_checkpoint(FIXTURES / "rnnt_small" / "model")
    assert loaded.dims.transducer == TransducerDimensions(
        embed_size=64, hidden_size=96, pred_output_size=96, num_layers=1, join_dim=128
    )
    keys = set(loaded.model.state_dict())
    assert loaded.model.ctc is None
    assert not any(k.startswith(("ctc.", "decoder.")) for k in keys)
    state = torch.load(FIXTURES / "rnnt_small" / "model" / "pytorch_model.bin", weights_only=True)
    assert torch.equal(loaded.model.state_dict()["joint.ffn_out.weight"], state["joint.ffn_out.weight"])
    assert torch.equal(loaded.model.state_dict()["predictor.rnn.weight_hh_l0"], state["predictor.rnn.weight_hh_l0"])


def test_generated_transducer_checkpoint_has_the_official_layout_and_transcribes(
    tiny_rnnt: Path, policy: MemoryPolicy
) -> None:
    config = yaml.safe_load((tiny_rnnt / "config.yaml").read_text())
    assert config["model"] == "transducer" and config["predictor"] == "rnn" and config["joint"] == "transducer_joint"
    state = torch.load(tiny_rnnt / "pytorch_model.bin", weights_only=True)
    assert "ctc.ctc_lo.weight" in state and "predictor.rnn.weight_ih_l0" in state and "joint.enc_ffn.weight" in state
    engine = ChunkFormerEngine.load(tiny_rnnt, policy)
    assert engine.dims.is_transducer
    transcript = engine.transcribe(synthetic_speech(12.0, seed=1))
    assert transcript.duration == pytest.approx(12.0)
    assert transcript.text == " ".join(s.text for s in transcript.segments)
    assert "<unk>" not in transcript.text and "<sos/eos>" not in transcript.text


@pytest.mark.parametrize(
    "transducer",
    [
        TransducerDimensions(embed_size=16, hidden_size=24, pred_output_size=32, num_layers=2, join_dim=40),
        TransducerDimensions(embed_size=16, hidden_size=24, pred_output_size=32, rnn_bias=False, join_dim=40),
        TransducerDimensions(embed_size=16, hidden_size=24, pred_output_size=32, join_dim=40, postjoin_linear=True),
        TransducerDimensions(
            embed_size=16, hidden_size=24, pred_output_size=64, join_dim=64, prejoin_linear=False, activation="relu"
        ),
        TransducerDimensions(
            embed_size=16,
            hidden_size=24,
            pred_output_size=64,
            join_dim=64,
            prejoin_linear=False,
            postjoin_linear=True,
        ),
        TransducerDimensions(embed_size=16, hidden_size=24, pred_output_size=32, join_dim=40, hat_joint=True),
    ],
    ids=["two_layers", "no_bias", "postjoin", "no_prejoin_relu", "postjoin_only", "hat_joint"],
)
def test_every_predictor_and_joint_option_loads_and_decodes(
    tmp_path: Path, transducer: TransducerDimensions, policy: MemoryPolicy
) -> None:
    dims = replace(TINY_RNNT, transducer=transducer)
    write_random_checkpoint(tmp_path, dims, construct_joint=False)
    engine = ChunkFormerEngine.load(tmp_path, policy)
    assert engine.dims == dims
    result = engine.decode_frames(CLIP, DecodeOptions(16, 16, 8, 0.5))
    assert result.emissions is not None and result.n_frames == 17
    # The masked-batch path gives the same emissions as long form.
    (single,) = engine.decode_frames_batch([CLIP], DecodeOptions(16, 16, 8, 1800.0))
    assert single.emissions is not None
    assert np.array_equal(single.emissions.tokens, result.emissions.tokens)
    assert np.array_equal(single.emissions.frames, result.emissions.frames)


@pytest.mark.parametrize(
    ("section", "change", "message"),
    [
        ("", {"predictor": "embedding"}, "predictor 'embedding'"),
        ("", {"predictor": "conv"}, "predictor 'conv'"),
        ("predictor_conf", {"rnn_type": "gru"}, "predictor_conf.rnn_type 'gru'"),
        ("predictor_conf", {"rnn_type": "rnn"}, "predictor_conf.rnn_type 'rnn'"),
        ("predictor_conf", {"hidden_size": None}, "predictor_conf.hidden_size"),
        ("predictor_conf", {"layer_norm": True}, "predictor_conf has options the reference does not know: layer_norm"),
        ("", {"joint": "concat_joint"}, "joint 'concat_joint'"),
        ("joint_conf", {"joint_mode": "concat"}, "joint_conf.joint_mode 'concat'"),
        ("joint_conf", {"activation": "mish"}, "joint_conf.activation 'mish'"),
        ("joint_conf", {"enc_output_size": 32}, "joint_conf.enc_output_size 32"),
        ("joint_conf", {"pred_output_size": 32}, "joint_conf.pred_output_size 32"),
        ("joint_conf", {"prejoin_linear": False}, "prejoin_linear false"),
        ("model_conf", {"ctc_weight": 0.2}, "must be exactly 1.0"),
        ("model_conf", {"transducer_weight": 0.7}, "must be exactly 1.0"),
        ("model_conf", {"delay_penalty": 0.1}, "delay_penalty"),
        ("model_conf", {"k2_mode": 1}, "model_conf has options"),
        ("", {"predictor_conf": None}, "predictor_conf is missing"),
        ("", {"joint_conf": None}, "joint_conf is missing"),
    ],
)
def test_options_the_reference_cannot_decode_are_refused_by_name(
    tiny_rnnt: Path, tmp_path: Path, section: str, change: dict[str, object], message: str
) -> None:
    directory = tmp_path / "ckpt"
    directory.mkdir()
    for f in tiny_rnnt.iterdir():
        (directory / f.name).symlink_to(f)
    (directory / "config.yaml").unlink()
    (directory / "config.yaml").write_text((tiny_rnnt / "config.yaml").read_text())
    _edit(directory, section, **change)
    with pytest.raises(ModelLoadError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_checkpoint(directory)


def test_transducer_weights_missing_from_the_file_are_a_model_load_error(tiny_rnnt: Path, tmp_path: Path) -> None:
    state = torch.load(tiny_rnnt / "pytorch_model.bin", weights_only=True)
    del state["joint.ffn_out.weight"]
    for f in tiny_rnnt.iterdir():
        if f.name != "pytorch_model.bin":
            (tmp_path / f.name).symlink_to(f)
    torch.save(state, tmp_path / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="joint.ffn_out.weight"):
        load_checkpoint(tmp_path)


def test_the_benchmark_construction_searches_like_a_trained_model(tmp_path: Path, policy: MemoryPolicy) -> None:
    """``write_benchmark_transducer``'s construction at a small size (the tiny encoder; a
    predictor and joint wide enough for its four-token memory): on its calibration speech and
    on three times as much other speech, most frames are blank and no frame emits more than 4
    tokens (the benchmark decodes 600 s with a joint constructed on 60 s)."""
    from omoai_asr.engine.testing import SearchProfile, write_benchmark_transducer

    small = replace(
        TINY_RNNT,
        transducer=TransducerDimensions(
            embed_size=32, hidden_size=256, pred_output_size=256, num_layers=1, join_dim=256
        ),
    )
    speech = synthetic_speech(12.0, seed=3)
    model = write_benchmark_transducer(tmp_path / "bench-rnnt", speech, dims=small)
    engine = ChunkFormerEngine.load(model, policy)
    for audio in (speech, synthetic_speech(36.0, seed=4)):
        result = engine.decode_frames(audio)
        assert result.emissions is not None and result.emissions.tokens.size > 10
        profile = SearchProfile.of(result.emissions.frames, result.n_frames)
        assert profile.trained_like, profile
    assert SearchProfile.of(np.array([0, 0, 0, 0, 0, 2]), 4) == SearchProfile(4, 0.5, 5)
    assert not SearchProfile(4, 0.5, 5).trained_like
