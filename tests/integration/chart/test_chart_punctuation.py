"""The chart's punctuation choices: the default method, edits, and a tagger-only post-processing
service that needs no GPU LLM; contradictory values are refused with a clear message."""

from __future__ import annotations

import pytest
from chart_render import env_of, helm_template, one
from omoai_core.settings import load_settings
from omoai_llm.settings import LlmSettings

TAGGER_ONLY = {
    "llm.config.model": "",
    "llm.config.taggerModel": "dragonSwing/vibert-capu",
    "llm.config.punctuationMethod": "tagger",
    "llm.config.backend": "transformers",
    "llm.config.device": "cpu",
    "llm.gpu.enabled": False,
}


def _settings_from(env: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> LlmSettings:
    for key, value in env.items():
        if key.startswith("OMOAI_") and isinstance(value, str):
            monkeypatch.setenv(key, value)
    return load_settings(LlmSettings)


@pytest.mark.parametrize("method", ["rewrite", "edits"])
def test_the_default_method_reaches_the_service(render, method, monkeypatch):
    env = env_of(one(render({"llm.config.punctuationMethod": method}), "Deployment", "omoai-llm"))
    assert env["OMOAI_PUNCTUATION_METHOD"] == method
    assert _settings_from(env, monkeypatch).punctuation_method == method


def test_a_tagger_only_service_has_no_gpu_and_no_llm(render, monkeypatch):
    docs = render(TAGGER_ONLY)
    deployment = one(docs, "Deployment", "omoai-llm")
    pod = deployment["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"].get("limits", {})
    env = env_of(deployment)
    assert env["OMOAI_TAGGER_MODEL"] == "dragonSwing/vibert-capu"
    settings = _settings_from(env, monkeypatch)
    assert settings.tagger_only and settings.punctuation_method == "tagger" and settings.device == "cpu"


def test_the_model_download_job_fetches_the_tagger_too(render):
    docs = render({"llm.config.taggerModel": "dragonSwing/vibert-capu", "llm.modelCache.preDownload.enabled": True})
    jobs = [d for d in docs if d["kind"] == "Job" and "llm-model-download" in d["metadata"]["name"]]
    assert jobs, [d["metadata"]["name"] for d in docs if d["kind"] == "Job"]
    env = env_of(jobs[0])
    assert "dragonSwing/vibert-capu" in env["OMOAI_DOWNLOAD_MODELS"] and "Qwen" in env["OMOAI_DOWNLOAD_MODELS"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"llm.config.punctuationMethod": "tagger"}, "llm.config.taggerModel is empty"),
        ({**TAGGER_ONLY, "llm.config.taggerModel": ""}, "are both empty"),
        ({"llm.config.punctuationMethod": "magic"}, "punctuationMethod"),
    ],
)
def test_contradictory_punctuation_values_are_refused(helm, values, message):
    proc = helm_template(helm, values)
    assert proc.returncode != 0, f"{values} was accepted"
    assert message in proc.stderr, proc.stderr
