"""Alerts and dashboards: promtool checks and unit-tests the rules, the PrometheusRule the chart
renders carries exactly the rule file, the dashboard is valid Grafana JSON, and every omoai_*
metric either of them names is defined in the Python sources."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from chart_render import CHART, REPO, one

pytestmark = pytest.mark.timeout(120)

RULES = CHART / "alerts" / "omoai-rules.yaml"
RULE_TESTS = sorted((CHART / "alerts" / "tests").glob("*.yaml"))
DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
SOURCES = [*REPO.glob("libs/*/src/**/*.py"), *REPO.glob("services/*/src/**/*.py"), *REPO.glob("operator/src/**/*.py")]
SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_info", "_created")


def test_promtool_accepts_the_rule_file(promtool):
    proc = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_alert_unit_tests_pass(promtool):
    assert RULE_TESTS, "no promtool unit tests under alerts/tests/"
    proc = subprocess.run(
        [promtool, "test", "rules", *map(str, RULE_TESTS)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_has_a_unit_test_severity_and_summary():
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    alerts = {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}
    tested = set()
    for path in RULE_TESTS:
        for t in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            tested |= {a["alertname"] for a in t.get("alert_rule_test", []) if a.get("exp_alerts")}
    required = {
        "OmoaiAsrDown",
        "OmoaiLlmDown",
        "OmoaiOperatorDown",
        "OmoaiAsrHighErrorRatio",
        "OmoaiLlmHighErrorRatio",
        "OmoaiServiceQueueSaturated",
        "OmoaiAsrLatencyHigh",
        "OmoaiLlmLatencyHigh",
        "OmoaiGpuCacheClearsOutsideModelSwitch",
        "OmoaiOperatorReconcileErrors",
        "OmoaiJobsFailing",
        "OmoaiJobsStuckQueued",
    }
    assert required <= alerts.keys()
    assert sorted(alerts.keys() - tested) == [], "alerts without a firing unit test"
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        assert rule["annotations"]["summary"], name


def test_prometheus_rule_carries_the_rule_file_unchanged(render):
    docs = render({"metrics.prometheusRule.enabled": True})
    rule = one(docs, "PrometheusRule", "omoai")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_valid_grafana_json_with_unique_panels(path: Path):
    dash = json.loads(path.read_text(encoding="utf-8"))
    assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
    panels = dash["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "namespace"} <= variables
    for p in panels:
        if p["type"] == "row":
            continue
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["expr"].count("(") == t["expr"].count(")"), (p["title"], t["expr"])
            assert 'namespace=~"$namespace"' in t["expr"], (p["title"], "panel ignores the namespace variable")
        pos = p["gridPos"]
        assert pos["x"] + pos["w"] <= 24


def test_dashboard_covers_the_signals_an_operator_needs():
    exprs = " ".join(t["expr"] for p in json.loads(DASHBOARDS[0].read_text())["panels"] for t in p.get("targets", []))
    for needle in (
        "omoai_asr_audio_seconds_total",
        'omoai_inference_duration_seconds_sum{namespace=~"$namespace",task="transcribe"}',
        "histogram_quantile(0.99",
        "omoai_asr_requests_total",
        "omoai_asr_queue_depth",
        "omoai_asr_requests_in_flight",
        "omoai_asr_batch_size",
        "omoai_gpu_cache_clears_total",
        "omoai_gpu_memory_allocated_bytes",
        "omoai_llm_tokens_total",
        "omoai_llm_model_switches_total",
        "omoai_operator_jobs",
        "omoai_operator_job_duration_seconds",
        "omoai_operator_retries_total",
        "omoai_operator_queue_depth",
        "omoai_operator_queue_wait_seconds",
        "omoai_operator_reconcile_errors_total",
    ):
        assert needle in exprs, needle


def _defined_metric_patterns() -> list[re.Pattern[str]]:
    """Every string literal that names an omoai_ metric in the sources, as a regex (f-string
    placeholders such as omoai_{service}_queue_depth match any name part)."""
    patterns = []
    literal = re.compile(r"""f?["'](omoai_[a-z0-9_{}]+)["']""")
    for path in SOURCES:
        for name in literal.findall(path.read_text(encoding="utf-8")):
            regex = re.sub(r"\\\{[^}]*\\\}", "[a-z0-9]+", re.escape(name))
            patterns.append(re.compile(regex))
    return patterns


def _used_metric_names() -> dict[str, str]:
    used: dict[str, str] = {}
    token = re.compile(r"\b(omoai_[a-z0-9_]+)\b")
    for expr in _rule_exprs() + _dashboard_exprs():
        for name in token.findall(expr):
            used.setdefault(name, expr)
    return used


def _rule_exprs() -> list[str]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [r["expr"] for g in groups for r in g["rules"]]


def _dashboard_exprs() -> list[str]:
    exprs = []
    for path in DASHBOARDS:
        dash = json.loads(path.read_text(encoding="utf-8"))
        exprs += [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
        exprs += [v.get("definition", "") for v in dash["templating"]["list"]]
    return exprs


def _base_names(name: str) -> set[str]:
    names = {name}
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            names.add(name[: -len(suffix)])
    # histogram series of a *_seconds metric: omoai_x_seconds_bucket -> omoai_x_seconds
    return names


def test_every_metric_in_dashboards_and_alerts_is_defined_in_the_sources():
    patterns = _defined_metric_patterns()
    assert len(patterns) > 10, "found no metric definitions: is the source layout as expected?"
    used = _used_metric_names()
    assert len(used) > 15
    undefined = {
        name: expr
        for name, expr in used.items()
        if not any(p.fullmatch(base) for base in _base_names(name) for p in patterns)
    }
    assert undefined == {}, f"metrics no source defines: {sorted(undefined)}"


def test_metric_check_catches_a_made_up_name():
    patterns = _defined_metric_patterns()
    assert not any(p.fullmatch(b) for b in _base_names("omoai_asr_made_up_total") for p in patterns)
    assert any(p.fullmatch(b) for b in _base_names("omoai_llm_queue_depth") for p in patterns)


def test_every_alert_links_a_runbook_section_that_says_what_to_check_and_do():
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    text = (REPO / "docs" / "runbooks.md").read_text(encoding="utf-8")
    sections = {m.group(1): m.group(2) for m in re.finditer(r"(?ms)^## (\w+)\n(.*?)(?=^## |\Z)", text)}
    for rule in (r for g in groups for r in g["rules"] if "alert" in r):
        name = rule["alert"]
        url = rule["annotations"]["runbook_url"]
        assert url == f"https://github.com/omoai/omoai/blob/main/docs/runbooks.md#{name.lower()}", name
        assert name in sections, f"docs/runbooks.md has no section for {name}"
        body = sections[name]
        for part in ("**Means**", "**Check**", "**Do**"):
            assert part in body, (name, part)
    alerts = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    assert set(sections) == alerts, "runbook sections for alerts that do not exist"
