"""Loading checkpoints in the official layout: file names, missing pieces, configurations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from omoai_asr.engine import ChunkFormerEngine, DecodeOptions, ModelDimensions
from omoai_asr.engine.checkpoint import load_checkpoint
from omoai_asr.engine.model import ChunkFormer
from omoai_asr.engine.testing import LARGE_VIE, TINY, reference_config, with_dims, write_random_checkpoint
from omoai_core.errors import ModelLoadError
from omoai_gpu.memory import MemoryPolicy

from .conftest import FIXTURES, audio

CLIP = audio("small", "short")  # 7 s


def _edit_config(directory: Path, **changes: object) -> None:
    path = directory / "config.yaml"
    config = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if key.startswith("encoder_conf."):
            config["encoder_conf"][key.split(".", 1)[1]] = value
        else:
            config[key] = value
    path.write_text(yaml.safe_dump(config, allow_unicode=True))


@pytest.mark.parametrize("name", ["pytorch_model.bin", "pytorch_model.pt", "pytorch_model.ckpt"])
def test_every_official_weights_name_loads(tmp_path: Path, name: str, policy: MemoryPolicy) -> None:
    write_random_checkpoint(tmp_path, TINY, weights_name=name)
    engine = ChunkFormerEngine.load(tmp_path, policy)
    assert engine.name == tmp_path.name
    assert engine.sample_rate == 16000
    assert engine.transcribe(CLIP).duration == pytest.approx(7.0)


def test_bin_wins_over_other_weight_names(tmp_path: Path) -> None:
    write_random_checkpoint(tmp_path, TINY, weights_name="pytorch_model.pt", seed=1)
    write_random_checkpoint(tmp_path, TINY, weights_name="pytorch_model.bin", seed=2)
    bin_state = torch.load(tmp_path / "pytorch_model.bin", weights_only=True)
    loaded = load_checkpoint(tmp_path).model.state_dict()
    assert torch.equal(loaded["ctc.ctc_lo.weight"], bin_state["ctc.ctc_lo.weight"])


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("config.yaml", "config.yaml"),
        ("pytorch_model.bin", "pytorch_model.bin, pytorch_model.pt"),
        ("vocab.txt", "vocab.txt"),
    ],
)
def test_missing_file_is_a_model_load_error(tmp_path: Path, missing: str, message: str) -> None:
    write_random_checkpoint(tmp_path, TINY)
    (tmp_path / missing).unlink()
    with pytest.raises(ModelLoadError, match=message):
        load_checkpoint(tmp_path)


def test_missing_directory_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere" / "model")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"encoder": "conformer"}, "only the chunkformer encoder"),
        ({"model": "classification"}, "only CTC \\(asr_model\\) and transducer"),
        ({"model": "transducer"}, "predictor_conf is missing"),
        ({"encoder_conf.input_layer": "conv2d"}, "input_layer"),
        ({"encoder_conf.activation_type": "mish"}, "activation_type"),
        ({"encoder_conf.cnn_module_norm": "group_norm"}, "cnn_module_norm"),
        ({"encoder_conf.pos_enc_layer_type": "rel_pos"}, "pos_enc_layer_type"),
        ({"encoder_conf.dynamic_conv": False}, "dynamic_conv"),
        ({"encoder_conf.attention_heads": 5}, "divisible"),
        ({"output_dim": 99}, "output_dim"),
        ({"fbank_conf": {"num_mel_bins": 80, "frame_shift": 20, "frame_length": 25}}, "not supported"),
    ],
)
def test_unsupported_config_is_a_model_load_error(tmp_path: Path, change: dict[str, object], message: str) -> None:
    write_random_checkpoint(tmp_path, TINY)
    _edit_config(tmp_path, **change)
    with pytest.raises(ModelLoadError, match=message):
        load_checkpoint(tmp_path)


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path: Path) -> None:
    write_random_checkpoint(tmp_path, TINY)
    _edit_config(tmp_path, **{"encoder_conf.linear_units": 96})
    with pytest.raises(ModelLoadError, match="do not belong together"):
        load_checkpoint(tmp_path)


def test_pickled_objects_are_not_loaded(tmp_path: Path) -> None:
    write_random_checkpoint(tmp_path, TINY)
    torch.save({"model": ChunkFormer(TINY)}, tmp_path / "pytorch_model.bin")  # a module, not tensors
    with pytest.raises(ModelLoadError, match="state dict"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    "dims",
    [
        with_dims(cnn_norm="batch_norm"),
        with_dims(cnn_norm="batch_norm", cnn_kernel=7, n_head=2, n_layer=3),
        with_dims(final_norm_type="rms_norm", activation="relu"),
        with_dims(normalize_before=False, macaron=False),
        with_dims(use_cnn=False),
        with_dims(activation="gelu", cnn_kernel=31, n_state=48, n_head=6, n_ffn=96),
    ],
    ids=["batch_norm", "batch_norm_k7", "rms_relu", "post_norm_no_macaron", "no_cnn", "gelu_k31"],
)
def test_encoder_variants_load_in_official_layout_and_decode(
    tmp_path: Path, dims: ModelDimensions, policy: MemoryPolicy
) -> None:
    write_random_checkpoint(tmp_path, dims)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["encoder_conf"]["cnn_module_norm"] == dims.cnn_norm
    engine = ChunkFormerEngine.load(tmp_path, policy)
    assert engine.dims == dims
    options = DecodeOptions(chunk_size=16, left_context=16, right_context=8, total_batch_duration=0.5)
    result = engine.decode_frames(CLIP, options, keep_encoder_out=True)
    assert result.frame_tokens.shape == (86,)
    assert result.encoder_out is not None and torch.isfinite(result.encoder_out).all()
    # Long-form windows and a single window agree on the path for these short inputs.
    single = engine.decode_frames(CLIP, DecodeOptions(16, 16, 8, 1800.0))
    assert len(result.windows) > 1 and single.frame_tokens.shape == result.frame_tokens.shape


def test_batch_norm_uses_running_statistics(tmp_path: Path, policy: MemoryPolicy) -> None:
    dims = with_dims(cnn_norm="batch_norm")
    write_random_checkpoint(tmp_path / "a", dims)
    write_random_checkpoint(tmp_path / "b", dims)
    state = torch.load(tmp_path / "b" / "pytorch_model.bin", weights_only=True)
    state["encoder.encoders.0.conv_module.norm.running_mean"] += 3.0
    torch.save(state, tmp_path / "b" / "pytorch_model.bin")
    a = ChunkFormerEngine.load(tmp_path / "a", policy).decode_frames(CLIP, keep_encoder_out=True)
    b = ChunkFormerEngine.load(tmp_path / "b", policy).decode_frames(CLIP, keep_encoder_out=True)
    assert a.encoder_out is not None and b.encoder_out is not None
    assert not torch.allclose(a.encoder_out, b.encoder_out)


def test_cmvn_in_weights_takes_precedence_over_the_file(tmp_path: Path) -> None:
    write_random_checkpoint(tmp_path, TINY)
    stats = {"mean_stat": [0.0] * 80, "var_stat": [1.0] * 80, "frame_num": 1}
    (tmp_path / "global_cmvn").write_text(json.dumps(stats))
    state = torch.load(tmp_path / "pytorch_model.bin", weights_only=True)
    cmvn = load_checkpoint(tmp_path).cmvn
    assert cmvn is not None
    assert torch.equal(cmvn.mean, state["encoder.global_cmvn.mean"])
    assert torch.equal(cmvn.istd, state["encoder.global_cmvn.istd"])


def test_cmvn_file_is_used_when_the_weights_have_none(tmp_path: Path) -> None:
    write_random_checkpoint(tmp_path, TINY, cmvn_in_weights=False)
    stats = json.loads((tmp_path / "global_cmvn").read_text())
    cmvn = load_checkpoint(tmp_path).cmvn
    assert cmvn is not None
    expected_mean = np.array(stats["mean_stat"]) / stats["frame_num"]
    assert np.allclose(cmvn.mean.numpy(), expected_mean, rtol=1e-6)


def test_fixture_model_cmvn_matches_its_buffers() -> None:
    loaded = load_checkpoint(FIXTURES / "small" / "model")
    state = torch.load(FIXTURES / "small" / "model" / "pytorch_model.bin", weights_only=True)
    assert loaded.cmvn is not None and torch.equal(loaded.cmvn.istd, state["encoder.global_cmvn.istd"])


def test_large_vie_dimensions_give_the_published_parameter_count() -> None:
    with torch.device("meta"):
        model = ChunkFormer(LARGE_VIE)
    assert sum(p.numel() for p in model.parameters()) == 113_852_240


def test_reference_config_round_trips_to_the_same_dimensions(tmp_path: Path) -> None:
    dims = with_dims(cnn_norm="batch_norm", n_layer=3)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(reference_config(dims)))
    from omoai_asr.engine.checkpoint import dims_from_config, read_config

    assert dims_from_config(read_config(tmp_path)) == dims


def test_hub_id_offline_is_a_model_load_error(tmp_path: Path) -> None:
    # huggingface_hub reads HF_HUB_OFFLINE at import: check in a fresh interpreter.
    code = (
        "from omoai_asr.engine.checkpoint import load_checkpoint\n"
        "from omoai_core.errors import ModelLoadError\n"
        "try:\n"
        "    load_checkpoint('khanhld/chunkformer-large-vie')\n"
        "except ModelLoadError as e:\n"
        "    print('MODEL_LOAD_ERROR', e)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert "MODEL_LOAD_ERROR" in out.stdout, out.stderr
    assert "HF_HUB_OFFLINE" in out.stdout and "local checkpoint directory" in out.stdout
