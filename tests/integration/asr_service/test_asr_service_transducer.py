"""The ASR service with a transducer (RNN-T) checkpoint, over real HTTP: the official ``openai``
client and concurrent requests through the batcher must equal the engine in this process."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
from conftest import asr_server
from omoai_asr.engine import DecodeOptions
from omoai_audio import decode_audio

pytestmark = pytest.mark.timeout(300)


def test_a_transducer_checkpoint_is_served_like_the_engine_decodes(
    tmp_path_factory: pytest.TempPathFactory, clips: list[Path]
) -> None:
    import torch
    from omoai_asr.engine import ChunkFormerEngine
    from omoai_asr.engine.testing import TINY_RNNT, write_random_checkpoint
    from omoai_gpu.memory import MemoryPolicy
    from prometheus_client import CollectorRegistry

    # A local copy named like the published checkpoint: /v1/models shows that checkpoint's license.
    model = write_random_checkpoint(tmp_path_factory.mktemp("rnnt") / "chunkformer-rnnt-large-vie", TINY_RNNT)
    engine = ChunkFormerEngine.load(
        model, MemoryPolicy(torch.device("cpu"), torch.float32, registry=CollectorRegistry())
    )
    want = [engine.transcribe(decode_audio(c).samples, DecodeOptions()) for c in clips[:3]]
    with asr_server(
        model, tmp_path_factory.mktemp("asr-rnnt"), OMOAI_BATCH_WINDOW_MS="200", OMOAI_SERVED_MODEL_NAME="rnnt-tiny"
    ) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        with server.client() as http:
            cards = http.get("/v1/models").json()["data"]
        assert [(c["id"], c["license"]) for c in cards] == [("rnnt-tiny", "CC-BY-4.0")]
        with clips[1].open("rb") as fh:
            verbose = client.audio.transcriptions.create(
                model="rnnt-tiny", file=fh, response_format="verbose_json", timestamp_granularities=["word", "segment"]
            )
        assert verbose.text == want[1].text
        assert [(s.start, s.end, s.text) for s in verbose.segments] == [
            (s.start, s.end, s.text) for s in want[1].segments
        ]

        def post(clip: Path) -> dict:
            with server.client() as http:
                r = http.post("/v1/transcriptions", files={"file": clip.read_bytes()})
            assert r.status_code == 200, r.text
            return r.json()

        # Concurrent requests: the batcher decodes them together in masked batches.
        with ThreadPoolExecutor(3) as pool:
            got = list(pool.map(post, clips[:3]))
        for doc, w in zip(got, want, strict=True):
            assert doc["text"] == w.text
            assert doc["segments"] == [s.model_dump(exclude_none=True) for s in w.segments]
