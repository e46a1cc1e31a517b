"""``omoai run --punctuation-method``: jobs that name no method get the flag's, a job's own method
wins, old manifests without the field still load; which jobs a tagger-only service can serve."""

from __future__ import annotations

import copy

import pytest
from omoai_operator.cli import _parser, _tagger_only, _with_default_method
from omoai_operator.spec import load_manifest

JOB = {
    "apiVersion": "omoai.io/v1alpha1",
    "kind": "TranscriptionJob",
    "metadata": {"name": "j"},
    "spec": {
        "source": {"url": "https://example.com/a.wav"},
        "output": {"pvc": {"claimName": "d", "path": "o"}, "formats": ["json"]},
    },
}


def _with_post(**post: object) -> dict:
    job = copy.deepcopy(JOB)
    job["spec"]["postprocess"] = post
    return job


@pytest.mark.parametrize("method", ["rewrite", "edits", "tagger"])
def test_the_flag_names_the_method_of_jobs_that_name_none(method):
    for job in (JOB, _with_post(summary="none")):  # an old manifest, with and without postprocess
        spec = load_manifest(_with_default_method(job, method))[1]
        assert spec.postprocess.punctuation_method == method and spec.postprocess.punctuation


def test_a_jobs_own_method_wins_and_old_manifests_load_unchanged():
    spec = load_manifest(_with_default_method(_with_post(punctuationMethod="edits"), "tagger"))[1]
    assert spec.postprocess.punctuation_method == "edits"
    assert load_manifest(JOB)[1].postprocess.punctuation_method is None
    assert _with_default_method({"kind": "x"}, "edits") == {"kind": "x"}  # left for load_manifest to refuse


def test_only_jobs_without_llm_tasks_can_use_a_tagger_only_service():
    def spec(**post: object):
        return load_manifest(_with_post(**post))[1]

    assert _tagger_only(spec(punctuationMethod="tagger", summary="none", topics=False))
    assert _tagger_only(spec(punctuation=False, summary="none", topics=False))
    assert not _tagger_only(spec(punctuationMethod="tagger"))  # summaries and topics need an LLM
    assert not _tagger_only(spec(punctuationMethod="edits", summary="none", topics=False))


def test_the_run_flags_parse():
    args = _parser().parse_args(["run", "job.yaml", "--punctuation-method", "edits", "--tagger-model", "t"])
    assert args.punctuation_method == "edits" and args.tagger_model == "t"
    with pytest.raises(SystemExit):
        _parser().parse_args(["run", "job.yaml", "--punctuation-method", "magic"])
