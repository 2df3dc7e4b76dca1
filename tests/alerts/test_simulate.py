"""The model of Prometheus rule evaluation behind the generated promtool tests."""

from __future__ import annotations

import math

import pytest

from alerts.promtool_tests import incident_burn_rate, tier_scenario
from alerts.scenario import series_values
from alerts.simulate import Segment, Traffic, error_ratios, hold, rate, run_slo
from alerts.spec import build_spec


def test_traffic_counters_start_at_zero_and_add_per_step():
    t = Traffic.of([Segment(2, 10, 0), Segment(1, 10, 3)])
    assert t.good == (0, 10, 20, 27)
    assert t.bad == (0, 0, 0, 3)
    assert t.total == (0, 10, 20, 30)


def test_rate_multiplies_by_the_inverse_range_like_prometheus_2():
    # 855000 / 21600 = 39.583333333333336, but Prometheus 2.x returns ...33 (one ulp less)
    assert rate([0.0] * 90 + [855000.0], 90, 360, 60) == 39.58333333333333
    assert rate([0.0, 1.0], 0, 5, 60) is None


def test_the_workbook_example_ratio_is_reproduced_to_the_last_digit(example):
    slo = build_spec(example).slos[0]
    traffic = Traffic.of([Segment(60, 100, 0), Segment(44, 100, 2)])
    assert error_ratios(slo, traffic, 60, 60)[104] == 0.014666666666666666
    assert math.isnan(error_ratios(slo, Traffic.of([Segment(3, 0, 0)]), 2, 60)[3])


HOLD = [
    ("without for, an alert fires on the first true step", [False, True, True, False], 0,
     [False, True, True, False]),
    ("with a 2-step for it fires on the third true step", [True, True, True, True], 2,
     [False, False, True, True]),
    ("a false step resets the hold", [True, True, False, True, True, True], 2,
     [False, False, False, False, False, True]),
]


@pytest.mark.parametrize(("sentence", "conds", "steps", "firing"), HOLD,
                         ids=[h[0] for h in HOLD])
def test_for_holds_an_alert_pending(sentence, conds, steps, firing):
    assert hold(conds, steps) == firing


BURNS = [
    ("the 14.4x tier of 99.9% is tested with 2% errors (20x)", 0, 0, 20.0),
    ("the 6x tier with 8x", 0, 1, 8.0),
    ("the 3x tier with 4x", 0, 2, 4.0),
    ("the 1x tier with 1.5x", 0, 3, 1.5),
    ("the 14.4x tier of 95% (max 20x) half way to the maximum", 2, 0, 17.2),
]


@pytest.mark.parametrize(("sentence", "slo", "tier", "burn"), BURNS, ids=[b[0] for b in BURNS])
def test_an_incident_burns_above_its_tier_and_below_the_next(example, sentence, slo, tier, burn):
    s = build_spec(example).slos[slo]
    assert incident_burn_rate(s, s.tiers[tier]) == pytest.approx(burn)


def test_two_percent_errors_against_99_9_page_44_minutes_after_onset(example):
    slo = build_spec(example).slos[0]
    scenario = tier_scenario(slo, 0, 60)
    history = scenario.segments[0].steps
    run = run_slo(slo, Traffic.of(scenario.segments), 60)
    fire = run.first_firing(0, history)
    assert fire is not None and fire - history == 44
    assert not run.firing[fire - 1], "nothing fires a minute earlier"
    assert set(run.firing[fire]) == {0}, "the fast page fires alone"
    stop = history + scenario.segments[1].steps
    assert run.first_silent(0, stop + 1) == stop + 2, "resolved 2 minutes after recovery"


def test_series_values_use_promtool_expanding_notation():
    assert series_values([0, 10, 20, 30, 33, 36]) == "0+10x3 33+3x1"
    assert series_values([5.0]) == "5+0x0"
    assert series_values([1, 1, 0, 0]) == "1+0x1 0+0x1"
