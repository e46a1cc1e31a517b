"""The system test's short form (``make system`` runs the full one): the whole platform on loopback
under load and every fault, checked for lost, duplicated, partial or leaked work."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.system.harness import run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_the_platform_under_load_and_faults_loses_nothing_and_leaves_nothing(tmp_path: Path) -> None:
    report = run(16, tmp_path)
    print(report.table())
    assert report.problems == []
    assert report.leftovers == []
    assert sorted(report.faults.survived) == sorted(report.faults.injected) and len(report.faults.injected) == 8
    assert report.outcomes["Succeeded"] == 22 and report.outcomes["Deleted"] == 3
    assert all(v == "ok" for *_, v in report.tour) and len(report.tour) == 19
    assert [m for m, *_, v in report.prometheus if v == "ok"][:3] == [
        "jobs{phase=Succeeded}",
        "jobs{phase=Failed}",
        "ASR audio seconds (live replicas)",
    ]
