"""The README's main job: `scripts/demo.sh` runs the embedded default end to end."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from omoai_core.schemas import Transcript

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(600)
def test_demo_without_the_hub_falls_back_to_tiny_models_quickly_and_says_so(tmp_path):
    out = tmp_path / "demo"
    # A hub that accepts connections and never answers: the slowest unreachable case.
    silent = socket.create_server(("127.0.0.1", 0))
    env = {
        **os.environ,
        "VENV": str(Path(sys.executable).parent.parent),
        "OMOAI_DEMO_OUT": str(out),
        "HF_ENDPOINT": f"http://127.0.0.1:{silent.getsockname()[1]}",
    }
    for name in ("OMOAI_DEMO_MODEL", "OMOAI_DEMO_LLM_MODEL", "HF_HUB_OFFLINE"):
        env.pop(name, None)
    try:
        proc = subprocess.run(
            [str(ROOT / "scripts" / "demo.sh")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=540
        )
    finally:
        silent.close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == [f"xin-chao.{f}" for f in ("json", "md", "srt", "txt", "vtt")]
    doc = json.loads((out / "xin-chao.json").read_text(encoding="utf-8"))
    transcript = Transcript.model_validate(doc["transcript"] if "transcript" in doc else doc)
    assert transcript.duration == pytest.approx(7.2, abs=0.01)
    assert transcript.segments and all(0 <= s.start <= s.end <= 7.2 for s in transcript.segments)
    assert "WEBVTT" in (out / "xin-chao.vtt").read_text(encoding="utf-8")
    assert "-->" in (out / "xin-chao.srt").read_text(encoding="utf-8")
    assert "## Transcript" in proc.stdout  # the markdown document is printed
    assert "meaningless" in proc.stderr  # and the user is told why the text is gibberish
    decided = re.search(r"the model hub \(\S+\) is NOT reachable \(decided in ([0-9.]+) s\)", proc.stderr)
    assert decided and float(decided[1]) <= 6.0  # 5 s in the script; loose for a loaded machine
    assert "khanhld/chunkformer-rnnt-large-vie" in proc.stderr  # the right default is named
    assert "khanhld/chunkformer-large-vie" not in proc.stderr
