"""Peering priority: explicit values win; otherwise replicas draw distinct random ones."""

from __future__ import annotations

from omoai_operator.cli import peering_priority


def test_explicit_priority_wins_over_setting_and_random():
    assert peering_priority(7, 3) == 7
    assert peering_priority(None, 3) == 3


def test_unset_priority_is_random_so_two_replicas_do_not_tie():
    drawn = {peering_priority(None, None) for _ in range(20)}
    assert len(drawn) > 1
    assert all(p >= 1 for p in drawn)
