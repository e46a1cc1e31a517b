"""The GE2E speaker encoder: three LSTM layers over mel frames, the last layer's final hidden
state through a linear layer and a ReLU, L2-normalised to a 256-dim embedding.

The weights are ``resemblyzer``'s ``pretrained.pt`` (trained on 1.6 s partial utterances); the
network is ours, so only ``torch`` is needed to run it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from omoai_core.errors import ConfigError
from torch import nn


@dataclass(frozen=True)
class EncoderDims:
    n_mels: int = 40
    hidden: int = 256
    layers: int = 3
    embedding: int = 256


class SpeakerEncoder(nn.Module):
    def __init__(self, dims: EncoderDims = EncoderDims()) -> None:
        super().__init__()
        self.dims = dims
        self.lstm = nn.LSTM(dims.n_mels, dims.hidden, dims.layers, batch_first=True)
        self.linear = nn.Linear(dims.hidden, dims.embedding)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """(B, frames, 40) mel power -> (B, 256) unit-length embeddings (non-negative entries)."""
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-8)

    @classmethod
    def load(cls, path: Path, device: torch.device) -> SpeakerEncoder:
        """Read ``pretrained.pt`` (tensors only: ``weights_only``) into a fresh encoder, eval mode."""
        try:
            checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:
            raise ConfigError(f"cannot read the speaker encoder weights {path}: {e}") from e
        state = checkpoint.get("model_state", checkpoint) if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict):
            raise ConfigError(f"{path} is not a speaker encoder checkpoint (no model_state)")
        # The training-time GE2E similarity scale and bias are not part of the encoder.
        state = {k: v for k, v in state.items() if not k.startswith("similarity_")}
        model = cls()
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ConfigError(f"{path} does not fit the speaker encoder: missing {missing}, unexpected {unexpected}")
        return model.to(device).eval()
