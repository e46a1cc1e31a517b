"""Random ChunkFormer checkpoints in the official layout, for tests, demos and benchmarks.

``write_random_checkpoint(dir, dims)`` writes ``config.yaml``, ``pytorch_model.bin``,
``global_cmvn`` and ``vocab.txt`` exactly as a published checkpoint has them, so the directory
goes through the same loading path as ``khanhld/chunkformer-large-vie``. The weights are random:
the text is gibberish, but shapes, speed and memory are those of a real model of these
dimensions. The CTC head is calibrated so that output varies with the audio and has silences.

``write_random_checkpoint(dir, TINY_RNNT)`` (any dims with ``transducer`` set) writes a
``model: transducer`` checkpoint in the layout of ``khanhld/chunkformer-rnnt-large-vie``:
predictor and joint, plus the CTC head that such checkpoints also carry (unused by greedy
transducer decoding). A random predictor and joint emit one token 64 times per frame, so the
joint is constructed (see :func:`_construct_joint`) to behave like a trained one: mostly blank,
about one emission per voiced frame, the last emitted tokens suppressed.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from omoai_asr.engine.features import fbank, samples_to_tensor
from omoai_asr.engine.model import ChunkFormer, ModelDimensions, TransducerDimensions

# The published khanhld/chunkformer-large-vie architecture (113,852,240 encoder+CTC parameters).
LARGE_VIE = ModelDimensions(
    n_mels=80, n_state=512, n_head=8, n_ffn=2048, n_layer=17, cnn_kernel=15, n_vocab=6992, cnn_norm="layer_norm"
)
# A model small enough for unit tests (about 0.5 M parameters).
TINY = ModelDimensions(n_mels=80, n_state=64, n_head=4, n_ffn=128, n_layer=2, cnn_kernel=15, n_vocab=48)
# khanhld/chunkformer-rnnt-large-vie's encoder family with a WeNet-recipe-sized LSTM predictor and
# joint (the published checkpoint's predictor/joint sizes are not public): a benchmark stand-in.
LARGE_VIE_RNNT = replace(
    LARGE_VIE,
    transducer=TransducerDimensions(embed_size=256, hidden_size=640, pred_output_size=512, num_layers=1, join_dim=512),
)
# A transducer small enough for unit and service tests.
TINY_RNNT = replace(
    TINY,
    transducer=TransducerDimensions(embed_size=32, hidden_size=96, pred_output_size=64, num_layers=1, join_dim=128),
)

# The transducer benchmark checkpoint's construction (:func:`write_benchmark_transducer`): blank
# wins this share of the calibration frames, and the predictor remembers this many emitted tokens
# (a frame with as many tokens "on" emits each once; more than that would cycle to the cap).
BENCHMARK_BLANK_FRACTION = 0.75
BENCHMARK_SUPPRESSION = (20.0, 17.0, 14.0, 11.0)
#: Bumped whenever the benchmark transducer's construction changes: cached copies are keyed by it.
BENCHMARK_TRANSDUCER_VERSION = 2
BLANK_GUARD = 1.15  # see _construct_joint: frames with 4 or more acoustic features on are blank

_ONSETS = (
    "",
    "b",
    "c",
    "ch",
    "d",
    "đ",
    "g",
    "gi",
    "h",
    "k",
    "kh",
    "l",
    "m",
    "n",
    "ng",
    "nh",
    "p",
    "ph",
    "qu",
    "r",
    "s",
    "t",
    "th",
    "tr",
    "v",
    "x",
)
_NUCLEI = [
    "aàáảãạ",
    "ăằắẳẵặ",
    "âầấẩẫậ",
    "eèéẻẽẹ",
    "êềếểễệ",
    "iìíỉĩị",
    "oòóỏõọ",
    "ôồốổỗộ",
    "ơờớởỡợ",
    "uùúủũụ",
    "ưừứửữự",
    "yỳýỷỹỵ",
]
_CODAS = ("", "n", "ng", "nh", "m", "c", "t", "p", "ch", "i", "o", "u")


def vietnamese_vocab(size: int) -> list[str]:
    """``size`` distinct tokens: <blank>, <unk>, "▁", syllable pieces with and without "▁", <sos/eos>."""
    if size < 4:
        raise ValueError("a vocabulary needs at least <blank>, <unk>, one token and <sos/eos>")
    tokens = ["<blank>", "<unk>", "\u2581"]
    seen = set(tokens)
    pieces = [
        onset + nucleus + coda for coda in _CODAS for nuclei in _NUCLEI for nucleus in nuclei for onset in _ONSETS
    ]
    random.Random(0).shuffle(pieces)  # fixed order; small vocabularies still get variety
    candidates = [p for pair in zip((f"\u2581{p}" for p in pieces), pieces, strict=True) for p in pair]
    for token in candidates:
        if len(tokens) >= size - 1:
            break
        if token not in seen:
            seen.add(token)
            tokens.append(token)
    i = 0
    while len(tokens) < size - 1:
        tokens.append(f"\u2581w{i}")
        i += 1
    tokens.append("<sos/eos>")
    return tokens


def reference_config(dims: ModelDimensions, **encoder_overrides: Any) -> dict[str, Any]:
    """A ``config.yaml`` mapping with the reference's key names for these dimensions."""
    encoder_conf: dict[str, Any] = {
        "output_size": dims.n_state,
        "attention_heads": dims.n_head,
        "linear_units": dims.n_ffn,
        "num_blocks": dims.n_layer,
        "dropout_rate": 0.1,
        "positional_dropout_rate": 0.1,
        "attention_dropout_rate": 0.1,
        "input_layer": "dw_striding",
        "normalize_before": dims.normalize_before,
        "cnn_module_kernel": dims.cnn_kernel,
        "use_cnn_module": dims.use_cnn,
        "macaron_style": dims.macaron,
        "activation_type": dims.activation,
        "pos_enc_layer_type": "chunk_rel_pos",
        "selfattention_layer_type": "chunk_rel_seflattn",
        "causal": False,
        "cnn_module_norm": dims.cnn_norm,
        "layer_norm_type": dims.final_norm_type,
        "norm_eps": dims.norm_eps,
        "dynamic_conv": True,
        "dynamic_chunk_sizes": [-1, -1, 64, 128, 256],
        "dynamic_left_context_sizes": [64, 128, 256],
        "dynamic_right_context_sizes": [64, 128, 256],
    }
    encoder_conf.update(encoder_overrides)
    return {
        "encoder": "chunkformer",
        "is_json_cmvn": True,
        "cmvn_file": "global_cmvn",
        "input_dim": dims.n_mels,
        "output_dim": dims.n_vocab,
        "encoder_conf": encoder_conf,
        "decoder": "transformer",
        "decoder_conf": {"attention_heads": dims.n_head, "linear_units": dims.n_ffn, "num_blocks": 1},
        "ctc": "ctc",
        "ctc_conf": {"ctc_blank_id": 0},
        "model": "asr_model",
        "model_conf": {"ctc_weight": 0.3, "lsm_weight": 0.1, "length_normalized_loss": False},
        "fbank_conf": {"num_mel_bins": dims.n_mels, "frame_shift": 10, "frame_length": 25, "dither": 0.0},
        "resample_conf": {"resample_rate": 16000},
    }


def transducer_config(dims: ModelDimensions) -> dict[str, Any]:
    """The predictor/joint/model keys of a ``model: transducer`` config.yaml (WeNet recipe names)."""
    t = dims.transducer
    assert t is not None
    return {
        "model": "transducer",
        "decoder": "bitransformer",
        "decoder_conf": {
            "attention_heads": dims.n_head,
            "linear_units": dims.n_ffn,
            "num_blocks": 1,
            "r_num_blocks": 1,
        },
        "predictor": "rnn",
        "predictor_conf": {
            "embed_size": t.embed_size,
            "output_size": t.pred_output_size,
            "embed_dropout": 0.1,
            "hidden_size": t.hidden_size,
            "num_layers": t.num_layers,
            "bias": t.rnn_bias,
            "rnn_type": "lstm",
            "dropout": 0.1,
        },
        "joint": "transducer_joint",
        "joint_conf": {
            "enc_output_size": dims.n_state,
            "pred_output_size": t.pred_output_size,
            "join_dim": t.join_dim,
            "prejoin_linear": t.prejoin_linear,
            "postjoin_linear": t.postjoin_linear,
            "joint_mode": "add",
            "activation": t.activation,
            **({"hat_joint": True, "hat_activation": t.hat_activation} if t.hat_joint else {}),
        },
        "model_conf": {
            "transducer_weight": 0.75,
            "ctc_weight": 0.1,
            "attention_weight": 0.15,
            "lsm_weight": 0.1,
            "length_normalized_loss": False,
            "reverse_weight": 0.3,
        },
    }


def synthetic_speech(seconds: float = 20.0, *, seed: int = 0, sample_rate: int = 16000) -> np.ndarray:
    """Speech-like int16 audio: voiced syllables (gliding harmonics), noise bursts, pauses."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    out = np.zeros(n, dtype=np.float64)
    pos = int(0.2 * sample_rate)
    while pos < n:
        length = int(rng.uniform(0.08, 0.35) * sample_rate)
        t = np.arange(min(length, n - pos)) / sample_rate
        envelope = np.sin(np.pi * t / max(t[-1], 1e-3)) if t.size > 1 else np.ones_like(t)
        if rng.random() < 0.75:  # voiced: a few harmonics of a gliding f0
            f0 = rng.uniform(90, 260) * (1 + rng.uniform(-0.2, 0.2) * t / max(t[-1], 1e-3))
            phase = 2 * np.pi * np.cumsum(f0) / sample_rate
            seg = sum(rng.uniform(0.2, 1.0) / k * np.sin(k * phase) for k in range(1, 8))
        else:  # fricative: noise
            seg = rng.normal(0, 0.6, t.size)
        out[pos : pos + t.size] += envelope * seg * rng.uniform(2000, 9000)
        pos += t.size + int(rng.choice([0.02, 0.05, 0.1, 0.6]) * sample_rate)
    out += rng.normal(0, 30, n)  # a little background noise
    return np.clip(out, -32768, 32767).astype(np.int16)


def random_state_dict(
    dims: ModelDimensions,
    *,
    seed: int = 0,
    blank_fraction: float = 0.6,
    ctc_scale: float = 8.0,
    construct_joint: bool = True,
    calibration: np.ndarray | None = None,
    suppression: tuple[float, ...] = (20.0, 14.0),
) -> dict[str, torch.Tensor]:
    """Random weights with the official key names, including ``encoder.global_cmvn`` buffers.

    CMVN statistics come from the fbank of ``calibration`` (16 kHz int16; default 20 s of
    :func:`synthetic_speech`). A random encoder's output
    barely depends on its input, so a random CTC head would emit one token everywhere; the head
    is calibrated on that audio instead: weights scaled by ``ctc_scale``, bias centring every
    token, blank bias set so that blank wins about ``blank_fraction`` of the frames. Output then
    varies with the audio and has silences, like real output.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ChunkFormer(dims).eval()
        ctc_model = ChunkFormer(replace(dims, transducer=None)).eval() if dims.is_transducer else model
        ctc_model.encoder = model.encoder  # the CTC head a transducer checkpoint carries, on the same encoder
    state = model.state_dict()
    for key, value in state.items():
        if key.endswith(("pos_bias_u", "pos_bias_v", "running_mean")):
            value.copy_(torch.randn(value.shape, generator=generator) * 0.1)
        elif key.endswith("running_var"):
            value.copy_(1.0 + torch.rand(value.shape, generator=generator))
    speech = synthetic_speech(20.0, seed=seed) if calibration is None else calibration
    feats = fbank(samples_to_tensor(speech), dims.n_mels)
    mean = feats.mean(0)
    istd = 1.0 / feats.std(0).clamp(min=1e-3)
    _calibrate_ctc_head(ctc_model, (feats - mean) * istd, blank_fraction, ctc_scale)
    if dims.is_transducer and construct_joint:
        _construct_joint(model, (feats - mean) * istd, blank_fraction, seed, suppression)
    state = model.state_dict()
    if dims.is_transducer:
        state.update({k: v for k, v in ctc_model.state_dict().items() if k.startswith("ctc.")})
    state["encoder.global_cmvn.mean"] = mean.float()
    state["encoder.global_cmvn.istd"] = istd.float()
    return {k: v.detach().clone() for k, v in state.items()}


def _calibrate_ctc_head(model: ChunkFormer, feats: torch.Tensor, blank_fraction: float, scale: float) -> None:
    from omoai_asr.engine.options import DecodeOptions
    from omoai_asr.engine.transcribe import _encode

    with torch.inference_mode():
        (enc,), _, _, _ = _encode(model, [(feats, 0)], DecodeOptions(64, 128, 128), None, None, 0)
        assert model.ctc is not None
        lo = model.ctc.ctc_lo
        lo.weight.mul_(scale)
        lo.bias.copy_(-(enc @ lo.weight.T).mean(0))
        logits = enc @ lo.weight.T + lo.bias
        margin = logits[:, 1:].max(dim=-1).values - logits[:, 0]
        lo.bias[0] += torch.quantile(margin, blank_fraction).item()


def _construct_joint(
    model: ChunkFormer,
    feats: torch.Tensor,
    blank_fraction: float,
    seed: int,
    suppression: tuple[float, ...] = (20.0, 14.0),
) -> None:
    """Make a random predictor and joint decode like a trained transducer (in place).

    Random predictor and joint weights emit one token 64 times per frame; this constructs
    weights that decode like a trained model. The join space is split in two halves.

    - Acoustic half: ``enc_ffn`` projects the encoder output on random directions, each
      standardised on the calibration audio and thresholded through the joint's tanh, so a
      dimension is "on" in the few frames where its feature is high (about
      ``1 - blank_fraction`` of the frames have one on). Each dimension belongs to one
      emitting token (a random subset of the ordinary tokens), whose logit is +8 while it is
      on and -8 otherwise; every other token sits at -30. Blank's logit grows with the
      number of emitting dimensions on, so a frame with 4 or more on (an outlier frame of the
      random encoder) is blank rather than a burst of tokens.
    - Linguistic half: the LSTM is a shift register of the last ``len(suppression)`` tokens
      (hidden units in slots; slot 0 a saturated sign pattern of the input token, slot k a copy
      of slot k-1 through ``weight_hh``), read out linearly (``projection``, ``pred_ffn`` in
      tanh's linear range); each emitting token's row is minus its own pattern in each slot.
      So a token just emitted is pushed below blank: one emission per stretch of frames where
      its dimension is on, and several tokens in a frame only where several dimensions are on.
    """
    from omoai_asr.engine.options import DecodeOptions
    from omoai_asr.engine.transcribe import _encode

    predictor, joint, dims = model.predictor, model.joint, model.dims.transducer
    assert predictor is not None and joint is not None and dims is not None
    assert joint.enc_ffn is not None and joint.pred_ffn is not None and joint.ffn_out is not None
    g = torch.Generator().manual_seed(seed + 1)
    half = dims.join_dim // 2
    h = dims.hidden_size
    slots = len(suppression)
    q = h // slots
    n_vocab = predictor.embed.num_embeddings
    ordinary = torch.arange(2, n_vocab - 1)  # not <blank>, <unk> or <sos/eos>
    emitting = ordinary[torch.randperm(ordinary.numel(), generator=g)[: half // (len(suppression) + 1)]]
    n_emit = emitting.numel()
    with torch.inference_mode():
        rnn: Any = predictor.rnn  # nn.LSTM's per-layer parameters are not typed attributes
        rnn.weight_ih_l0.zero_()
        rnn.weight_hh_l0.zero_()
        if dims.rnn_bias:
            rnn.bias_hh_l0.zero_()
            bias = rnn.bias_ih_l0
            bias.zero_()
            bias[:h] = 8.0  # input gate open
            bias[h : 2 * h] = -8.0  # forget gate closed: the cell is this step's candidate
            bias[3 * h :] = 8.0  # output gate open
        predictor.embed.weight.normal_(0.0, 1.0, generator=g)
        rnn.weight_ih_l0[2 * h : 2 * h + q] = torch.randn(q, dims.embed_size, generator=g) * 10.0
        for k in range(1, slots):  # candidate slot k <- hidden slot k-1
            rows = slice(2 * h + k * q, 2 * h + (k + 1) * q)
            rnn.weight_hh_l0[rows, (k - 1) * q : k * q] = torch.eye(q) * 10.0
        predictor.projection.weight.copy_(torch.randn(dims.pred_output_size, h, generator=g) / h**0.5)
        predictor.projection.bias.zero_()
        joint.pred_ffn.weight.zero_()
        joint.pred_ffn.bias.zero_()
        joint.pred_ffn.weight[half:] = torch.randn(half, dims.pred_output_size, generator=g) * (
            0.15 / dims.pred_output_size**0.5
        )
        # Acoustic half: standardised random features, "on" above a per-dimension threshold.
        (enc,), _, _, _ = _encode(model, [(feats, 0)], DecodeOptions(64, 128, 128), None, None, 0)
        # Random directions in the whitened encoder space: a random encoder's features are
        # strongly correlated, and correlated "on" dimensions would fire together (many tokens in
        # one frame, cycling to the 64-emission cap, and long blank stretches elsewhere). Only
        # the leading principal half is whitened: a minute of audio (~750 frames) estimates the
        # small variances of a 512-wide space badly, and whitening those directions blows up
        # whatever other audio puts there (calibrated on the whole space, 60 s searched like a
        # trained model but the rest of a 600 s file switched most features on in every frame).
        centred = (enc - enc.mean(0)).double()
        cov = centred.T @ centred / max(1, enc.size(0) - 1)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)  # ascending
        k = cov.size(0) // 2
        top = eigenvalues[-k:].clamp(min=0.0)
        whitening = eigenvectors[:, -k:] * (top + 0.01 * top.mean()).rsqrt()  # (D, k)
        directions = (torch.randn(half, k, generator=g).double() @ whitening.T).float()
        pre = enc @ directions.T  # (T, J/2)
        mu, sigma = pre.mean(0), pre.std(0).clamp(min=1e-6)
        z = (pre - mu) / sigma
        on_rate = (1.0 - blank_fraction) / half  # per dimension and frame
        threshold = torch.quantile(z, 1.0 - on_rate, dim=0)  # (J/2,)
        gain = 6.0
        joint.enc_ffn.weight.zero_()
        joint.enc_ffn.bias.zero_()
        joint.enc_ffn.weight[:half] = gain * directions / sigma[:, None]
        joint.enc_ffn.bias[:half] = -gain * (mu / sigma + threshold)

        def linguistic(tokens: torch.Tensor, blanks_after: int) -> torch.Tensor:
            """(N, J/2) the linguistic half after start, token, then ``blanks_after`` blanks.

            With more than two slots, blanks before the token fill every slot with blank's
            pattern, so that each term differs from the start state in its own slot only.
            """
            n = tokens.numel()
            state = predictor.initial_state(n, torch.device("cpu"))
            zeros = torch.zeros(n, dtype=torch.long)
            for _ in range(max(1, slots - 1)):  # the start symbol, then the fill
                out, state = predictor.step(zeros, state)
            out, state = predictor.step(tokens, state)
            for _ in range(blanks_after):
                out, state = predictor.step(zeros, state)
            return torch.tanh(joint.project_predictor(out)[:, half:])

        # In tanh's linear range the linguistic half is the start state's plus one term per
        # slot and token. Rows are built from the terms centred over the emitting tokens, so
        # the register's typical content shifts no token; the bias absorbs the typical content.
        start = linguistic(torch.zeros(1, dtype=torch.long), 0)[0]
        neutral = start.clone()
        terms, targets, means = [], [], []
        for k, strength in enumerate(suppression):
            term = linguistic(emitting, k) - start  # (n, J/2): token u in slot k
            mean = term.mean(0)
            means.append(mean)
            neutral += mean
            terms.append(term - mean)
            targets.append(-strength * torch.eye(n_emit))
        # Rows that read exactly -strength off their own token in each slot, 0 off every other,
        # and 0 off each slot's typical content (minimum-norm solution; the slots' patterns are
        # fewer than the dimensions). Without the last, the start state (an empty register)
        # pushed some tokens far above blank in the first frame, whatever the audio.
        d = torch.cat([*terms, torch.stack(means)]).double()  # (slots * n + slots, J/2)
        t = torch.cat([*targets, torch.zeros(n_emit, slots)], dim=1).double()  # (n, slots * n + slots)
        suppress = (t @ torch.linalg.solve(d @ d.T + 1e-6 * torch.eye(d.size(0), dtype=d.dtype), d)).float()
        weight = torch.zeros(n_vocab, dims.join_dim)
        out_bias = torch.full((n_vocab,), -30.0)
        # Blank reads the emitting tokens' acoustic dimensions: 2 * BLANK_GUARD per dimension on,
        # so a frame with up to 3 of them on emits them (8 > 6.9) and a frame with 4 or more
        # (an outlier frame of the random encoder) emits nothing (9.2 > 8), like a trained
        # model, which never bursts many tokens out of one frame.
        weight[0, :n_emit] = BLANK_GUARD
        out_bias[0] = BLANK_GUARD * n_emit
        weight[emitting, torch.arange(n_emit)] = 8.0  # +8 when on (tanh = 1), -8 when off
        weight[emitting, half:] = suppress
        out_bias[emitting] = -(suppress @ neutral)
        joint.ffn_out.weight.copy_(weight)
        joint.ffn_out.bias.copy_(out_bias)


def write_random_checkpoint(
    directory: str | Path,
    dims: ModelDimensions = TINY,
    *,
    seed: int = 0,
    weights_name: str = "pytorch_model.bin",
    cmvn_file: bool = True,
    cmvn_in_weights: bool = True,
    blank_fraction: float = 0.6,
    config_overrides: dict[str, Any] | None = None,
    construct_joint: bool = True,
    calibration: np.ndarray | None = None,
    suppression: tuple[float, ...] = (20.0, 14.0),
) -> Path:
    """Write a random checkpoint directory in the official layout and return its path.

    ``calibration`` and ``suppression``: see :func:`random_state_dict` and :func:`_construct_joint`.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = random_state_dict(
        dims,
        seed=seed,
        blank_fraction=blank_fraction,
        construct_joint=construct_joint,
        calibration=calibration,
        suppression=suppression,
    )
    mean = state["encoder.global_cmvn.mean"].double()
    istd = state["encoder.global_cmvn.istd"].double()
    if not cmvn_in_weights:
        del state["encoder.global_cmvn.mean"], state["encoder.global_cmvn.istd"]
    torch.save(state, out / weights_name)
    config = reference_config(dims)
    if dims.is_transducer:
        config.update(transducer_config(dims))
    if config_overrides:
        config.update(config_overrides)
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    if cmvn_file:
        frames = 100_000
        var = (1.0 / istd) ** 2
        stats = {
            "mean_stat": (mean * frames).tolist(),
            "var_stat": ((var + mean**2) * frames).tolist(),
            "frame_num": frames,
        }
        (out / "global_cmvn").write_text(json.dumps(stats), encoding="utf-8")
    vocab = vietnamese_vocab(dims.n_vocab)
    (out / "vocab.txt").write_text("".join(f"{t} {i}\n" for i, t in enumerate(vocab)), encoding="utf-8")
    return out


def write_benchmark_transducer(
    directory: str | Path, speech: np.ndarray | None = None, *, seed: int = 0, dims: ModelDimensions | None = None
) -> Path:
    """The transducer benchmark checkpoint: ``LARGE_VIE_RNNT`` searching like a trained model.

    The size of ``khanhld/chunkformer-rnnt-large-vie`` (encoder 512 x 17 blocks, LSTM predictor,
    joint 512, vocabulary 6992) with the joint constructed on ``speech`` (16 kHz int16; the
    benchmark passes its own speech, default :func:`synthetic_speech`) so that greedy search on
    that audio has at least 70 % blank frames and at most 4 emissions in a frame
    (:class:`SearchProfile`), as trained models do. Every speed benchmark of the default model
    uses it. ``dims`` (default ``LARGE_VIE_RNNT``): the same construction at another size (tests).
    """
    return write_random_checkpoint(
        directory,
        dims or LARGE_VIE_RNNT,
        seed=seed,
        blank_fraction=BENCHMARK_BLANK_FRACTION,
        calibration=speech,
        suppression=BENCHMARK_SUPPRESSION,
    )


@dataclass(frozen=True)
class SearchProfile:
    """How a transducer's greedy search spent an utterance's frames (trained models: mostly blank)."""

    MIN_BLANK_SHARE = 0.70  # a trained model's search emits nothing on most frames
    MAX_PER_FRAME = 4  # and rarely more than a few tokens in one frame

    n_frames: int
    blank_share: float  # frames without an emission / frames
    max_per_frame: int  # most emissions in one frame

    @classmethod
    def of(cls, emission_frames: np.ndarray, n_frames: int) -> SearchProfile:
        """From the frame of every emission (non-decreasing) and the utterance's frame count."""
        counts = np.bincount(emission_frames, minlength=n_frames)
        blank = float((counts == 0).mean()) if n_frames else 1.0
        return cls(n_frames, blank, int(counts.max()) if counts.size else 0)

    @property
    def trained_like(self) -> bool:
        return self.blank_share >= self.MIN_BLANK_SHARE and self.max_per_frame <= self.MAX_PER_FRAME


def with_dims(base: ModelDimensions = TINY, **changes: Any) -> ModelDimensions:
    """``TINY`` (or another base) with some dimensions changed."""
    return replace(base, **changes)
