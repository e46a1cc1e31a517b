"""The promtool unit tests of the alerts are strong enough to notice a broken rule: for every
alert, weakening any threshold it compares against (doubling it; 0 becomes 1), loosening it to
`>= 0` (an alert that fires on everything: only a quiet case below the threshold notices), or
removing its `for:` must make `promtool test rules` fail. A mutation the tests survive is named in
the failure."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from chart_render import CHART

pytestmark = pytest.mark.timeout(300)

RULES = CHART / "alerts" / "omoai-rules.yaml"
TESTS = sorted((CHART / "alerts" / "tests").glob("*.yaml"))
#: A comparison against a number: `> 0.05`, `>= 3` (the thresholds an alert fires above).
THRESHOLD = re.compile(r"(?P<op>>=|>)\s*(?P<num>\d+(?:\.\d+)?)(?![\w.])")


def _weaker(number: str) -> str:
    value = float(number)
    return "1" if value == 0 else format(value * 2, "g")


def mutations(groups: list[dict]) -> list[tuple[str, list[dict]]]:
    """(description, mutated rule groups) for every threshold and every `for:` of every alert."""
    out = []
    for gi, group in enumerate(groups):
        for ri, rule in enumerate(group["rules"]):
            if "alert" not in rule:
                continue
            name = rule["alert"]
            for m in THRESHOLD.finditer(rule["expr"]):
                mutated = yaml.safe_load(yaml.safe_dump(groups))
                expr = rule["expr"][: m.start("num")] + _weaker(m["num"]) + rule["expr"][m.end("num") :]
                mutated[gi]["rules"][ri]["expr"] = expr
                out.append((f"{name}: {m['op']} {m['num']} -> {_weaker(m['num'])} (at {m.start()})", mutated))
                if m["op"] != ">=" or m["num"] != "0":
                    mutated = yaml.safe_load(yaml.safe_dump(groups))
                    mutated[gi]["rules"][ri]["expr"] = rule["expr"][: m.start()] + ">= 0" + rule["expr"][m.end() :]
                    out.append((f"{name}: {m['op']} {m['num']} -> >= 0 (at {m.start()})", mutated))
            if "for" in rule:
                mutated = yaml.safe_load(yaml.safe_dump(groups))
                del mutated[gi]["rules"][ri]["for"]
                out.append((f"{name}: without for: {rule['for']}", mutated))
    return out


def _promtool_passes(promtool: str, groups: list[dict], workdir: Path) -> bool:
    rules = workdir / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False), encoding="utf-8")
    tests = []
    for path in TESTS:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        doc["rule_files"] = [str(rules)]
        t = workdir / path.name
        t.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        tests.append(str(t))
    proc = subprocess.run([promtool, "test", "rules", *tests], capture_output=True, text=True, timeout=120, check=False)
    return proc.returncode == 0


def test_every_alert_has_a_threshold_or_for_to_mutate():
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    alerts = {r["alert"] for g in groups for r in g["rules"] if "alert" in r}
    mutated = {d.split(":")[0] for d, _ in mutations(groups)}
    assert mutated == alerts


def test_the_unmutated_rules_pass_through_the_same_harness(promtool, tmp_path):
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    assert _promtool_passes(promtool, groups, tmp_path)


def test_promtool_tests_catch_every_weakened_threshold_and_removed_for(promtool, tmp_path):
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    cases = mutations(groups)
    assert len(cases) >= 25

    def survives(i: int) -> bool:
        workdir = tmp_path / str(i)
        workdir.mkdir()
        try:
            return _promtool_passes(promtool, cases[i][1], workdir)
        finally:
            shutil.rmtree(workdir)

    # promtool processes run side by side (each is one subprocess; threads only wait on them)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        passed = list(pool.map(survives, range(len(cases))))
    survived = [description for (description, _), ok in zip(cases, passed, strict=True) if ok]
    assert survived == [], f"mutations the alert tests do not notice: {survived}"


def test_a_mutation_is_really_applied():
    groups = [{"name": "g", "rules": [{"alert": "A", "expr": "x > 0.05 and y >= 3", "for": "5m"}]}]
    got = {d: m[0]["rules"][0] for d, m in mutations(groups)}
    assert got["A: > 0.05 -> 0.1 (at 2)"]["expr"] == "x > 0.1 and y >= 3"
    assert got["A: >= 3 -> 6 (at 15)"]["expr"] == "x > 0.05 and y >= 6"
    assert got["A: > 0.05 -> >= 0 (at 2)"]["expr"] == "x >= 0 and y >= 3"
    assert got["A: >= 3 -> >= 0 (at 15)"]["expr"] == "x > 0.05 and y >= 0"
    assert "for" not in got["A: without for: 5m"]
