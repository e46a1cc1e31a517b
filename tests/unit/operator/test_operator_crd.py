"""The CRD: well-formed (kubernetes-validate), printer columns, the translated schema and our CEL
rules accepting every example and rejecting bad specs, and the pydantic spec model agreeing with
the CRD on every case."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from omoai_core.errors import InvalidInputError
from omoai_operator.spec import JobSpec, load_manifest, parse_spec

from tests.support import operator_crd

EXAMPLE_FILES = sorted(operator_crd.EXAMPLES.glob("*.yaml"))


def base() -> dict[str, Any]:
    return {
        "apiVersion": "omoai.io/v1alpha1",
        "kind": "TranscriptionJob",
        "metadata": {"name": "j"},
        "spec": {
            "source": {"url": "https://a.example/x.wav"},
            "output": {"pvc": {"claimName": "d", "path": "o"}, "formats": ["json"]},
        },
    }


def with_spec(**changes: Any) -> dict[str, Any]:
    obj = base()
    for k, v in changes.items():
        if v is None:
            obj["spec"].pop(k, None)
        else:
            obj["spec"][k] = v
    return obj


HOOK: dict[str, Any] = {"url": "https://hooks.example/omoai", "secretRef": {"name": "hook-key"}}

INVALID: dict[str, dict[str, Any]] = {
    "two sources": with_spec(
        source={"url": "https://a.example/x", "s3": {"bucket": "bkt", "key": "k", "secretRef": {"name": "s"}}}
    ),
    "no source": with_spec(source={}),
    "ftp url": with_spec(source={"url": "ftp://a.example/x.wav"}),
    "url with spaces": with_spec(source={"url": "https://a.example/x y.wav"}),
    "absolute pvc path": with_spec(source={"pvc": {"claimName": "d", "path": "/etc/passwd"}}),
    "dotdot pvc path": with_spec(source={"pvc": {"claimName": "d", "path": "a/../../b"}}),
    "bad claim name": with_spec(source={"pvc": {"claimName": "Data_Vol", "path": "a.wav"}}),
    "s3 without secret": with_spec(source={"s3": {"bucket": "bkt", "key": "k"}}),
    "bad bucket": with_spec(source={"s3": {"bucket": "B", "key": "k", "secretRef": {"name": "s"}}}),
    "two outputs": with_spec(
        output={
            "pvc": {"claimName": "d", "path": "o"},
            "s3": {"bucket": "bkt", "prefix": "p", "secretRef": {"name": "s"}},
            "formats": ["json"],
        }
    ),
    "no output destination": with_spec(output={"formats": ["json"]}),
    "no formats": with_spec(output={"pvc": {"claimName": "d", "path": "o"}}),
    "empty formats": with_spec(output={"pvc": {"claimName": "d", "path": "o"}, "formats": []}),
    "unknown format": with_spec(output={"pvc": {"claimName": "d", "path": "o"}, "formats": ["pdf"]}),
    "repeated format": with_spec(output={"pvc": {"claimName": "d", "path": "o"}, "formats": ["json", "json"]}),
    "output dotdot": with_spec(output={"pvc": {"claimName": "d", "path": "../o"}, "formats": ["json"]}),
    "bad stem": with_spec(output={"pvc": {"claimName": "d", "path": "o"}, "formats": ["json"], "stem": "../x"}),
    "negative backoff": with_spec(backoffLimit=-1),
    "huge backoff": with_spec(backoffLimit=1000),
    "zero deadline": with_spec(activeDeadlineSeconds=0),
    "negative ttl": with_spec(ttlSecondsAfterFinished=-5),
    "priority too high": with_spec(priority=1001),
    "bad language": with_spec(language="vietnamese"),
    "bad summary mode": with_spec(postprocess={"summary": "long"}),
    "unknown punctuation method": with_spec(postprocess={"punctuationMethod": "magic"}),
    "punctuation method not a string": with_spec(postprocess={"punctuationMethod": True}),
    "chunk too small": with_spec(asr={"chunkSize": 1}),
    "batch too long": with_spec(asr={"totalBatchDuration": 20000}),
    "unknown field": with_spec(colour="blue"),
    "suspend not bool": with_spec(suspend="yes"),
    "missing output": with_spec(output=None),
    "speaker counts without diarization": with_spec(diarization={"numSpeakers": 2}),
    "min above max speakers": with_spec(diarization={"enabled": True, "minSpeakers": 4, "maxSpeakers": 2}),
    "num outside bounds": with_spec(diarization={"enabled": True, "numSpeakers": 5, "maxSpeakers": 3}),
    "num below min": with_spec(diarization={"enabled": True, "numSpeakers": 1, "minSpeakers": 2}),
    "zero speakers": with_spec(diarization={"enabled": True, "numSpeakers": 0}),
    "too many speakers": with_spec(diarization={"enabled": True, "maxSpeakers": 21}),
    "diarization flag not bool": with_spec(diarization={"enabled": "yes"}),
    "notification unknown event": with_spec(notifications=[{**HOOK, "events": ["finished"]}]),
    "notification without secret": with_spec(notifications=[{"url": HOOK["url"]}]),
    "notification ftp url": with_spec(notifications=[{**HOOK, "url": "ftp://hooks.example/x"}]),
    "notification repeated event": with_spec(notifications=[{**HOOK, "events": ["failed", "failed"]}]),
    "notification no events": with_spec(notifications=[{**HOOK, "events": []}]),
    "notification unknown format": with_spec(notifications=[{**HOOK, "format": "xml"}]),
    "too many notifications": with_spec(notifications=[HOOK] * 6),
}

VALID: dict[str, dict[str, Any]] = {
    "minimal url": base(),
    "pvc nested path": with_spec(source={"pvc": {"claimName": "omoai-data", "path": "a/b/c.wav"}}),
    "s3 with endpoint": with_spec(
        source={
            "s3": {
                "bucket": "my.bucket",
                "key": "x/y.mp3",
                "endpoint": "http://minio:9000",
                "secretRef": {"name": "creds"},
            }
        }
    ),
    "all knobs": with_spec(
        language="en-US",
        asr={"chunkSize": 32, "leftContext": 0, "rightContext": 16, "totalBatchDuration": 600, "wordTimestamps": False},
        postprocess={"punctuation": False, "summary": "none", "topics": False},
        backoffLimit=0,
        activeDeadlineSeconds=60,
        ttlSecondsAfterFinished=0,
        suspend=True,
        priority=-1000,
    ),
    "diarization estimated": with_spec(diarization={"enabled": True}),
    "punctuation by edits": with_spec(postprocess={"punctuationMethod": "edits"}),
    "punctuation by rewrite": with_spec(postprocess={"punctuation": True, "punctuationMethod": "rewrite"}),
    "tagger only, no llm tasks": with_spec(
        postprocess={"punctuationMethod": "tagger", "summary": "none", "topics": False}
    ),
    "diarization bounded": with_spec(diarization={"enabled": True, "minSpeakers": 2, "maxSpeakers": 4}),
    "diarization given": with_spec(diarization={"enabled": True, "numSpeakers": 3, "minSpeakers": 3, "maxSpeakers": 3}),
    "notification defaults": with_spec(notifications=[HOOK]),
    "notifications all fields": with_spec(
        notifications=[
            {**HOOK, "events": ["started", "succeeded", "failed"], "format": "cloudevents"},
            {"url": "http://hooks.internal:8080/x?token=t", "secretRef": {"name": "k2", "key": "keys"}},
        ]
    ),
}


def test_the_crd_manifest_is_a_valid_kubernetes_object() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kubernetes_validate.validate(operator_crd.load_crd(), "1.30", strict=True)


def test_the_crd_names_and_columns_are_what_users_type_and_see() -> None:
    crd = operator_crd.load_crd()
    assert crd["metadata"]["name"] == "transcriptionjobs.omoai.io"
    assert crd["spec"]["names"]["shortNames"] == ["tj"] and crd["spec"]["scope"] == "Namespaced"
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    cols = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert cols["Phase"] == ".status.phase" and cols["Progress"] == ".status.progress"
    assert cols["Audio"] == ".status.audioDuration" and cols["RTF"] == ".status.realTimeFactor"
    assert cols["Transcribed"] == ".status.audioProgress"
    assert cols["Age"] == ".metadata.creationTimestamp"
    status_props = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    for path in cols.values():  # every column points at a field the schema keeps (no pruning)
        field = path.split(".")[-1]
        assert path.startswith(".metadata") or field in status_props


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_every_example_is_valid_against_the_crd_and_the_spec_model(path: Any) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:
        assert operator_crd.validate(doc) == []
        meta, spec = load_manifest(doc)
        assert meta["name"] and isinstance(spec, JobSpec)


def test_there_is_one_example_per_audio_source() -> None:
    kinds = set()
    for path in EXAMPLE_FILES:
        for doc in yaml.safe_load_all(path.read_text()):
            kinds |= set(doc["spec"]["source"])
    assert kinds == {"url", "s3", "pvc"}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_specs_are_rejected_by_the_crd_and_by_the_spec_model_alike(case: str) -> None:
    obj = INVALID[case]
    assert operator_crd.validate(obj) != [], case
    with pytest.raises(InvalidInputError) as e:
        parse_spec(obj["spec"])
    assert e.value.message.startswith("invalid spec: ")


@pytest.mark.parametrize("case", sorted(VALID))
def test_valid_specs_are_accepted_by_both_with_the_same_defaults(case: str) -> None:
    obj = copy.deepcopy(VALID[case])
    assert operator_crd.validate(obj) == []
    defaulted = operator_crd.apply_defaults(copy.deepcopy(obj))["spec"]
    model = parse_spec(obj["spec"]).model_dump(by_alias=True, exclude_none=True)
    assert model == parse_spec(defaulted).model_dump(by_alias=True, exclude_none=True)
    for key in (
        "language",
        "asr",
        "diarization",
        "postprocess",
        "backoffLimit",
        "suspend",
        "priority",
        "notifications",
    ):
        assert model[key] == defaulted[key], key


def test_every_cel_rule_in_the_crd_has_an_evaluator() -> None:
    rules = {r["rule"] for _, r in operator_crd.cel_rules()}
    assert rules and rules <= set(operator_crd.CEL)
    assert all(r.get("message") for _, r in operator_crd.cel_rules())


def test_cel_rules_catch_what_the_structural_schema_cannot() -> None:
    two = INVALID["two sources"]
    assert any("exactly one audio source" in e for e in operator_crd.validate(two))
    assert any("must not contain '..'" in e for e in operator_crd.validate(INVALID["dotdot pvc path"]))


def test_spec_is_immutable_except_the_job_controls() -> None:
    old = operator_crd.apply_defaults(base())
    changed_source = copy.deepcopy(old)
    changed_source["spec"]["source"] = {"url": "https://b.example/y.wav"}
    assert operator_crd.validate(changed_source, old)
    controls = copy.deepcopy(old)
    controls["spec"].update(
        suspend=True, priority=9, backoffLimit=1, activeDeadlineSeconds=5, ttlSecondsAfterFinished=1
    )
    assert operator_crd.validate(controls, old) == []
    changed_speakers = copy.deepcopy(old)
    changed_speakers["spec"]["diarization"] = {"enabled": True}
    assert operator_crd.validate(changed_speakers, old)
    changed_hooks = copy.deepcopy(old)
    changed_hooks["spec"]["notifications"] = [HOOK]
    assert operator_crd.validate(changed_hooks, old)


def test_manifest_of_another_kind_is_refused_with_a_clear_message() -> None:
    with pytest.raises(InvalidInputError, match="expected apiVersion omoai.io/v1alpha1 and kind TranscriptionJob"):
        load_manifest({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"}, "spec": {}})
    with pytest.raises(InvalidInputError, match="spec.source.url"):
        load_manifest(with_spec(source={"url": "ftp://x"}))
