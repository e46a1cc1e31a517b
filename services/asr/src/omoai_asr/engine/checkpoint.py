"""Loading official ChunkFormer checkpoints: a local directory or a Hugging Face hub id.

Layout: ``config.yaml`` (reference key names), the first of ``pytorch_model.bin`` /
``pytorch_model.pt`` / ``pytorch_model.ckpt`` (a plain state dict), an optional ``global_cmvn``
(JSON stats, or Kaldi text when ``is_json_cmvn: false``) and ``vocab.txt``.

Every failure is a :class:`ModelLoadError` that says what to do. The configuration is checked
against what the reference can actually decode with: a ChunkFormer encoder with a CTC head
(``model: asr_model``), or with an LSTM predictor and a ``transducer_joint`` (``model:
transducer``); options it only uses for training are ignored, options it cannot decode with
are refused by name. A transducer checkpoint's CTC head and attention decoder are not loaded.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from omoai_core.errors import ModelLoadError

from omoai_asr.engine.decoding import Vocabulary
from omoai_asr.engine.features import Cmvn, load_cmvn
from omoai_asr.engine.model import ACTIVATIONS, ChunkFormer, ModelDimensions, TransducerDimensions

log = logging.getLogger(__name__)

CHECKPOINT_NAMES = ("pytorch_model.bin", "pytorch_model.pt", "pytorch_model.ckpt")
CONFIG_NAME = "config.yaml"
CMVN_NAME = "global_cmvn"
VOCAB_NAME = "vocab.txt"

# Values the reference asserts on; anything else cannot be a ChunkFormer it decodes.
_FIXED_ENCODER_OPTIONS = {
    "input_layer": "dw_striding",
    "pos_enc_layer_type": "chunk_rel_pos",
    "selfattention_layer_type": "chunk_rel_seflattn",
}
# Encoder options with inference effect; everything else in encoder_conf is training-only.
_KNOWN_ENCODER_OPTIONS = {
    *_FIXED_ENCODER_OPTIONS,
    "output_size",
    "attention_heads",
    "linear_units",
    "num_blocks",
    "cnn_module_kernel",
    "cnn_module_norm",
    "activation_type",
    "normalize_before",
    "macaron_style",
    "use_cnn_module",
    "layer_norm_type",
    "norm_eps",
    "causal",
    "dynamic_conv",
    "final_norm",
    # training-only or without effect on the inference path:
    "dropout_rate",
    "positional_dropout_rate",
    "attention_dropout_rate",
    "static_chunk_size",
    "use_dynamic_chunk",
    "use_dynamic_left_chunk",
    "gradient_checkpointing",
    "use_sdpa",
    "dynamic_chunk_sizes",
    "dynamic_left_context_sizes",
    "dynamic_right_context_sizes",
    "streaming",
}


@dataclass(frozen=True)
class LoadedCheckpoint:
    """Everything the engine needs from a checkpoint directory."""

    directory: Path
    dims: ModelDimensions
    model: ChunkFormer  # on CPU, eval mode, float32
    cmvn: Cmvn | None
    vocab: Vocabulary


def resolve_model_dir(model: str | Path) -> Path:
    """A local directory as is; otherwise a hub id fetched with ``snapshot_download``."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    name = str(model)
    if path.exists():
        raise ModelLoadError(f"model path {name!r} is a file; pass the checkpoint directory")
    looks_local = name.startswith((".", "/", "~")) or name.count("/") != 1
    if looks_local:
        raise ModelLoadError(
            f"model directory {name!r} does not exist; pass an existing checkpoint directory "
            "or a Hugging Face hub id such as 'khanhld/chunkformer-large-vie'"
        )
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ModelLoadError("huggingface_hub is not installed; pass a local checkpoint directory") from e
    try:
        return Path(snapshot_download(repo_id=name))
    except RepositoryNotFoundError as e:
        raise ModelLoadError(
            f"hub model {name!r} was not found or is private: check the id, or set HF_TOKEN for a "
            "private or gated repository, or pass a local checkpoint directory"
        ) from e
    except LocalEntryNotFoundError as e:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
        hint = "HF_HUB_OFFLINE is set" if offline else "the hub could not be reached"
        raise ModelLoadError(
            f"hub model {name!r} is not in the local cache and {hint}: download it once with "
            "network access (check proxy settings and HF_TOKEN), point HF_HOME at a cache that "
            "holds it, or pass a local checkpoint directory"
        ) from e
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise ModelLoadError(
            f"could not download hub model {name!r} ({e}); check the id and network access, set "
            "HF_TOKEN if the repository is private, or pass a local checkpoint directory"
        ) from e


def read_config(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise ModelLoadError(f"{directory} has no {CONFIG_NAME}; is this a ChunkFormer checkpoint directory?")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ModelLoadError(f"{path} is not readable YAML: {e}") from e
    if not isinstance(config, dict):
        raise ModelLoadError(f"{path} must hold a mapping of configuration keys")
    return config


def dims_from_config(config: dict[str, Any], source: str = CONFIG_NAME) -> ModelDimensions:
    """Check a reference ``config.yaml`` mapping and turn it into model dimensions."""

    def bad(msg: str) -> ModelLoadError:
        return ModelLoadError(f"{source}: {msg}")

    model_type = config.get("model", "asr_model")
    if model_type not in ("asr_model", "transducer"):
        raise bad(f"model type {model_type!r} is not supported; only CTC (asr_model) and transducer models are")
    encoder = config.get("encoder", "chunkformer")
    if encoder != "chunkformer":
        raise bad(f"encoder {encoder!r} is not supported; only the chunkformer encoder is")
    ctc = config.get("ctc", "ctc")
    if ctc != "ctc":
        raise bad(f"ctc type {ctc!r} is not supported; expected 'ctc'")
    blank = (config.get("ctc_conf") or {}).get("ctc_blank_id", 0)
    if blank != 0:
        raise bad(f"ctc_blank_id {blank} is not supported; the blank token must be id 0")
    conf = config.get("encoder_conf")
    if not isinstance(conf, dict):
        raise bad("encoder_conf is missing")
    for key, expected in _FIXED_ENCODER_OPTIONS.items():
        value = conf.get(key, expected)
        if value != expected:
            raise bad(f"encoder_conf.{key} {value!r} is not supported; ChunkFormer requires {expected!r}")
    unknown = sorted(set(conf) - _KNOWN_ENCODER_OPTIONS)
    if unknown:
        log.warning("%s: ignoring encoder_conf keys without inference effect: %s", source, ", ".join(unknown))

    def integer(key: str, default: int | None, minimum: int = 1, where: dict[str, Any] = conf) -> int:
        value = where.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise bad(f"{key} must be an integer >= {minimum}, got {value!r}")
        return value

    activation = conf.get("activation_type", "swish")
    if activation not in ACTIVATIONS:
        raise bad(f"activation_type {activation!r} is not supported; expected one of {sorted(ACTIVATIONS)}")
    cnn_norm = conf.get("cnn_module_norm", "batch_norm")
    if cnn_norm not in ("batch_norm", "layer_norm"):
        raise bad(f"cnn_module_norm {cnn_norm!r} is not supported; expected batch_norm or layer_norm")
    final_norm_type = conf.get("layer_norm_type", "layer_norm")
    if final_norm_type not in ("layer_norm", "rms_norm"):
        raise bad(f"layer_norm_type {final_norm_type!r} is not supported; expected layer_norm or rms_norm")
    n_state = integer("output_size", 256)
    n_head = integer("attention_heads", 4)
    if n_state % n_head:
        raise bad(f"output_size {n_state} is not divisible by attention_heads {n_head}")
    kernel = integer("cnn_module_kernel", 15)
    use_cnn = bool(conf.get("use_cnn_module", True))
    if use_cnn:
        if kernel % 2 == 0:
            raise bad(f"cnn_module_kernel must be odd, got {kernel}")
        if not (conf.get("dynamic_conv", False) or conf.get("causal", False)):
            raise bad(
                "a convolution module with dynamic_conv: false (and causal: false) is padded in a way "
                "the reference's chunked decoding cannot run; such checkpoints are not supported"
            )
    n_mels = integer("input_dim", None, where=config)
    if n_mels < 15:
        raise bad(f"input_dim must be at least 15 mel bins, got {n_mels}")
    fbank_conf = config.get("fbank_conf") or {}
    if fbank_conf.get("num_mel_bins", 80) != n_mels:
        raise bad(f"fbank_conf.num_mel_bins {fbank_conf.get('num_mel_bins', 80)!r} differs from input_dim {n_mels}")
    framing = (fbank_conf.get("frame_length", 25), fbank_conf.get("frame_shift", 10))
    rate = (config.get("resample_conf") or {}).get("resample_rate", 16000)
    if framing != (25, 10) or rate != 16000:
        raise bad(
            f"features of {framing[0]} ms / {framing[1]} ms at {rate} Hz are not supported; "
            "only 25 ms / 10 ms frames at 16000 Hz are"
        )
    transducer = transducer_dims_from_config(config, n_state, source) if model_type == "transducer" else None
    return ModelDimensions(
        transducer=transducer,
        n_mels=n_mels,
        n_state=n_state,
        n_head=n_head,
        n_ffn=integer("linear_units", 2048),
        n_layer=integer("num_blocks", 6),
        cnn_kernel=kernel,
        n_vocab=integer("output_dim", None, minimum=2, where=config),
        cnn_norm=cnn_norm,
        activation=activation,
        normalize_before=bool(conf.get("normalize_before", True)),
        macaron=bool(conf.get("macaron_style", True)),
        use_cnn=use_cnn,
        final_norm_type=final_norm_type,
        norm_eps=float(conf.get("norm_eps", 1e-5)),
    )


# predictor_conf / joint_conf keys the reference's constructors accept (any other key makes
# them raise TypeError); dropouts have no effect at inference.
_PREDICTOR_OPTIONS = {
    "embed_size",
    "output_size",
    "embed_dropout",
    "hidden_size",
    "num_layers",
    "bias",
    "rnn_type",
    "dropout",
}
_JOINT_OPTIONS = {
    "enc_output_size",
    "pred_output_size",
    "join_dim",
    "prejoin_linear",
    "postjoin_linear",
    "joint_mode",
    "activation",
    "hat_joint",
    "dropout_rate",
    "hat_activation",
}
# model_conf keys of the reference's Transducer (training weights and loss options).
_TRANSDUCER_MODEL_OPTIONS = {
    "ctc_weight",
    "ignore_id",
    "reverse_weight",
    "lsm_weight",
    "length_normalized_loss",
    "transducer_weight",
    "attention_weight",
    "enable_k2",
    "delay_penalty",
    "warmup_steps",
    "lm_only_scale",
    "am_only_scale",
    "special_tokens",
}


def transducer_dims_from_config(
    config: dict[str, Any], enc_size: int, source: str = CONFIG_NAME
) -> TransducerDimensions:
    """Check the predictor, joint and model options of a ``model: transducer`` config.

    Accepted is what the reference's greedy transducer search runs: ``predictor: rnn`` with
    ``rnn_type: lstm`` (any number of layers, with or without bias) and ``transducer_joint`` in
    ``add`` mode with any activation, pre-/post-join linears and HAT. The reference builds
    ``rnn_type`` gru/rnn and the ``embedding``/``conv`` predictors but its search crashes on
    them; they, unknown options and model weights that do not sum to 1.0 are refused.
    """

    def bad(msg: str) -> ModelLoadError:
        return ModelLoadError(f"{source}: {msg}")

    predictor = config.get("predictor", "rnn")
    if predictor != "rnn":
        raise bad(
            f"predictor {predictor!r} is not supported: the reference's transducer search only runs "
            "the 'rnn' predictor (its embedding and conv predictors crash it)"
        )
    joint = config.get("joint", "transducer_joint")
    if joint != "transducer_joint":
        raise bad(f"joint {joint!r} is not supported; expected 'transducer_joint'")
    pconf = config.get("predictor_conf")
    if not isinstance(pconf, dict):
        raise bad("predictor_conf is missing; a transducer checkpoint needs its predictor sizes")
    jconf = config.get("joint_conf")
    if not isinstance(jconf, dict):
        raise bad("joint_conf is missing; a transducer checkpoint needs its joint network sizes")
    for name, conf, known in (("predictor_conf", pconf, _PREDICTOR_OPTIONS), ("joint_conf", jconf, _JOINT_OPTIONS)):
        unknown = sorted(set(conf) - known)
        if unknown:
            raise bad(f"{name} has options the reference does not know: {', '.join(unknown)}")

    def integer(conf: dict[str, Any], name: str, key: str, default: int | None = None) -> int:
        value = conf.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad(f"{name}.{key} must be an integer >= 1, got {value!r}")
        return value

    def flag(conf: dict[str, Any], name: str, key: str, default: bool) -> bool:
        value = conf.get(key, default)
        if not isinstance(value, bool):
            raise bad(f"{name}.{key} must be true or false, got {value!r}")
        return value

    rnn_type = pconf.get("rnn_type", "lstm")
    if rnn_type != "lstm":
        raise bad(
            f"predictor_conf.rnn_type {rnn_type!r} is not supported: the reference's transducer search "
            "passes an LSTM (h, c) state, so only 'lstm' decodes"
        )
    joint_mode = jconf.get("joint_mode", "add")
    if joint_mode != "add":
        raise bad(f"joint_conf.joint_mode {joint_mode!r} is not supported; only 'add' exists in the reference")
    for key in ("activation", "hat_activation"):
        act = jconf.get(key, "tanh")
        if act not in ACTIVATIONS:
            raise bad(f"joint_conf.{key} {act!r} is not supported; expected one of {sorted(ACTIVATIONS)}")
    dims = TransducerDimensions(
        embed_size=integer(pconf, "predictor_conf", "embed_size"),
        hidden_size=integer(pconf, "predictor_conf", "hidden_size"),
        pred_output_size=integer(pconf, "predictor_conf", "output_size"),
        num_layers=integer(pconf, "predictor_conf", "num_layers"),
        rnn_bias=flag(pconf, "predictor_conf", "bias", True),
        join_dim=integer(jconf, "joint_conf", "join_dim"),
        prejoin_linear=flag(jconf, "joint_conf", "prejoin_linear", True),
        postjoin_linear=flag(jconf, "joint_conf", "postjoin_linear", False),
        activation=jconf.get("activation", "tanh"),
        hat_joint=flag(jconf, "joint_conf", "hat_joint", False),
        hat_activation=jconf.get("hat_activation", "tanh"),
    )
    enc_out = integer(jconf, "joint_conf", "enc_output_size")
    pred_out = integer(jconf, "joint_conf", "pred_output_size")
    if enc_out != enc_size:
        raise bad(f"joint_conf.enc_output_size {enc_out} differs from encoder_conf.output_size {enc_size}")
    if pred_out != dims.pred_output_size:
        raise bad(
            f"joint_conf.pred_output_size {pred_out} differs from predictor_conf.output_size {dims.pred_output_size}"
        )
    if not dims.prejoin_linear and not (enc_out == pred_out == dims.join_dim):
        raise bad(
            "joint_conf.prejoin_linear false needs enc_output_size == pred_output_size == join_dim, "
            f"got {enc_out}, {pred_out}, {dims.join_dim}"
        )
    mconf = config.get("model_conf") or {}
    if not isinstance(mconf, dict):
        raise bad("model_conf must be a mapping")
    unknown = sorted(set(mconf) - _TRANSDUCER_MODEL_OPTIONS)
    if unknown:
        raise bad(f"model_conf has options the reference's transducer does not know: {', '.join(unknown)}")
    weights = (mconf.get("attention_weight", 0.0), mconf.get("ctc_weight", 0), mconf.get("transducer_weight", 1.0))
    if not all(isinstance(w, int | float) and not isinstance(w, bool) for w in weights) or (
        weights[0] + weights[1] + weights[2] != 1.0
    ):
        raise bad(
            "model_conf attention_weight + ctc_weight + transducer_weight must be exactly 1.0 (the reference "
            f"asserts it), got {weights[0]!r} + {weights[1]!r} + {weights[2]!r}"
        )
    if mconf.get("delay_penalty", 0.0) != 0.0 and not mconf.get("enable_k2", False):
        raise bad("model_conf.delay_penalty needs enable_k2: true (the reference asserts it)")
    return dims


def find_checkpoint_file(directory: Path) -> Path:
    for name in CHECKPOINT_NAMES:
        if (directory / name).is_file():
            return directory / name
    raise ModelLoadError(f"{directory} has no weights; expected one of {', '.join(CHECKPOINT_NAMES)}")


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # torch raises many types for corrupt or pickled-object files
        raise ModelLoadError(
            f"{path} could not be loaded as a plain tensor state dict ({type(e).__name__}: {e})"
        ) from e
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # training checkpoints wrap the state dict
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path} does not hold a state dict")
    return state


def build_model(dims: ModelDimensions, state: dict[str, torch.Tensor], source: Path) -> tuple[ChunkFormer, Cmvn | None]:
    """The network with the checkpoint's weights; also its CMVN buffers when it has them.

    The network is built on the meta device and takes the (memory-mapped) checkpoint tensors
    as its parameters (``assign=True``): no random initialisation and no second copy of the
    weights, so loading peaks at one copy (large-vie: 1.1 GB -> 0.7 GB resident on CPU).
    """
    with torch.device("meta"):
        model = ChunkFormer(dims)
    expected = model.state_dict()
    ours = {k: v for k, v in state.items() if k in expected}
    missing = sorted(set(expected) - set(ours))
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ModelLoadError(
            f"{source} lacks {len(missing)} weights this config.yaml needs ({shown}); "
            "the checkpoint and config.yaml do not belong together"
        )
    for key, value in ours.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ModelLoadError(
                f"{source}: {key} has shape {tuple(value.shape)} but config.yaml implies "
                f"{tuple(expected[key].shape)}; the checkpoint and config.yaml do not belong together"
            )
    model.load_state_dict(ours, strict=True, assign=True)
    model.float()  # fp32 on CPU whatever the file holds (a no-op, no copy, for fp32 weights)
    model.eval()
    cmvn = None
    mean, istd = state.get("encoder.global_cmvn.mean"), state.get("encoder.global_cmvn.istd")
    if mean is not None and istd is not None:
        cmvn = Cmvn(mean.detach().float().clone(), istd.detach().float().clone())
    return model, cmvn


def load_checkpoint(model: str | Path) -> LoadedCheckpoint:
    """Read and check a checkpoint directory or hub id; the model comes back on CPU in fp32."""
    directory = resolve_model_dir(model)
    config = read_config(directory)
    dims = dims_from_config(config, str(directory / CONFIG_NAME))
    weights = find_checkpoint_file(directory)
    vocab_path = directory / VOCAB_NAME
    if not vocab_path.is_file():
        raise ModelLoadError(f"{directory} has no {VOCAB_NAME}; the token table is needed to produce text")
    try:
        vocab = Vocabulary.load(vocab_path)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{vocab_path} is not a valid token table: {e}") from e
    if len(vocab) != dims.n_vocab:
        raise ModelLoadError(f"{vocab_path} has {len(vocab)} tokens but output_dim is {dims.n_vocab}")

    net, cmvn = build_model(dims, load_state_dict(weights), weights)
    cmvn_path = directory / CMVN_NAME
    if cmvn is None and cmvn_path.is_file():
        try:
            cmvn = load_cmvn(cmvn_path, is_json=bool(config.get("is_json_cmvn", True)))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ModelLoadError(f"{cmvn_path} is not a valid CMVN file: {e}") from e
    elif cmvn is not None and not cmvn_path.is_file():
        # The reference skips CMVN altogether without the file, even though the weights carry
        # the statistics the model was trained with; we use them.
        log.warning("%s has no %s; using the CMVN statistics stored in the weights", directory, CMVN_NAME)
    if cmvn is not None and cmvn.mean.numel() != dims.n_mels:
        raise ModelLoadError(f"CMVN has {cmvn.mean.numel()} dimensions but input_dim is {dims.n_mels}")
    if cmvn is None:
        log.warning(
            "%s: no CMVN statistics (no %s, none in the weights); features are not normalised", directory, CMVN_NAME
        )
    return LoadedCheckpoint(directory, dims, net, cmvn, vocab)
