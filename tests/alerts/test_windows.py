"""Burn-rate tiers adapted to the target, the SLO kind and sparse time slices."""

from __future__ import annotations

import logging

import pytest

from alerts.windows import (
    Tier,
    adapt_to_target,
    drop_sparse_tiers,
    max_burn_rate,
    recording_windows,
    severities_for_kind,
)

H = 3600
WORKBOOK = (Tier("page", H, 300, 14.4), Tier("page", 6 * H, 1800, 6.0),
            Tier("ticket", 24 * H, 2 * H, 3.0), Tier("ticket", 72 * H, 6 * H, 1.0))

ADAPTED = [
    # sentence, budget, expected factors
    ("a 99.9% target keeps the workbook factors", 0.001, [14.4, 6, 3, 1]),
    ("a 95% target (max 20x) keeps them too", 0.05, [14.4, 6, 3, 1]),
    ("a 90% target (max 10x) lowers 14.4x to 8x", 0.1, [8, 6, 3, 1]),
    ("an 85% target (max 6.67x) lowers 14.4x to the next tier's 6x", 0.15, [6, 6, 3, 1]),
    ("a 93% target (max 14.29x) lowers 14.4x to 11.42x", 0.07, [11.42, 6, 3, 1]),
    ("a 70% target (max 3.33x) lowers the three fast tiers to 3x", 0.3, [3, 3, 3, 1]),
    ("a 10% target (max 1.11x) lowers every tier below the maximum", 0.9, [1, 1, 1, 1]),
]


@pytest.mark.parametrize(("sentence", "budget", "factors"), ADAPTED, ids=[a[0] for a in ADAPTED])
def test_a_tier_that_could_never_fire_is_lowered_below_the_maximum_burn_rate(
        sentence, budget, factors, caplog):
    with caplog.at_level(logging.WARNING):
        tiers = adapt_to_target(WORKBOOK, budget, "test")
    assert [t.factor for t in tiers] == pytest.approx(factors)
    ceiling = max_burn_rate(budget)
    assert all(t.factor < ceiling for t in tiers), "a dead tier was emitted"
    assert all(t.factor * budget < 1 for t in tiers)
    lowered = [t for t in tiers if t.configured_factor is not None]
    assert len(caplog.records) == len(lowered)
    for t in lowered:
        assert t.configured_factor >= ceiling
    # a faster tier is never more sensitive than a slower one of the same severity
    pages = [t.factor for t in tiers if t.severity == "page"]
    assert pages == sorted(pages, reverse=True)


SEVERITIES = [
    ("requests keep the workbook's pages and tickets", "availability",
     ["page", "page", "ticket", "ticket"]),
    ("latency is a request SLO too", "latency", ["page", "page", "ticket", "ticket"]),
    ("accuracy pages only on a sudden collapse (the fast tier)", "accuracy",
     ["page", "ticket", "ticket", "ticket"]),
    ("quality windows only open tickets", "quality_windows",
     ["ticket", "ticket", "ticket", "ticket"]),
]


@pytest.mark.parametrize(("sentence", "kind", "severities"), SEVERITIES,
                         ids=[s[0] for s in SEVERITIES])
def test_each_slo_kind_pages_or_opens_tickets_per_usual_practice(sentence, kind, severities):
    assert [t.severity for t in severities_for_kind(kind, WORKBOOK)] == severities


def test_a_quality_tier_whose_short_window_holds_under_two_slices_is_dropped(caplog):
    with caplog.at_level(logging.WARNING):
        kept = drop_sparse_tiers(WORKBOOK, 300, "quality")
    assert [t.short_s for t in kept] == [1800, 2 * H, 6 * H]
    assert "fewer than 2 evaluation slices" in caplog.text


def test_recordings_cover_every_tier_window_and_the_period():
    assert recording_windows(WORKBOOK, 30 * 24 * H) == (
        300, 1800, H, 2 * H, 6 * H, 24 * H, 72 * H, 30 * 24 * H)


def test_the_workbook_tiers_consume_the_documented_share_of_the_budget():
    shares = [round(t.budget_consumed(30 * 24 * H), 3) for t in WORKBOOK]
    assert shares == [0.02, 0.05, 0.1, 0.1]
