"""Queue-driven scaling in the chart: KEDA ScaledObjects validated against KEDA's own CRD schema
(vendored in tests/data/keda), prometheus-adapter rules validated against the structure the adapter
decodes strictly (tests/data/prometheus-adapter), HPAs and RBAC against Kubernetes' schemas, all off
by default, and contradictory settings refused with a message."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from chart_render import REPO, env_of, find, helm_template, one

from tests.support import operator_crd  # the project's openAPIV3Schema -> JSON Schema translation

pytestmark = pytest.mark.timeout(120)

DATA = REPO / "tests" / "data"
#: More than one replica needs a model cache more than one pod can mount (a ReadWriteOnce claim is refused).
SHARED_CACHE = {"asr.modelCache.accessModes[0]": "ReadWriteMany", "llm.modelCache.accessModes[0]": "ReadWriteMany"}
SCALED = {"autoscaling.asr.keda.enabled": True, "autoscaling.llm.keda.enabled": True, **SHARED_CACHE}


def keda_validator() -> jsonschema.Draft202012Validator:
    crd = yaml.safe_load((DATA / "keda" / "keda.sh_scaledobjects.yaml").read_text())
    return jsonschema.Draft202012Validator(operator_crd.json_schema(crd))


def adapter_validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((DATA / "prometheus-adapter" / "config.schema.json").read_text()))


def _errors(v: jsonschema.Draft202012Validator, doc: Any) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(doc)]


def test_nothing_scales_on_the_queue_by_default_but_discovery_is_on(render):
    docs = render()
    assert find(docs, "ScaledObject") == [] and find(docs, "HorizontalPodAutoscaler") == []
    assert not [d for d in find(docs, "ConfigMap") if d["metadata"]["name"].endswith("prometheus-adapter")]
    env = env_of(one(docs, "Deployment", "omoai-operator"))
    assert env["OMOAI_ENDPOINT_DISCOVERY"] == "true"
    assert env["OMOAI_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    for name in ("omoai-asr", "omoai-llm"):
        assert one(docs, "Deployment", name)["spec"]["replicas"] == 1


def test_scaled_objects_follow_keda_crd_schema_and_scale_from_zero_on_queue_plus_in_flight(render):
    docs = render(SCALED)
    validator = keda_validator()
    objs = {d["metadata"]["name"]: d for d in find(docs, "ScaledObject")}
    assert set(objs) == {"omoai-asr", "omoai-llm"}
    for name, so in objs.items():
        assert so["apiVersion"] == "keda.sh/v1alpha1"
        assert _errors(validator, so) == []
        spec = so["spec"]
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert spec["minReplicaCount"] == 0 and spec["maxReplicaCount"] == 4
        (trigger,) = spec["triggers"]
        service = name.removeprefix("omoai-")
        assert trigger["type"] == "prometheus"
        # Live sessions bypass the queue: the ASR signal adds them, 4 (asr.config.realtimeSessionsPerSlot) a slot.
        live = " + (sum(omoai_asr_realtime_sessions_open{}) or vector(0)) / 4" if service == "asr" else ""
        assert trigger["metadata"]["query"] == (
            f'sum(omoai_operator_queue_depth{{service="{service}"}}) + sum(omoai_operator_in_flight{{service="{service}"}})'
            + live
        )
        assert trigger["metadata"]["activationThreshold"] == "0"  # one queued job wakes a service at zero
        # The Deployment's replica count belongs to the scaler now.
        assert "replicas" not in one(docs, "Deployment", name)["spec"]
    # One replica's worth of stages per replica: the service's own maxConcurrency.
    assert objs["omoai-asr"]["spec"]["triggers"][0]["metadata"]["threshold"] == "16"
    assert objs["omoai-llm"]["spec"]["triggers"][0]["metadata"]["threshold"] == "4"


def test_keda_schema_check_refuses_what_keda_would_refuse(render):
    """The vendored schema is not a rubber stamp: KEDA's own constraints bite."""
    so = one(render(SCALED), "ScaledObject", "omoai-asr")
    validator = keda_validator()
    bad = json.loads(json.dumps(so))
    bad["spec"]["triggers"][0]["metadata"]["threshold"] = 16  # trigger metadata are strings
    assert any("threshold" in e for e in _errors(validator, bad))
    bad = json.loads(json.dumps(so))
    bad["spec"]["minReplicas"] = 0  # the HPA's name, not KEDA's
    assert _errors(validator, bad)
    bad = json.loads(json.dumps(so))
    del bad["spec"]["triggers"]
    assert any("triggers" in e for e in _errors(validator, bad))


def test_selector_target_and_authentication_reach_the_trigger(render):
    docs = render(
        {
            **SCALED,
            "autoscaling.asr.targetPerReplica": 6,
            "autoscaling.keda.authenticationRef": "prom-auth",
            "autoscaling.asr.keda.minReplicaCount": 1,
        }
    )
    so = one(docs, "ScaledObject", "omoai-asr")
    (trigger,) = so["spec"]["triggers"]
    assert trigger["metadata"]["threshold"] == "6" and trigger["authenticationRef"] == {"name": "prom-auth"}
    assert so["spec"]["minReplicaCount"] == 1
    assert _errors(keda_validator(), so) == []
    docs = render(SCALED, autoscaling__prometheus__operatorSelector='namespace="omoai"')
    query = one(docs, "ScaledObject", "omoai-llm")["spec"]["triggers"][0]["metadata"]["query"]
    assert 'omoai_operator_queue_depth{service="llm",namespace="omoai"}' in query


def _adapter_config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    cm = one(docs, "ConfigMap", "omoai-prometheus-adapter")
    return yaml.safe_load(cm["data"]["config.yaml"])


def test_prometheus_adapter_rules_and_hpas_serve_the_same_signal_without_keda(render, version="1.29"):
    docs = render(
        {
            "autoscaling.prometheusAdapter.rules": True,
            "autoscaling.asr.hpa.enabled": True,
            "autoscaling.llm.hpa.enabled": True,
            **SHARED_CACHE,
        }
    )
    config = _adapter_config(docs)
    assert _errors(adapter_validator(), config) == []
    rule, live = config["externalRules"]
    assert live["name"]["as"] == "omoai_asr_live_demand"  # live ASR sessions bypass the queue
    assert live["metricsQuery"] == "sum(omoai_asr_realtime_sessions_open{<<.LabelMatchers>>}) / 4"
    assert rule["name"]["as"] == "omoai_operator_demand"
    assert re.fullmatch(rule["name"]["matches"], "omoai_operator_queue_depth")
    assert "<<.LabelMatchers>>" in rule["metricsQuery"] and "omoai_operator_in_flight" in rule["metricsQuery"]
    assert find(docs, "ScaledObject") == []
    for name in ("omoai-asr", "omoai-llm"):
        hpa = one(docs, "HorizontalPodAutoscaler", name)
        kubernetes_validate.validate(hpa, version, strict=True)
        metric, *live_metric = hpa["spec"]["metrics"]
        assert [m["external"]["metric"]["name"] for m in live_metric] == (
            ["omoai_asr_live_demand"] if name == "omoai-asr" else []
        )
        assert metric["type"] == "External"
        assert metric["external"]["metric"] == {
            "name": "omoai_operator_demand",
            "selector": {"matchLabels": {"service": name.removeprefix("omoai-")}},
        }
        assert metric["external"]["target"]["type"] == "AverageValue"
        assert "replicas" not in one(docs, "Deployment", name)["spec"]


def test_adapter_schema_check_refuses_unknown_keys_as_the_adapter_does(render):
    config = _adapter_config(render({"autoscaling.prometheusAdapter.rules": True}))
    config["externalRules"][0]["metricQuery"] = "typo"  # UnmarshalStrict refuses unknown fields
    assert _errors(adapter_validator(), config)
    config = _adapter_config(render({"autoscaling.prometheusAdapter.rules": True}))
    config["externalRules"][0]["seriesFilters"] = [{"is": "a", "isNot": "b"}]  # one of the two only
    assert _errors(adapter_validator(), config)


def test_operator_may_list_and_watch_endpointslices_in_the_release_namespace_only(render, version="1.29"):
    docs = render()
    role = one(docs, "ClusterRole", "omoai-operator-endpoints")
    assert role["rules"] == [
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}
    ]
    binding = one(docs, "RoleBinding", "omoai-operator-endpoints")
    assert binding["metadata"]["namespace"] == "omoai"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "omoai-operator-endpoints",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "omoai-operator", "namespace": "omoai"}]
    for doc in (role, binding):
        kubernetes_validate.validate(doc, version, strict=True)
    off = render({"autoscaling.endpointDiscovery": False})
    assert find(off, "RoleBinding") == [] or all(
        b["metadata"]["name"] != "omoai-operator-endpoints" for b in find(off, "RoleBinding")
    )
    assert env_of(one(off, "Deployment", "omoai-operator"))["OMOAI_ENDPOINT_DISCOVERY"] == "false"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"autoscaling.asr.keda.enabled": True, "autoscaling.asr.hpa.enabled": True}, "keda or hpa, not both"),
        ({"autoscaling.asr.keda.enabled": True, "asr.autoscaling.enabled": True}, "enable only one"),
        (
            {"autoscaling.llm.hpa.enabled": True, "autoscaling.endpointDiscovery": False},
            "needs autoscaling.endpointDiscovery",
        ),
        ({"autoscaling.asr.keda.enabled": True, "autoscaling.asr.keda.minReplicaCount": 5}, "above maxReplicaCount"),
        ({"autoscaling.asr.keda.minReplicaCount": -1}, "minReplicaCount"),
    ],
)
def test_contradictory_scaling_values_fail_with_a_clear_message(helm, values, message):
    proc = helm_template(helm, {**values, **SHARED_CACHE})
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_every_scaling_combination_renders_valid_kubernetes(render, tmp_path: Path):
    for values in (
        {},
        SCALED,
        {"autoscaling.asr.hpa.enabled": True, "autoscaling.prometheusAdapter.rules": True, **SHARED_CACHE},
        {**SCALED, "autoscaling.prometheusAdapter.rules": True, "auth.enabled": True},
    ):
        for doc in render(values):
            if doc["kind"] in (
                "ScaledObject",
                "ClusterKopfPeering",
                "KopfPeering",
                "ServiceMonitor",
                "PodMonitor",
                "PrometheusRule",
            ):
                continue
            kubernetes_validate.validate(doc, "1.29", strict=True)
