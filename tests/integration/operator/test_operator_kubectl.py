"""What a user does with kubectl, against the emulator serving the real CRD: apply an example,
watch it finish, read the printer columns' fields, delete it; and what the API rejects outright.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from operator_harness import HERE, TJ, Kube, job, operator_env, proxies_for, run_operator

from tests.support import operator_crd
from tests.support.operator_services import StubServices

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

EXAMPLES = HERE.parents[2] / "examples"


def kubectl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("kubectl")
    assert exe is not None, "kubectl is part of the test environment (see shared notes)"
    res = subprocess.run([exe, *args], capture_output=True, text=True, timeout=90, check=False)
    if check and res.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} exited {res.returncode}: {res.stderr}{res.stdout}")
    return res


def test_kubectl_apply_get_delete_an_example_through_the_emulator(
    kube: Kube,
    kubeconfig: Path,
    stubs: StubServices,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    manifest = yaml.safe_load((EXAMPLES / "transcriptionjob-url.yaml").read_text())
    manifest["spec"]["output"]["pvc"]["path"] = f"{data_dir.name}/results"
    manifest["spec"].pop("ttlSecondsAfterFinished")
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(manifest))
    name = manifest["metadata"]["name"]
    with (
        proxies_for(stubs.url, stubs.url) as (asr, llm),
        run_operator(operator_env(asr.url, llm.url, data_dir.parent), monkeypatch),
    ):
        assert "transcriptionjobs" in kubectl("api-resources", "--api-group=omoai.io").stdout
        out = kubectl("apply", "--validate=false", "-f", str(path)).stdout
        assert f"transcriptionjob.omoai.io/{name} created" in out
        kube.wait_phase(name, "Succeeded", "Failed")
        got = json.loads(kubectl("get", "tj", name, "-o", "json").stdout)
        # Printer columns: kubectl needs server-side tables for them, which the emulator does not
        # serve; read each column's jsonPath instead.
        columns = {
            c["name"]: c["jsonPath"] for c in operator_crd.load_crd()["spec"]["versions"][0]["additionalPrinterColumns"]
        }
        values = {n: kubectl("get", "tj", name, "-o", f"jsonpath={{{p}}}").stdout for n, p in columns.items()}
        listed = kubectl("get", "transcriptionjobs", "-o", "name").stdout.split()
        out = kubectl("delete", "tj", name, "--timeout=30s").stdout
        assert kube.get(name) is None
    assert got["status"]["phase"] == "Succeeded"
    assert got["spec"]["language"] == "vi" and got["spec"]["suspend"] is False  # server-side defaults
    assert got["spec"]["asr"]["chunkSize"] == 64
    assert values["Phase"] == "Succeeded" and values["Progress"] == "100%" and values["Audio"] == "0:00:02"
    assert float(values["RTF"]) > 0 and values["Age"].endswith("Z")
    assert listed == [f"transcriptionjob.omoai.io/{name}"]
    assert f'transcriptionjob.omoai.io "{name}" deleted' in out
    assert sorted(p.name for p in (data_dir / "results").iterdir()) == [
        f"{name}.{f}" for f in ("json", "md", "srt", "vtt")
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"source": {"url": "https://a.example/x.wav", "pvc": {"claimName": "d", "path": "x.wav"}}},
            "exactly one audio source",
        ),
        ({"source": {}}, "exactly one audio source"),
        ({"source": {"url": "ftp://a.example/x.wav"}}, "spec.source.url"),
        ({"source": {"pvc": {"claimName": "omoai-data", "path": "../etc/passwd"}}}, "must not contain '..'"),
        ({"output": {"formats": ["json"]}}, "exactly one output destination"),
        ({"output": {"pvc": {"claimName": "d", "path": "o"}, "formats": ["docx"]}}, "spec.output.formats.0"),
        ({"output": {"pvc": {"claimName": "d", "path": "o"}, "formats": []}}, "spec.output.formats"),
        ({"backoffLimit": -1}, "spec.backoffLimit"),
        ({"priority": 5000}, "spec.priority"),
        ({"postprocess": {"summary": "long"}}, "spec.postprocess.summary"),
        ({"language": "Vietnamese"}, "spec.language"),
        ({"asr": {"chunkSize": 0}}, "spec.asr.chunkSize"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_the_api_rejects_invalid_specs_with_the_crd_schema(kube: Kube, change: dict, message: str) -> None:
    body = job("invalid")
    body["spec"].update(change)
    resp = kube.try_create(body)
    assert resp.status_code == 422, resp.text
    assert message in resp.json()["message"]
    assert kube.get("invalid") is None


def test_the_api_refuses_changing_the_source_but_allows_suspend_and_priority(kube: Kube) -> None:
    kube.create(job("fixed"))
    r = kube.http.patch(
        f"{kube.base}/fixed",
        json={"spec": {"source": {"url": "https://other.example/y.wav"}}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 422 and "only suspend, priority" in r.json()["message"]
    updated = kube.patch_spec("fixed", {"suspend": True, "priority": 7})
    assert updated["metadata"]["generation"] == 2 and updated["spec"]["priority"] == 7
    assert TJ.plural == "transcriptionjobs"
