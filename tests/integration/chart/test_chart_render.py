"""The Helm chart rendered by the real Helm: lint, every toggle combination, every built-in kind
valid for Kubernetes 1.29 (strict: unknown fields are errors), security defaults, the OMOAI_*
environment matching the settings classes exactly, and the operator's RBAC."""

from __future__ import annotations

import base64
import itertools
import json
import os
import subprocess
import sys
from typing import Any

import kubernetes_validate
import pytest
from chart_render import CHART, env_of, find, helm_template, one

pytestmark = pytest.mark.timeout(120)

TOGGLES = {
    "asr.enabled": (True, False),
    "llm.enabled": (True, False),
    "operator.enabled": (True, False),
    "auth.enabled": (False, True),
    "sharedStorage.enabled": (True, False),
    "metrics.serviceMonitor.enabled": (False, True),
    "metrics.podMonitor.enabled": (False, True),
    "metrics.prometheusRule.enabled": (False, True),
    "metrics.dashboards.enabled": (False, True),
    "asr.autoscaling.enabled": (False, True),
    "tests.enabled": (True, False),
}
#: An autoscaled ASR needs a cache more than one pod can mount (a ReadWriteOnce one is refused).
SCALABLE_CACHE = {"asr.modelCache.accessModes[0]": "ReadWriteMany"}
CUSTOM_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ClusterKopfPeering", "KopfPeering"}


def _validate(docs: list[dict[str, Any]], version: str) -> list[str]:
    errors = []
    for doc in docs:
        if doc["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {e.message} at {list(e.path)}")
    return errors


def test_helm_lint_passes_strictly(helm):
    proc = subprocess.run([str(helm), "lint", "--strict", str(CHART)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_default_values_render_every_component(render):
    docs = render()
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == sorted(
        [
            "ClusterKopfPeering",
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "NetworkPolicy",
            "PersistentVolumeClaim",
            "PodDisruptionBudget",
            "Pod",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ]
    )
    assert {d["metadata"]["name"] for d in find(docs, "Deployment")} == {"omoai-asr", "omoai-llm", "omoai-operator"}


@pytest.mark.parametrize("version", ["1.29.0", kubernetes_validate.utils.latest_version()])
def test_default_render_is_valid_kubernetes(render, version):
    assert _validate(render(), version) == []


def test_every_toggle_combination_renders_valid_manifests(render):
    # Each toggle alone against the defaults, then all-on and all-off: 2 x 10 + 2 renders.
    combos: list[dict[str, Any]] = []
    for key, (_default, other) in TOGGLES.items():
        combos.append({key: other})
    combos.append({k: True for k in TOGGLES})
    combos.append({k: False for k in TOGGLES})
    # Pairs of the components' enable switches (a release with any subset of components).
    for asr, llm, op in itertools.product((True, False), repeat=3):
        combos.append({"asr.enabled": asr, "llm.enabled": llm, "operator.enabled": op})
    for values in combos:
        if values.get("asr.autoscaling.enabled"):
            values = {**values, **SCALABLE_CACHE}
        docs = render(values)
        assert _validate(docs, "1.29.0") == [], values
        names = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs]
        assert len(names) == len(set(names)), f"duplicate resources for {values}"


def test_component_toggles_remove_their_resources(render):
    docs = render({"asr.enabled": False, "operator.enabled": False})
    assert not [d for d in docs if d["metadata"]["labels"].get("app.kubernetes.io/component") in ("asr", "operator")]
    assert one(docs, "Deployment", "omoai-llm")


def test_monitoring_toggles_render_prometheus_operator_objects(render):
    docs = render(
        {
            "metrics.serviceMonitor.enabled": True,
            "metrics.podMonitor.enabled": True,
            "metrics.prometheusRule.enabled": True,
            "metrics.dashboards.enabled": True,
            "metrics.labels.release": "kube-prometheus-stack",
            "metrics.podMonitor.labels.team": "ml",
        }
    )
    for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
        for doc in find(docs, kind):
            assert doc["metadata"]["labels"]["release"] == "kube-prometheus-stack", (
                kind,
                "kube-prometheus-stack selects by release",
            )
    assert one(docs, "PodMonitor", "omoai-operator")["metadata"]["labels"]["team"] == "ml"
    monitors = find(docs, "ServiceMonitor")
    assert {m["metadata"]["name"] for m in monitors} == {"omoai-asr", "omoai-llm"}
    assert all(m["spec"]["endpoints"][0]["port"] == "http" for m in monitors)
    assert one(docs, "PodMonitor", "omoai-operator")["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    dashboards = [c for c in find(docs, "ConfigMap") if "-dashboard-" in c["metadata"]["name"]]
    assert dashboards and all(d["metadata"]["labels"]["grafana_dashboard"] == "1" for d in dashboards)


def test_labels_follow_the_helm_create_scaffold(render):
    for doc in render():
        labels = doc["metadata"]["labels"]
        for key in (
            "helm.sh/chart",
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
        ):
            assert key in labels, (doc["kind"], doc["metadata"]["name"], key)
    for dep in find(render(), "Deployment"):
        selector = dep["spec"]["selector"]["matchLabels"]
        assert set(selector) == {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"}
        assert selector.items() <= dep["spec"]["template"]["metadata"]["labels"].items()


# -- security ---------------------------------------------------------------------------------------


def test_every_pod_runs_non_root_read_only_without_capabilities(render):
    for dep in find(render({"auth.enabled": True}), "Deployment"):
        pod = dep["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["enableServiceLinks"] is False, "service links inject OMOAI_*-prefixed variables"
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert "privileged" not in sc or sc["privileged"] is False
            mounts = {m["mountPath"] for m in c["volumeMounts"]}
            assert "/tmp" in mounts, "a read-only root needs a writable /tmp"


def test_services_do_not_mount_a_service_account_token_but_the_operator_does(render):
    docs = render()
    for name in ("omoai-asr", "omoai-llm"):
        assert one(docs, "Deployment", name)["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
        assert one(docs, "ServiceAccount", name)["automountServiceAccountToken"] is False
    assert one(docs, "Deployment", "omoai-operator")["spec"]["template"]["spec"]["automountServiceAccountToken"] is True


def test_network_policies_admit_the_operator_and_prometheus_only(render):
    docs = render()
    asr = one(docs, "NetworkPolicy", "omoai-asr")
    peers = asr["spec"]["ingress"][0]["from"]
    assert peers[0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    assert peers[1]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "helm-test"
    assert peers[2]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    assert len(peers) == 3
    without_tests = one(render({"tests.enabled": False}), "NetworkPolicy", "omoai-asr")["spec"]["ingress"][0]["from"]
    assert [
        p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") for p in without_tests
    ] == ["operator", None]
    op = one(docs, "NetworkPolicy", "omoai-operator")
    assert op["spec"]["ingress"][0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]


# -- the GPU services -------------------------------------------------------------------------------


def test_gpu_services_request_gpus_tolerate_the_taint_and_probe_the_right_paths(render):
    docs = render(
        asr__nodeSelector={"cloud.google.com/gke-nodepool": "asr-l4"},
        llm__nodeSelector={"cloud.google.com/gke-nodepool": "llm-a100"},
    )
    for name, pool in (("omoai-asr", "asr-l4"), ("omoai-llm", "llm-a100")):
        pod = one(docs, "Deployment", name)["spec"]["template"]["spec"]
        c = pod["containers"][0]
        assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        assert pod["nodeSelector"] == {"cloud.google.com/gke-nodepool": pool}
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["startupProbe"]["httpGet"]["path"] == "/readyz", "startup must cover the model load"
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        startup = c["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 900, "model loads take minutes"
        assert c["ports"][0]["containerPort"] == int(env_of(one(docs, "Deployment", name))["OMOAI_PORT"])


def test_cpu_mode_drops_gpu_requests_and_tolerations(render):
    docs = render({"asr.gpu.enabled": False, "asr.config.device": "cpu"})
    pod = one(docs, "Deployment", "omoai-asr")["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"].get("limits", {})
    assert "tolerations" not in pod
    assert env_of(one(docs, "Deployment", "omoai-asr"))["OMOAI_DEVICE"] == "cpu"


def test_big_numbers_reach_the_environment_as_whole_numbers(render):
    env = env_of(one(render(), "Deployment", "omoai-asr"))
    assert env["OMOAI_MAX_REQUEST_BYTES"] == "2147483648"
    assert env["OMOAI_LOG_FORMAT"] == "json"
    assert env["OMOAI_HOST"] == "0.0.0.0"


def test_model_cache_is_a_claim_by_default_and_the_token_a_mounted_secret(render):
    docs = render({"auth.enabled": True, "auth.token": "s3cret-token-of-24-chars"})
    claim = one(docs, "PersistentVolumeClaim", "omoai-asr-model-cache")
    assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
    dep = one(docs, "Deployment", "omoai-asr")
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volumes["model-cache"]["persistentVolumeClaim"]["claimName"] == "omoai-asr-model-cache"
    assert volumes["api-token"]["secret"]["secretName"] == "omoai-api-token"
    token_file = env_of(dep)["OMOAI_API_TOKEN_FILE"]
    assert token_file == "/var/run/secrets/omoai/token"
    op_env = env_of(one(docs, "Deployment", "omoai-operator"))
    assert op_env["OMOAI_ASR_API_TOKEN_FILE"] == op_env["OMOAI_LLM_API_TOKEN_FILE"] == token_file
    secret = one(docs, "Secret", "omoai-api-token")
    assert base64.b64decode(secret["data"]["token"]).decode() == "s3cret-token-of-24-chars"


def test_a_generated_token_is_long_and_random(render):
    secret = one(render({"auth.enabled": True}), "Secret", "omoai-api-token")
    assert len(base64.b64decode(secret["data"]["token"])) == 48


def test_shared_claims_are_mounted_alike_in_the_asr_service_and_the_operator(render):
    docs = render(sharedStorage__extraClaims=["podcasts"])
    asr, op = one(docs, "Deployment", "omoai-asr"), one(docs, "Deployment", "omoai-operator")
    asr_mounts = {m["mountPath"]: m for m in asr["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    op_mounts = {m["mountPath"]: m for m in op["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    volumes = json.loads(env_of(op)["OMOAI_VOLUMES"])
    assert volumes == {"omoai-shared": "/data/omoai-shared", "podcasts": "/data/podcasts"}
    for path in volumes.values():
        assert asr_mounts[path]["readOnly"] is True
        assert op_mounts[path]["readOnly"] is False
    assert env_of(asr)["OMOAI_FILE_ROOT"] == "/data"
    assert (
        one(docs, "PersistentVolumeClaim", "omoai-shared")["metadata"]["annotations"]["helm.sh/resource-policy"]
        == "keep"
    )


# -- the environment matches the settings classes exactly ------------------------------------------


def _settings_fields(module: str, cls: str) -> set[str]:
    mod = pytest.importorskip(module)
    return {f"OMOAI_{name.upper()}" for name in getattr(mod, cls).model_fields}


@pytest.mark.parametrize(
    ("deployment", "module", "cls"),
    [
        ("omoai-asr", "omoai_asr.settings", "AsrSettings"),
        ("omoai-llm", "omoai_llm.settings", "LlmSettings"),
        ("omoai-operator", "omoai_operator.settings", "OperatorSettings"),
    ],
)
def test_every_omoai_variable_the_chart_sets_is_a_real_setting(render, deployment, module, cls):
    fields = _settings_fields(module, cls)
    docs = render(
        {"auth.enabled": True, "operator.watchNamespaces[0]": "team-a", "llm.openaiApiKeySecret.name": "upstream"}
    )
    env = env_of(one(docs, "Deployment", deployment))
    unknown = sorted(k for k in env if k.startswith("OMOAI_") and k not in fields)
    assert unknown == [], f"{deployment} sets variables {cls} does not read: {unknown}"


def test_chart_environment_passes_the_settings_validation(render, tmp_path):
    """The rendered environment of each component loads with its own settings class."""
    docs = render()
    for deployment, module, cls in (
        ("omoai-asr", "omoai_asr.settings", "AsrSettings"),
        ("omoai-llm", "omoai_llm.settings", "LlmSettings"),
        ("omoai-operator", "omoai_operator.settings", "OperatorSettings"),
    ):
        mod = pytest.importorskip(module)
        env = {
            k: v
            for k, v in env_of(one(docs, "Deployment", deployment)).items()
            if k.startswith("OMOAI_") and isinstance(v, str)
        }
        if "OMOAI_FILE_ROOT" in env:  # must exist: in the pod it is the shared volume's mount
            env["OMOAI_FILE_ROOT"] = str(tmp_path)
        code = (
            "import os, sys, importlib; from omoai_core.settings import load_settings;"
            f"m = importlib.import_module({module!r}); load_settings(getattr(m, {cls!r}))"
        )
        clean = {k: v for k, v in os.environ.items() if not k.startswith("OMOAI_")}
        proc = subprocess.run(
            [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, f"{deployment}: {proc.stderr[-2000:]}"
        assert mod is not None


# -- the operator ---------------------------------------------------------------------------------


def _rules(doc: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (g, r, v) for rule in doc["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
    }


OPERATOR_NEEDS = {("omoai.io", "transcriptionjobs", v) for v in ("get", "list", "watch", "patch", "delete")} | {
    ("omoai.io", "transcriptionjobs/status", "get"),
    ("omoai.io", "transcriptionjobs/status", "patch"),
    ("", "events", "create"),
}
SECRETS = {("", "secrets", "get")}
CLUSTER_SCANNING = {
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    ("", "namespaces", "list"),
    ("", "namespaces", "watch"),
}


def test_cluster_wide_operator_rbac_is_exactly_what_it_needs(render):
    docs = render()
    role = one(docs, "ClusterRole", "omoai-operator")
    peering = {("kopf.dev", "clusterkopfpeerings", v) for v in ("get", "list", "watch", "patch")}
    assert _rules(role) == OPERATOR_NEEDS | CLUSTER_SCANNING | peering, "Secrets are not readable cluster-wide"
    binding = one(docs, "ClusterRoleBinding", "omoai-operator")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "omoai-operator", "namespace": "omoai"}]
    secrets = one(docs, "Role", "omoai-operator-secrets")
    assert secrets["metadata"]["namespace"] == "omoai" and _rules(secrets) == SECRETS
    assert one(docs, "RoleBinding", "omoai-operator-secrets")["subjects"] == binding["subjects"]
    assert (
        one(docs, "ClusterKopfPeering", "omoai")["metadata"]["annotations"]["helm.sh/hook"]
        == "post-install,post-upgrade"
    )


def test_operator_reads_secrets_in_more_namespaces_or_cluster_wide_only_when_asked(render):
    docs = render(operator__rbac__secretNamespaces=["media"])
    assert {r["metadata"]["namespace"] for r in find(docs, "Role")} == {"omoai", "media"}
    wide = render({"operator.rbac.clusterWideSecrets": True})
    assert SECRETS <= _rules(one(wide, "ClusterRole", "omoai-operator"))
    assert find(wide, "Role") == []


def test_namespaced_operator_gets_a_role_per_watched_namespace(render):
    docs = render(operator__watchNamespaces=["team-a", "team-b"])
    assert _rules(one(docs, "ClusterRole", "omoai-operator")) == CLUSTER_SCANNING
    roles = [r for r in find(docs, "Role") if r["metadata"]["name"] == "omoai-operator"]
    assert {r["metadata"]["namespace"] for r in roles} == {"team-a", "team-b"}
    assert _rules(one(docs, "Role", "omoai-operator-secrets")) == SECRETS  # the release namespace
    peering = {("kopf.dev", "kopfpeerings", v) for v in ("get", "list", "watch", "patch")}
    for role in roles:
        assert _rules(role) == OPERATOR_NEEDS | peering | SECRETS
    assert {p["metadata"]["namespace"] for p in find(docs, "KopfPeering")} == {"team-a", "team-b"}
    env = env_of(one(docs, "Deployment", "omoai-operator"))
    assert env["OMOAI_NAMESPACES"] == '["team-a","team-b"]'


def test_operator_reaches_the_release_services_and_never_overlaps_itself(render):
    docs = render()
    dep = one(docs, "Deployment", "omoai-operator")
    env = env_of(dep)
    assert env["OMOAI_ASR_URL"] == "http://omoai-asr.omoai.svc:8000"
    assert env["OMOAI_LLM_URL"] == "http://omoai-llm.omoai.svc:8000"
    assert env["OMOAI_PEERING_STANDALONE"] == "false"
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["omoai", "operator"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "9090"


# -- values that are refused ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"asr.config.device": "gpu"}, "asr.config.device"),
        ({"asr.replicaCount": -1}, "replicaCount"),
        ({"llm.config.backend": "llamacpp"}, "backend"),
        ({"asr.config.dtype": "int8"}, "dtype"),
        ({"asr.probes.startup.failureThreshold": 0}, "failureThreshold"),
        ({"asr.cofnig.model": "x"}, "cofnig"),
        ({"logging.format": "xml"}, "format"),
        ({"auth.token": "short"}, "token"),
        ({"operator.replicaCount": 3}, "replicaCount"),
        ({"asr.resources.requests.memory": "lots"}, "memory"),
        ({"asr.modelCache.type": "hostPath"}, "type"),
        ({"sharedStorage.mountPath": "data"}, "mountPath"),
        ({"asr.image.digest": "latest"}, "digest"),
    ],
)
def test_schema_rejects_bad_values_with_a_message_naming_them(helm, values, message):
    proc = helm_template(helm, values)
    assert proc.returncode != 0, f"{values} was accepted"
    assert message in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"asr.gpu.enabled": False}, 'asr.config.device is "cuda" but asr.gpu.enabled is false'),
        ({"llm.config.device": "cpu"}, "llm.config.device is cpu but llm.gpu.enabled"),
        ({"asr.modelCache.type": "pvc", "asr.replicaCount": 2}, "cannot share"),
        (
            {"asr.autoscaling.enabled": True, "asr.autoscaling.minReplicas": 5, "asr.modelCache.type": "emptyDir"},
            "minReplicas",
        ),
    ],
)
def test_contradictory_values_fail_with_a_clear_message(helm, values, message):
    proc = helm_template(helm, values)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


def test_values_schema_is_in_sync_with_values_yaml():
    proc = subprocess.run(
        [sys.executable, str(CHART / "hack" / "gen_schema.py"), "--check"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


def test_schema_generator_refuses_an_undocumented_value():
    sys.path.insert(0, str(CHART / "hack"))
    try:
        import gen_schema
    finally:
        sys.path.pop(0)
    with pytest.raises(gen_schema.SchemaError, match="asr.secret has no comment"):
        gen_schema.generate("# The ASR service.\nasr:\n  # Deploy it.\n  enabled: true\n  secret: 1\n")
    schema = gen_schema.generate('# Port.\n# @schema {"minimum": 1024}\nport: 8000\n')
    assert schema["properties"]["port"] == {"description": "Port.", "type": "integer", "minimum": 1024}
