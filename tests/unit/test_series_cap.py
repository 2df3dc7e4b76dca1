"""The series cap (`limits.max_series_per_metric`): over it, the excess values of a metric's
most varied label fold into `_other` (summed for counters and histograms, left out for
gauges) and `visionmon_series_capped{metric}` says how many label sets were."""

from __future__ import annotations

from monitor.config import parse_config, resolve
from monitor.engine import PredictionEvent
from monitor.series_cap import SeriesCap
from monitor.snapshot import HistogramValue, Series
from visionmon.app import build_statistics

PREDICTIONS = "visionmon_predictions_total"       # counter: model, version, class
LATENCY = "visionmon_request_latency_seconds"     # histogram: model, version
RECALL = "visionmon_class_recall_ratio"           # gauge: model, version, class, window
CAPPED = "visionmon_series_capped"


def counts(versions: int, classes: int) -> Series:
    """predictions_total of one model: `versions` x `classes` series, each worth 1."""
    return {("m", f"v{v}", f"c{c}"): 1.0 for v in range(versions) for c in range(classes)}


def test_a_metric_within_the_cap_is_left_as_it_is() -> None:
    series = counts(2, 5)
    out = SeriesCap(10).apply({PREDICTIONS: series})
    assert out == {PREDICTIONS: series}


def test_counters_fold_the_most_varied_label_into_other_and_keep_their_total() -> None:
    out = SeriesCap(10).apply({PREDICTIONS: counts(2, 20)})   # 40 series, class varies most
    folded = out[PREDICTIONS]
    assert len(folded) <= 10
    assert {k[2] for k in folded} == {"c0", "c1", "c2", "c3", "_other"}  # 4 kept per version
    assert folded[("m", "v0", "_other")] == 16.0
    assert sum(folded.values()) == 40.0
    assert out[CAPPED] == {(PREDICTIONS,): 32.0}


def test_histograms_fold_by_adding_buckets_and_sums() -> None:
    series: Series = {("m", f"v{v}"): HistogramValue((1.0, 2.0), 0.5) for v in range(5)}
    out = SeriesCap(3).apply({LATENCY: series})
    assert out[LATENCY] == {("m", "v0"): HistogramValue((1.0, 2.0), 0.5),
                            ("m", "v1"): HistogramValue((1.0, 2.0), 0.5),
                            ("m", "_other"): HistogramValue((3.0, 6.0), 1.5)}
    assert out[CAPPED] == {(LATENCY,): 3.0}


def test_gauges_over_the_cap_are_left_out_not_summed() -> None:
    series: Series = {("m", "v1", f"c{c}", "1h"): 0.5 for c in range(30)}
    out = SeriesCap(10).apply({RECALL: series})
    assert len(out[RECALL]) == 9
    assert all(k[2] != "_other" for k in out[RECALL])
    assert out[CAPPED] == {(RECALL,): 21.0}


def test_a_value_once_exported_is_never_folded_later() -> None:
    cap = SeriesCap(10)
    first = cap.apply({PREDICTIONS: {("m", "v1", f"c{c}"): 1.0 for c in range(5, 20)}})
    later = cap.apply({PREDICTIONS: {("m", "v1", f"c{c}"): 2.0 for c in range(20)}})
    kept_first = {k for k in first[PREDICTIONS] if k[2] != "_other"}
    assert kept_first <= set(later[PREDICTIONS])   # c0..c4 came later: they fold
    assert later[PREDICTIONS][("m", "v1", "_other")] == 2.0 * (20 - len(kept_first))


def test_a_new_version_does_not_fold_the_classes_already_exported() -> None:
    """More combinations of the other labels shrink the room per value; the values already
    exported keep their series (a counter moved into `_other` would jump and reset)."""
    cap = SeriesCap(100)
    first = cap.apply({PREDICTIONS: counts(1, 150)})[PREDICTIONS]
    exported = {k[2] for k in first if k[2] != "_other"}
    assert len(exported) == 99 and "c50" in exported
    later = cap.apply({PREDICTIONS: counts(2, 150)})[PREDICTIONS]
    assert {k[2] for k in later if k[1] == "v0" and k[2] != "_other"} == exported
    assert later[("m", "v0", "_other")] == 150 - 99


def test_the_version_limiters_other_joins_the_fold_and_is_not_counted_as_capped() -> None:
    series = counts(1, 15) | {("m", "v0", "_other"): 100.0}
    out = SeriesCap(10).apply({PREDICTIONS: series})
    assert out[PREDICTIONS][("m", "v0", "_other")] == 100.0 + 15 - 9
    assert out[CAPPED] == {(PREDICTIONS,): 6.0}


def test_the_daemon_caps_its_snapshot_at_limits_max_series_per_metric() -> None:
    from collectors.daemon import Daemon

    classes = [f"c{c}" for c in range(10)]
    loaded = resolve(parse_config({
        "version": 1, "models": [{"name": "m", "classes": classes}],
        "limits": {"max_series_per_metric": 100, "max_versions_per_model": 30}}))
    stats = build_statistics(loaded)
    stats.engine.apply_predictions([
        PredictionEvent(f"r{v}-{c}", 1.8e9, "m", f"v{v:02d}", True, c, 0.9, 0.5, 0.1, 0.01)
        for v in range(30) for c in range(10)])      # 300 series of predictions_total
    snap = Daemon(loaded, stats.engine).snapshot()
    predictions = snap[PREDICTIONS]
    assert len(predictions) <= 100
    assert sum(predictions.values()) == 300.0
    assert snap[CAPPED][(PREDICTIONS,)] == 300 - 90   # 9 versions of 10 classes kept
