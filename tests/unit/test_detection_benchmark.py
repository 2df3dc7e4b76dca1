"""The detection benchmark's own accounting (benchmarks/detection): its streams are a pure
function of scenario and seed, cut into chunks without changing a byte, valid in the event
contract, and change only after the onset and only what the scenario names; the tables read
delays, medians, false-alarm rates and the equal-rate MMD cutoff as documented.

The pools here are synthetic (random probabilities, a handful of rendered PNGs): no model is
trained, the benchmark's run itself uses real images."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom

from benchmarks.detection import reading, report_text, tables
from benchmarks.detection.scenarios import (
    BAD_CLASS,
    BAD_CLASS_AS,
    CLEAN,
    COVARIATE,
    LABEL_DELAY_S,
    MODEL,
    NO_DRIFT,
    OTHER,
    REQUEST_RATE,
    Plan,
    Pool,
    Scenario,
    Serialiser,
    make_plan,
)
from benchmarks.detection.visionmon_run import LIMITS
from monitor.events import FeedbackDecoder, ImageDecoder, ModelClassIndex, PredictionDecoder
from reference_model.digits import render_digit

ROOT = Path(__file__).resolve().parents[2]
C = 10
POOL = 60
ONSET, N = 400, 1_000
SHIFT = Scenario("brightness", "covariate", 3, COVARIATE["brightness"][1][2],
                 COVARIATE["brightness"][0])


def _other(family: str, severity: int) -> Scenario:
    kind, unit, levels = OTHER[family]
    return Scenario(family, kind, severity, levels[min(severity, len(levels)) - 1], unit)


def _pool(seed: int) -> Pool:
    rng = np.random.default_rng(seed)
    labels = np.arange(POOL) % C                      # every class, class 3 included
    logits = rng.normal(size=(POOL, C))
    logits[np.arange(POOL), labels] += 3.0            # mostly right
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    pixels = rng.integers(0, 256, size=(POOL, 8, 8, 3), dtype=np.uint8)
    return Pool(labels, probs, [render_digit(p) for p in pixels],
                rng.normal(size=(POOL, 4)).astype(np.float32), labels.copy(),
                np.full(POOL, 0.9), rng.random((POOL, 3)))


@pytest.fixture(scope="module")
def pools() -> dict[str, Pool]:
    return {CLEAN: _pool(1), SHIFT.name: _pool(2)}


def _plan(pools: dict[str, Pool], scenario: Scenario, seed: int = 1) -> Plan:
    return make_plan(pools, scenario, seed, ONSET, N)


def _stream(plan: Plan, pools: dict[str, Pool], size: int) -> tuple[list[bytes], list, list]:
    preds: list[bytes] = []
    images: list = []
    feedback: list[bytes] = []
    for c in Serialiser(plan, pools).chunks(size):
        preds += c.predictions
        images += c.images
        feedback += c.feedback
    return preds, images, feedback


# --- streams ------------------------------------------------------------------------------

def test_a_plan_is_a_function_of_scenario_and_seed(pools: dict[str, Pool]) -> None:
    a, b, other = _plan(pools, SHIFT), _plan(pools, SHIFT), _plan(pools, SHIFT, seed=2)
    for name in ("pool_index", "label", "pred", "latency_ms", "sampled", "labelled",
                 "fed_label"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert not np.array_equal(a.pool_index, other.pool_index)


def test_the_bytes_do_not_depend_on_how_the_stream_is_cut(pools: dict[str, Pool]) -> None:
    plan = _plan(pools, _other("bad_version_random", 3))
    assert _stream(plan, pools, 37) == _stream(plan, pools, N)


def test_every_record_is_valid_in_the_event_contract(pools: dict[str, Pool]) -> None:
    plan = _plan(pools, _other("bad_version_class", 3))
    preds, images, feedback = _stream(plan, pools, 100)
    index = {MODEL: ModelClassIndex.of([str(k) for k in range(C)])}
    now = plan.ts(N) + 3600.0
    decoded = PredictionDecoder(index, LIMITS).decode(b"\n".join(preds), now)
    assert not decoded.rejections
    events = decoded.events
    assert [e.pred for e in events] == plan.pred.tolist()
    assert [e.version for e in events] == [plan.version(i) for i in range(N)]
    assert np.allclose([e.ts for e in events], plan.ts(np.arange(N)), atol=1e-3)
    fdec = FeedbackDecoder(index, LIMITS)
    labels = [fdec.decode(m, now) for m in feedback]
    assert not any(d.rejections for d in labels)
    delay = round(LABEL_DELAY_S * REQUEST_RATE)
    expected = np.flatnonzero(plan.labelled[:N - delay])
    assert [d.events[0].label for d in labels] == plan.fed_label[expected].tolist()
    idec = ImageDecoder(index, 5_000_000, LIMITS)
    got = [idec.decode(data, headers, now) for headers, data in images]
    assert not any(d.rejections for d in got)
    assert len(got) == int(plan.sampled.sum())
    assert all(d.events[0].data.startswith(b"\x89PNG") for d in got)


# --- scenarios ------------------------------------------------------------------------------

def test_nothing_changes_before_the_onset(pools: dict[str, Pool]) -> None:
    clean = pools[CLEAN]
    for scenario in (SHIFT, _other("bad_version_class", 3), _other("label_noise", 5),
                     _other("prior_shift", 5)):
        plan = _plan(pools, scenario)
        pre = slice(0, ONSET)
        assert np.array_equal(plan.pred[pre], clean.top[plan.pool_index[pre]]), scenario.name
        assert np.array_equal(plan.fed_label[pre], plan.label[pre]), scenario.name
        assert {plan.version(i) for i in range(ONSET)} == {"v1"}


def test_a_covariate_shift_serves_the_shifted_pool_after_the_onset(
        pools: dict[str, Pool]) -> None:
    plan = _plan(pools, SHIFT)
    post = slice(ONSET, N)
    assert np.array_equal(plan.pred[post], pools[SHIFT.name].top[plan.pool_index[post]])
    assert np.array_equal(plan.label, pools[CLEAN].labels[plan.pool_index])  # labels stay


def test_the_bad_class_version_serves_one_class_as_another_and_nothing_else(
        pools: dict[str, Pool]) -> None:
    plan = _plan(pools, _other("bad_version_class", 3))
    top = pools[CLEAN].top[plan.pool_index]
    post = np.arange(N) >= ONSET
    assert (top[post] == BAD_CLASS).any()
    assert np.array_equal(plan.pred, np.where(post & (top == BAD_CLASS), BAD_CLASS_AS, top))
    assert {plan.version(i) for i in range(ONSET, N)} == {"v2"}


@pytest.mark.parametrize("severity", [1, 5])
def test_label_noise_flips_the_named_share_of_labels_after_the_onset(
        pools: dict[str, Pool], severity: int) -> None:
    scenario = _other("label_noise", severity)
    plan = make_plan(pools, scenario, 1, ONSET, 20_000)
    post = np.arange(plan.n) >= ONSET
    flipped = plan.fed_label != plan.label
    assert not flipped[~post].any()
    share, n = flipped[post].mean(), int(post.sum())
    sd = math.sqrt(scenario.level * (1 - scenario.level) / n)
    assert abs(share - scenario.level) < 4 * sd
    assert np.array_equal(plan.pred, pools[CLEAN].top[plan.pool_index])  # model unchanged


def test_a_prior_shift_adds_the_named_share_of_class_zero(pools: dict[str, Pool]) -> None:
    scenario = _other("prior_shift", 5)
    plan = make_plan(pools, scenario, 1, ONSET, 20_000)
    post = np.arange(plan.n) >= ONSET
    expected = scenario.level + (1 - scenario.level) / C   # extra draws, plus the pool's share
    share, n = float((plan.label[post] == 0).mean()), int(post.sum())
    assert abs(share - expected) < 4 * math.sqrt(expected * (1 - expected) / n)
    assert abs(float((plan.label[~post] == 0).mean()) - 1 / C) < 0.05


def test_a_latency_regression_multiplies_latency_after_the_onset(
        pools: dict[str, Pool]) -> None:
    scenario = _other("latency", 5)
    plan = make_plan(pools, scenario, 1, ONSET, 20_000)
    base = make_plan(pools, NO_DRIFT, 1, ONSET, 20_000)
    post = np.arange(plan.n) >= ONSET
    ratio = np.median(plan.latency_ms[post]) / np.median(plan.latency_ms[~post])
    assert ratio == pytest.approx(scenario.level, rel=0.05)
    assert np.median(base.latency_ms[post]) == pytest.approx(
        np.median(base.latency_ms[~post]), rel=0.05)


# --- tables ---------------------------------------------------------------------------------

def test_the_delay_is_the_first_reading_that_crosses() -> None:
    run = {"events_after": [50, 100, 150, 200], "images_after": [9, 21, 30, 41],
           "p": {"pred": [0.5, 1e-6, 0.5, 1e-9]}, "mmd": [0.2, 0.4, 1.5, 2.0],
           "agree": [math.nan, math.nan, 0.95, 0.5], "accuracy": [math.nan] * 4,
           "agree_p": [1.0, 1.0, 1.0, 1e-5]}
    d = tables.vm_delays(run, family_alpha=1e-4, bounds=(0.9, 0.9), alpha_agree=1e-3)
    assert d["vm_drift"] == (100, 21)
    assert d["vm_mmd"] == (150, 30)
    assert d["vm_agree"] == (200, 41)
    assert d["vm_agree_test"] == (200, 41)
    assert d["vm_accuracy"] is None                  # NaN readings never alarm
    assert d["vm_alerts"] == (100, 21)


def test_the_median_over_seeds_counts_a_miss_as_infinitely_late() -> None:
    assert tables.median_delay([None, (100, 20), (300, 50)]) == (300, 50)
    assert tables.median_delay([None, None, (100, 20)]) is None
    assert tables.median_delay([(100, 20), (200, 30)]) == (150, 25)
    assert tables.median_delay([]) is None


def test_false_alarm_rates_give_the_rule_of_three_when_none_fired() -> None:
    assert tables.per_1000(0, 300) == "0 (<10)"
    assert tables.per_1000(0, 0) == "—"
    assert tables.per_1000(3, 3000).startswith("1")


def test_the_equal_rate_cutoff_alarms_on_as_many_windows_as_alibi() -> None:
    rng = np.random.default_rng(0)
    stats = rng.normal(size=1_000)
    results = {
        "false_alarms": {"windows": {tables.DELAY_WINDOW: [{"mmd_stat": float(s)}
                                                           for s in stats]}},
        "peers": {"false_alarms": {tables.DELAY_WINDOW: [{"alibi_mmd": i < 21}
                                                         for i in range(1_000)]}},
    }
    matched = tables.mmd_cutoff_at_alibi_rate(results)
    assert matched is not None
    assert matched["rate"] == pytest.approx(0.021)
    assert int(np.sum(stats > matched["cutoff"])) == 21


def test_the_rescaled_agreement_estimate_is_scored_on_every_thousandth_request() -> None:
    """The shadow agreement ratio times clean accuracy / clean agreement, against realized
    accuracy, at the readings 1,000 and 2,000 requests after the onset (NaN readings
    skipped), signed and absolute."""
    run = {"scenario": "blur-s5", "seed": 1, "latency_page_after": None,
           "events_after": [500, 1_000, 1_500, 2_000], "images_after": [100, 200, 300, 400],
           "p": {"pred": [0.5] * 4}, "mmd": [0.1] * 4, "agree_p": [1.0] * 4,
           "accuracy": [math.nan] * 4, "agree": [0.1, 0.8, 0.1, math.nan],
           "estimate": [0.9] * 4, "estimate_exact": [0.9] * 4,
           "realized": [0.5, 0.7, 0.5, 0.6]}
    results = {"delays": [run], "workload": {"production_accuracy": 0.9, "agreement": 0.8},
               "false_alarms": {"windows": {}}}
    col = tables.collect(results)
    # only the reading at 1,000 counts: 0.8 * 0.9 / 0.8 = 0.9 against 0.7
    assert col["acc_agree"]["blur-s5"] == pytest.approx(0.2)
    assert col["acc_agree_signed"]["blur-s5"] == pytest.approx(0.2)
    assert col["acc_vm"]["blur-s5"] == pytest.approx(0.25)   # (0.2 + 0.3) / 2
    assert tables.agreement_scale({"workload": {}}) == 0.0


def test_the_permutation_mmd_of_every_split_is_the_unbiased_mmd2() -> None:
    """One matrix product scores every relabelling: each equals monitor.stats.mmd2_rbf on
    the same two groups with the same bandwidth."""
    from benchmarks.detection.mmd_power import unbiased_mmd2_of_splits
    from tests.oracles.mmd import mmd2_rbf

    rng = np.random.default_rng(4)
    z = rng.normal(size=(14, 3))
    d2 = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    bandwidth = 1.3
    k = np.exp(-d2 / (2 * bandwidth ** 2))
    np.fill_diagonal(k, 0.0)
    labels = np.zeros((14, 3))
    splits = [np.arange(6), rng.permutation(14)[:6], rng.permutation(14)[:6]]
    for j, a in enumerate(splits):
        labels[a, j] = 1.0
    got = unbiased_mmd2_of_splits(k, labels, 6, 8)
    for j, a in enumerate(splits):
        b = np.setdiff1d(np.arange(14), a)
        assert got[j] == pytest.approx(mmd2_rbf(z[a], z[b], bandwidth), rel=1e-9)


def test_the_permutation_pvalue_is_zero_on_a_far_shift_and_not_small_on_none() -> None:
    from benchmarks.detection.mmd_power import permutation_mmd_pvalue, reference_median

    rng = np.random.default_rng(6)
    ref = rng.normal(size=(60, 4))
    median = reference_median(ref)
    # squared distance between two 4-d standard normal points: 2 chi²(4), median ~ 6.7
    assert 5.0 < median < 8.5
    assert permutation_mmd_pvalue(ref, rng.normal(size=(30, 4)) + 3.0, rng, median) == 0.0
    same = [permutation_mmd_pvalue(ref, rng.normal(size=(30, 4)), rng, median)
            for _ in range(20)]
    assert np.median(same) > 0.2


def test_the_agreement_power_windows_change_production_as_the_scenarios_do() -> None:
    from benchmarks.detection.agreement_power import window_counts

    rng = np.random.default_rng(8)
    top = np.arange(10).repeat(50)
    ref = top.copy()                       # the reference agrees with every clean prediction
    pairs = np.array([[BAD_CLASS_AS, BAD_CLASS]])  # a usual pair: 8 served where 3 is right
    n, agree, usual = window_counts(top, ref, 4_000, 0.0, True, 10, rng, pairs)
    assert n[BAD_CLASS] == 0 and agree[BAD_CLASS_AS] < n[BAD_CLASS_AS]
    assert agree.sum() == 4_000 - (n[BAD_CLASS_AS] - agree[BAD_CLASS_AS])
    assert usual.sum() == 4_000       # every disagreement here is the usual pair
    n, agree, usual = window_counts(top, ref, 20_000, 0.1, False, 10, rng, pairs)
    assert n.sum() == 20_000
    assert agree.sum() <= usual.sum() < agree.sum() + 0.02 * 20_000
    # a moved prediction never agrees here, so disagreement is the moved share
    assert 1 - agree.sum() / n.sum() == pytest.approx(0.1, abs=0.01)


# --- the reading tables: numbers generated, the sentences in docs/detection-reading.md -----------

def _facts(**changes: object) -> reading.Facts:
    base = reading.Facts(
        drift_features=21, varying_features=19, feature_level=0.005 / 21, mmd_level=0.005,
        threshold_mismatches=0, clean_agreement_pct=95.9, min_agreement=0.9,
        below_bound=((20, "a window of 100 requests", 4.7),), over_goal=(), vs_alibi=(),
        alibi_rate=21.0, mmd_rate="4", matched_rate=21.0, one_reading=3, late_alibi=(2, 1950),
        mmd_ms_per_image=0.78, mmd_speedup=40.0, psi_speedup=185.0,
        no_drift_bias=(-0.1, -0.1, 0.0), agreement_noise=1.1, agreement_mean=11.0,
        agreement_over=(8, 30))
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_the_generated_prose_is_gone_from_the_report() -> None:
    assert not hasattr(report_text, "why")
    assert (ROOT / "docs" / "detection-reading.md").exists()


def test_the_reading_section_is_tables_under_headings_and_no_sentences() -> None:
    miss = reading.EstimateMiss("brightness-s4", 28.5, 1, 32.8, "100 / 20")
    lines = reading.reading_tables(_facts(misses=(miss,)), 10.0, 3.0)
    captions = [line for line in lines
                if line and not line.startswith(("|", "### "))]
    assert captions == ["Clean agreement 95.9 %, bound 0.9.", "None."]
    assert "| brightness-s4 | 28.5, too high | 32.8 | 100 / 20 |" in lines
    assert "| level of each feature | 0.000238 |" in lines


def test_a_signal_is_later_than_alibi_where_it_alarmed_after_it_or_never() -> None:
    delays = {"blur-s1": {"vm_mmd": (300, 60), "alibi_mmd": (250, 50)},
              "blur-s2": {"vm_mmd": None, "alibi_mmd": (900, 180)},
              "blur-s3": {"vm_mmd": (100, 20), "alibi_mmd": (150, 30)},
              "noise-s1": {"vm_mmd": (100, 20), "alibi_mmd": None}}
    (mmd,) = reading._vs_alibi(delays)
    assert mmd.signal == "vm MMD" and mmd.detected == 3
    assert mmd.later == (("blur-s1", 300, 250), ("blur-s2", None, 900))


def test_signals_above_the_goal_carry_the_chance_of_that_many_alarms() -> None:
    fa = {"100s": {"vm_alerts": (45, 3_000), "vm_drift": (9, 3_000)}}
    (row,) = reading._over_goal(fa, agree_alpha=0.001, mmd_alpha=0.005, goal=10.0)
    assert (row.signal, row.requests, row.alarms, row.windows) == ("vm alerts", 1_000, 45, 3_000)
    assert row.level == pytest.approx(0.011)
    assert row.chance == pytest.approx(float(binom.sf(44, 3_000, 0.011)))


# --- equal false-alarm rate and BBSD --------------------------------------------------------


@pytest.mark.parametrize(("scores", "rate", "cutoff", "above"), [
    ([5, 4, 3, 2, 1], 0.4, 3.0, 2),          # 2 of 5 windows above the cutoff
    ([5, 4, 3, 2, 1], 0.0, 5.0, 0),          # none: the largest score itself
    ([5, 4, 3, 2, 1], 1.0, -math.inf, 5),    # every window
    ([5, math.nan, 3, 1], 0.34, 3.0, 1),     # NaN readings never count
])
def test_the_cutoff_at_a_rate_leaves_that_share_of_no_drift_windows_above_it(
        scores: list[float], rate: float, cutoff: float, above: int) -> None:
    from benchmarks.detection.equal_rate import cutoff_at_rate

    got = cutoff_at_rate(scores, rate)
    assert got == cutoff
    assert sum(1 for s in scores if s > got) == above


def test_the_expected_run_before_a_false_alarm_is_the_window_over_the_rate() -> None:
    from benchmarks.detection.equal_rate import expected_run, hours

    assert expected_run(0.01, 1_000) == 100_000
    assert expected_run(0.0) == math.inf
    assert hours(36_000) == pytest.approx(1.0)   # 10 requests per second


def test_bbsd_delays_at_an_equal_rate_move_with_the_cutoff() -> None:
    from benchmarks.detection.equal_rate import match

    null = [0.5, 0.2, 0.01, 0.004, 0.0001]
    results = {"false_alarms": {"windows": {tables.DELAY_WINDOW: []}}, "delays": [],
               "peers": {"false_alarms": {tables.DELAY_WINDOW: [{"bbsd_p": p} for p in null]},
                         "delays": [{"scenario": "noise-s3", "bbsd_p": [
                             [50, 10, 0.5], [100, 20, 0.001], [150, 30, 1e-9]]}]}}
    loose = {m.detector: m for m in match(results, 0.2)}["bbsd"]   # 1 of 5 windows
    assert (loose.alarms, loose.windows) == (1, 5)
    assert loose.delays["noise-s3"] == (100, 20)                  # 0.001 < 0.004
    strict = {m.detector: m for m in match(results, 0.0)}["bbsd"]
    assert strict.alarms == 0 and strict.delays["noise-s3"] == (150, 30)


def test_bbsd_finds_a_shifted_class_column_and_not_an_unshifted_one() -> None:
    from scipy.stats import ks_2samp

    from benchmarks.detection.peers import bbsd_pvalue

    rng = np.random.default_rng(0)
    base = rng.dirichlet(np.ones(C), size=2_000)
    same = rng.dirichlet(np.ones(C), size=300)
    shifted = same.copy()
    shifted[:, 4] = np.sqrt(shifted[:, 4])   # one class's probability grows
    p_same = bbsd_pvalue(base, same)
    assert p_same > 0.05
    # Bonferroni: the smallest per-class p-value times the classes, capped at 1
    per_class = [ks_2samp(base[:, k], shifted[:, k], method="asymp").pvalue for k in range(C)]
    assert bbsd_pvalue(base, shifted) == pytest.approx(min(1.0, C * min(per_class)))
    assert bbsd_pvalue(base, shifted) < 1e-6
    assert int(np.argmin(per_class)) == 4
