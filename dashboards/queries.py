"""The PromQL behind every panel, built from the catalog through `dashboards.promql`.

Each function returns one expression and says what it measures and in which unit. Grafana
variables stay in the text: `$model`, `$version` (multi), `$class` (multi), one per segment
key (`$camera`, multi), `$window` (one of the configured window sizes, which doubles as a
PromQL duration) and `$__rate_interval`.
"""

from __future__ import annotations

from collections.abc import Sequence

from dashboards.promql import (
    CLASS,
    MODEL,
    MODEL_VERSION,
    RATE_INTERVAL,
    WINDOW,
    Matcher,
    aggregate,
    alternation,
    eq,
    group,
    histogram_quantile,
    increase,
    le_label,
    rate,
    ratio,
    recorded,
    regex,
    series,
    total,
)
from monitor import cost_series as cs
from monitor.catalog import CATALOG, metric
from monitor.config import ESTIMATE_LABELS, ConfigError, EstimateChoice, LoadedConfig
from monitor.segment_config import SEGMENT_LABELS
from monitor.slo_spec import Objective

#: Prometheus's own series of pending and firing alerts (not a visionmon metric).
#: Every alert visionmon's generator writes is named `Visionmon...` (a test holds it to that).
ALERT_NAME_PREFIX = "Visionmon"
#: visionmon's firing alerts, not the other teams' alerts the same Prometheus evaluates.
ALERTS = f'ALERTS{{alertstate="firing",alertname=~"{ALERT_NAME_PREFIX}.*"}}'
#: Outcome label values, as the catalog's help texts document them.
CORRECT, INCORRECT = "correct", "incorrect"
AGREE = "agree"
#: Step after which a (model, version) series no longer counts as new (annotations).
NEW_SERIES_LOOKBACK = "1m"

MVW: tuple[Matcher, ...] = (*MODEL_VERSION, WINDOW)
#: the labels a segment value's series carry its key and value in (monitor/catalog.py)
SEGMENT_BY = SEGMENT_LABELS


# --- traffic and serving -----------------------------------------------------------------

def predictions_per_second(by: Sequence[str] = ("version",)) -> str:
    """Successful predictions per second."""
    return total(rate(series("predictions_total", *MODEL_VERSION)), by)


def request_latency_quantile(q: float) -> str:
    """Serving latency quantile in seconds, per version, from the request histogram."""
    return histogram_quantile(q, "request_latency_seconds", MODEL_VERSION, by=("version",))


def request_success_ratio() -> str:
    """Share of requests with status ok (0..1), per version."""
    ok = total(rate(series("requests_total", *MODEL_VERSION, eq("status", "ok"))), ("version",))
    every = total(rate(series("requests_total", *MODEL_VERSION)), ("version",))
    return ratio(ok, every)


def _first_seen(selector: str, by: Sequence[str]) -> str:
    """The count of `selector`'s series per `by` during the first minute they exist."""
    return (f"{aggregate('count', selector, by)} unless "
            f"{aggregate('count', f'{selector} offset {NEW_SERIES_LOOKBACK}', by)}")


def version_first_seen() -> str:
    """1 during the first minute a (model, version) reports events: deploys, as annotations."""
    return _first_seen(series("last_event_timestamp_seconds", MODEL), ("model", "version"))


def visionmon_build_first_seen() -> str:
    """1 during the first minute a visionmon build version is scraped: sidecar upgrades."""
    return _first_seen(series("build_info"), ("version",))


# --- the production model's lifecycle (the lifecycle topic) --------------------------------

#: The labels of one artifact: a model version's SHA-256.
ARTIFACT = ("model", "version", "sha256")


def artifact_first_loaded() -> str:
    """1 during the first minute an artifact is some replica's latest load: deploys of a new
    artifact, as annotations."""
    return _first_seen(series("model_info", MODEL), ARTIFACT)


def lifecycle_counted(short: str, by: Sequence[str]) -> str:
    """Counter series per `by` that appeared or grew within the last minute (a rollout, a
    rollback, a failed load), as annotations: a new series counts too, which `increase`
    alone would miss."""
    now = series(short, MODEL)
    moved = aggregate("sum", increase(now, NEW_SERIES_LOOKBACK), by)
    return f"{_first_seen(now, by)} or {moved} > 0"


def _per_artifact(expr: str) -> str:
    """A (model, version) value copied onto each artifact of the version (table rows)."""
    held = aggregate("group", series("model_info", MODEL), ARTIFACT)
    return f"{group(expr)} * on (model, version) group_right() {held}"


def artifact_gauge(short: str, scale: str = "") -> str:
    """A per-artifact gauge (`model_replicas`, `model_*_load_timestamp_seconds`) of the
    selected models, all versions; `scale` such as ` * 1000` (s -> ms for Grafana times)."""
    return f"{aggregate('max', series(short, MODEL), ARTIFACT)}{scale}"


def model_load_mean_seconds() -> str:
    """Mean load time (s) of each version over every load counted, on each artifact row."""
    mv = ("model", "version")
    return _per_artifact(ratio(total(series("model_load_seconds", MODEL, part="sum"), mv),
                               total(series("model_load_seconds", MODEL, part="count"), mv)))


def version_last_prediction_ms() -> str:
    """Event time of each version's newest prediction (ms, for Grafana), on each artifact
    row: when the version last served."""
    newest = aggregate("max", series("last_event_timestamp_seconds", MODEL), ("model", "version"))
    return _per_artifact(f"{newest} * 1000")


# --- Kafka and intake --------------------------------------------------------------------

def consumer_lag() -> str:
    """Records between committed position and partition end, per topic."""
    return total(series("consumer_lag_records"), ("topic",))


def kafka_connected() -> str:
    """1 when every replica's consumer has a broker connection, else 0."""
    return aggregate("min", series("kafka_connected"), ("instance",))


def daemon_up() -> str:
    """1 while the consumer loop runs, per replica."""
    return aggregate("min", series("up"), ("instance",))


def records_rejected_per_second() -> str:
    """Refused records per second by topic and reason."""
    return total(rate(series("records_rejected_total")), ("topic", "reason"))


def images_rejected_per_second() -> str:
    """Images refused at intake per second, by reason."""
    return total(rate(series("images_rejected_total")), ("reason",))


def records_rejected_ratio() -> str:
    """Share of records refused per topic (0..1): rejected / (rejected + accepted), the
    quantity the rejected-records alert compares with its bound."""
    rejected = total(rate(series("records_rejected_total")), ("topic",))
    accepted = total(rate(series("events_accepted_total")), ("topic",))
    return ratio(rejected, f"{rejected} + ({accepted} or 0 * {rejected})")


def checkpoint_age() -> str:
    """Seconds since each replica's last successful checkpoint (its `state:` checkpoint)."""
    return "time() - " + aggregate("max", series("last_checkpoint_timestamp_seconds"),
                                   ("instance",))


def checkpoint_failures_per_second() -> str:
    """Failed checkpoint writes per second, per replica and reason (encode or io)."""
    return total(rate(series("checkpoint_failures_total")), ("instance", "reason"))


def reference_model_up() -> str:
    """1 while shadow scoring runs, per model (0: disabled or failed)."""
    return aggregate("min", series("reference_model_up", MODEL), ("model",))


def firing_alerts() -> str:
    """visionmon's alerts currently firing, by name, severity, model and SLO (labels an alert
    lacks stay empty)."""
    return total(ALERTS, ("alertname", "severity", "model", "slo"))


def firing_alert_count() -> str:
    """Number of visionmon's firing alerts; 0 rather than no data when nothing fires."""
    return f"count({ALERTS}) or vector(0)"


# --- quality -----------------------------------------------------------------------------

def windowed_gauge(short: str, *extra: Matcher) -> str:
    """A per-window gauge for the selected model, versions and window."""
    return series(short, *MVW, *extra)


def preferred_estimate(methods: Sequence[EstimateChoice]) -> str:
    """The label-free accuracy estimate (0..1) of the first of `methods` (quality.estimate_methods)
    that each selected model, version and window exports; its `method` label says which."""
    return " or ignoring(method) ".join(
        windowed_gauge("estimated_accuracy_ratio",
                       regex("method", alternation(ESTIMATE_LABELS[method])))
        for method in methods)


def class_ratio(short: str, classes: Sequence[str] | None = None) -> str:
    """Per-class precision or recall (0..1) for the selected classes, or the given ones."""
    matcher = CLASS if classes is None else regex("class", alternation(classes))
    return series(short, *MVW, matcher)


def class_auc(short: str) -> str:
    """Per-class one-vs-rest ROC-AUC or PR-AUC (0..1) for the selected classes."""
    return series(short, *MVW, CLASS)


def worst_classes_by_recall(k: int = 5) -> str:
    """The `k` classes with the lowest recall (0..1) in the selected window."""
    return f"bottomk({k}, {series('class_recall_ratio', *MVW)})"


def confused_pairs(k: int = 10) -> str:
    """The `k` (true, predicted) pairs with the most labeled mistakes in the selected window."""
    mistakes = increase(series("confusion_pair_total", *MODEL_VERSION), "$window")
    return f"topk({k}, {total(mistakes, ('true_class', 'pred_class'))})"


def label_delay_quantile(q: float) -> str:
    """Quantile of seconds from prediction to ground-truth label."""
    return histogram_quantile(q, "label_delay_seconds", (MODEL,), by=("model",))


def calibration_bin_ratio(numerator: str) -> str:
    """Per calibration bin: counter `numerator` over labeled events, in the selected window.

    With `calibration_bin_confidence_sum_total` this is the bin's mean confidence, with
    `calibration_bin_correct_total` its accuracy: the two axes of a reliability diagram.
    """
    num = total(increase(series(numerator, *MODEL_VERSION), "$window"), ("bin",))
    den = total(increase(series("calibration_bin_events_total", *MODEL_VERSION), "$window"),
                ("bin",))
    return ratio(num, den)


def calibration_bin_events() -> str:
    """Labeled predictions per calibration bin in the selected window."""
    return total(increase(series("calibration_bin_events_total", *MODEL_VERSION), "$window"),
                 ("bin",))


def shadow_agreement_by_class() -> str:
    """Share of scored images on which production agreed with the reference model, by class."""
    agreed = total(increase(series("shadow_class_total", *MODEL_VERSION, CLASS,
                                   eq("outcome", AGREE)), "$window"), ("class",))
    scored = total(increase(series("shadow_class_total", *MODEL_VERSION, CLASS), "$window"),
                   ("class",))
    return ratio(agreed, scored)


# --- segments ----------------------------------------------------------------------------

def segment_keys(loaded: LoadedConfig) -> list[str]:
    """The segment keys of every model, first declared first: one dashboard variable each
    (`$camera`, multi), which filters that key's values."""
    return list(dict.fromkeys(r.key for m in loaded.models.values() for r in m.segments))


def segment_series(short: str, keys: Sequence[str], *matchers: Matcher) -> str:
    """A `visionmon_segment_*` gauge for the selected model, versions and window, limited
    to the values each key's variable selects: one selector per key, joined with `or`."""
    parts = [series(short, *MVW, *matchers, eq("segment_key", key), regex("segment", f"${key}"))
             for key in keys]
    return parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"


def worst_segments_by_drift(keys: Sequence[str]) -> str:
    """Per segment value, its worst drift over features and versions as PSI / critical
    value in the selected window: above 1, that value drifted."""
    psi = segment_series("segment_drift_psi", keys)
    threshold = segment_series("segment_drift_threshold", keys)
    return aggregate("max", f"{psi} / {threshold}", SEGMENT_BY)


def worst_segments_by_accuracy(keys: Sequence[str]) -> str:
    """Per segment value, its lowest realized accuracy (0..1) over versions in the window."""
    return aggregate("min", segment_series("segment_accuracy_ratio", keys), SEGMENT_BY)


def worst_segments_by_agreement(keys: Sequence[str]) -> str:
    """Per segment value, its lowest agreement with the reference model (0..1) over
    versions in the window."""
    return aggregate("min", segment_series("segment_shadow_agreement_ratio", keys),
                     SEGMENT_BY)


def segment_labelled(keys: Sequence[str]) -> str:
    """Per segment value, labelled predictions in the window (the accuracy's sample size)."""
    return total(segment_series("segment_labelled_events", keys), SEGMENT_BY)


# --- drift -------------------------------------------------------------------------------

def baseline_info() -> str:
    """The selected models' baselines: source, state (collecting | sealed), their own
    version and hash as labels; value 1. Not filtered by `$version`: a baseline's `version`
    is its own, not a model version."""
    return series("baseline_info", MODEL)


def baseline_events() -> str:
    """Predictions, labelled predictions and images the selected models' baselines rest on
    (or have collected so far), by kind."""
    return series("baseline_events", MODEL)


def drift(short: str, features: Sequence[str] | None = None) -> str:
    """A per-feature drift gauge (`drift_psi`, `drift_kl`, `drift_threshold`)."""
    extra = () if features is None else (regex("feature", alternation(features)),)
    return series(short, *MVW, *extra)


def drift_flag_by_feature() -> str:
    """1 where a feature's PSI exceeds its exported critical value, else 0 (worst version)."""
    psi, threshold = drift("drift_psi"), drift("drift_threshold")
    return aggregate("max", f"{psi} > bool {threshold}", ("feature",))


def embedding_drift_flag() -> str:
    """1 where embedding MMD^2 exceeds its calibrated critical value, else 0."""
    mmd, threshold = windowed_gauge("embedding_mmd"), windowed_gauge("embedding_mmd_threshold")
    return aggregate("max", f"{mmd} > bool {threshold}")


def drift_tests_over_by_version() -> str:
    """Input and prediction features whose PSI is over its critical value, per version (0
    when none)."""
    return total(f"{drift('drift_psi')} > bool {drift('drift_threshold')}", ("version",))


def embedding_drift_by_version() -> str:
    """1 where the embedding MMD test is over its critical value, per version, else 0."""
    mmd, threshold = windowed_gauge("embedding_mmd"), windowed_gauge("embedding_mmd_threshold")
    return aggregate("max", f"{mmd} > bool {threshold}", ("version",))


def _share_by_version(short: str, good: Matcher, *extra: Matcher) -> str:
    """`good` events of a counter over all of them, per version, over the window (0..1)."""
    every = (*MODEL_VERSION, *extra)
    return ratio(total(increase(series(short, *every, good), "$window"), ("version",)),
                 total(increase(series(short, *every), "$window"), ("version",)))


def shadow_agreement_by_version() -> str:
    """Share of scored images on which production agreed with the reference model, per
    version over the window (0..1)."""
    return _share_by_version("shadow_scored_total", eq("outcome", AGREE))


def top5_accuracy_by_version(models: Sequence[str]) -> str:
    """Share of labelled predictions whose label is among the top 5, per version over the
    window (0..1), for `models` only (top-5 says nothing with 5 classes or fewer)."""
    which = regex("model", alternation(models))
    hits = total(increase(series("top5_correct_total", *MODEL_VERSION, which), "$window"),
                 ("version",))
    labeled = total(increase(series("labeled_predictions_total", *MODEL_VERSION, which),
                             "$window"), ("version",))
    return ratio(hits, labeled)


def feature_share_now(feature: str) -> str:
    """Share of events per baseline bin of `feature` in the selected window (0..1)."""
    counts = increase(series("feature_bin_total", *MODEL_VERSION, eq("feature", feature)),
                      "$window")
    return f"{total(counts, ('bin',))} / ignoring(bin) group_left {total(counts)}"


def feature_share_baseline(feature: str) -> str:
    """Baseline share per bin of `feature` (0..1)."""
    return aggregate("avg", series("baseline_bin_ratio", *MODEL_VERSION,
                                   eq("feature", feature)), ("bin",))


def confidence_histogram() -> str:
    """Top-1 confidence histogram: predictions per bucket per rate interval (for a heatmap)."""
    buckets = increase(series("prediction_confidence", *MODEL_VERSION, part="bucket"),
                       RATE_INTERVAL)
    return total(buckets, ("le",))


# --- cost proxy --------------------------------------------------------------------------

def reference_images_per_second() -> str:
    """Images scored by the reference model per second."""
    return total(rate(series("reference_images_scored_total", MODEL)), ("model",))


def reference_batch_seconds_quantile(q: float) -> str:
    """Quantile of one reference-model batch's inference time, seconds."""
    return histogram_quantile(q, "reference_batch_seconds", (MODEL,), by=("model",))


# --- cost and GPU use (recordings of the `cost:` section, alerts/cost_rules.py) ---------

def cost_per_million_predictions() -> str:
    """Cost per million successful predictions over the last hour (the `cost:` currency)."""
    return recorded(cs.COST_PER_MILLION, MODEL)


def cost_per_million_predictions_daily_mean() -> str:
    """The same averaged over the last day: the line the current hour is compared with."""
    return f"avg_over_time({cost_per_million_predictions()}[1d])"


def cost_per_hour() -> str:
    """What serving the model costs per hour (the `cost:` currency)."""
    return recorded(cs.COST_PER_HOUR, MODEL)


def gpu_utilization() -> str:
    """Mean utilisation of the model's GPUs over 5 minutes (0..1, DCGM)."""
    return recorded(cs.GPU_UTILIZATION, MODEL)


def predictions_per_gpu_second() -> str:
    """Successful predictions per busy GPU-second over 5 minutes."""
    return recorded(cs.PREDICTIONS_PER_GPU_SECOND, MODEL)


def energy_per_prediction() -> str:
    """GPU energy per successful prediction over 5 minutes, joules."""
    return recorded(cs.ENERGY_PER_PREDICTION, MODEL)


# --- SLOs --------------------------------------------------------------------------------

def _objective_matchers(obj: Objective) -> tuple[Matcher, ...]:
    matchers = [eq("model", obj.model)]
    if obj.version is not None:
        matchers.append(eq("version", obj.version))
    return tuple(matchers)


def error_budget(obj: Objective) -> float:
    """Allowed bad share: 1 - target (e.g. 0.001 for 99.9 %)."""
    return 1.0 - obj.target


def _number(value: float) -> str:
    return f"{value:.6g}"


def _latency_bound(obj: Objective) -> str:
    bound = obj.latency_threshold_seconds
    buckets = CATALOG[metric("request_latency_seconds")].buckets
    if bound is None or bound not in buckets:
        raise ConfigError(
            f"slos.objectives[{obj.name}]: latency_threshold_seconds must be one of the latency "
            f"histogram buckets {list(buckets)}, got {bound!r}")
    return le_label(bound)


#: The labelled-prediction counter of each class kind: by true class for recall, by
#: predicted class for precision.
_CLASS_COUNTER = {"class_recall": "labels_total", "class_precision": "labeled_predictions_total"}


def slo_error_ratio(obj: Objective, window: str, classes: Sequence[str] = ()) -> str:
    """Share of bad events (0..1) for one objective over `window` (a PromQL duration); per
    class for a class kind, whose `classes` are the ones it judges."""
    m = _objective_matchers(obj)
    if obj.kind in _CLASS_COUNTER:
        which = regex("class", alternation(classes))
        wrong = series(_CLASS_COUNTER[obj.kind], *m, which, eq("outcome", INCORRECT))
        labeled = series(_CLASS_COUNTER[obj.kind], *m, which)
        return ratio(total(rate(wrong, window), ("class",)),
                     total(rate(labeled, window), ("class",)))
    if obj.kind == "availability":
        bad = series("requests_total", *m, eq("status", "error"))
        every = series("requests_total", *m)
        return ratio(total(rate(bad, window)), total(rate(every, window)))
    if obj.kind == "latency":
        fast = series("request_latency_seconds", *m, eq("le", _latency_bound(obj)),
                      part="bucket")
        every = series("request_latency_seconds", *m, part="count")
        return f"1 - {ratio(total(rate(fast, window)), total(rate(every, window)))}"
    if obj.kind == "accuracy":
        wrong = series("labeled_predictions_total", *m, eq("outcome", INCORRECT))
        labeled = series("labeled_predictions_total", *m)
        return ratio(total(rate(wrong, window)), total(rate(labeled, window)))
    if obj.kind == "false_accept_rate":
        false_accepts = series("acceptance_decisions_total", *m, eq("outcome", "false_accept"))
        labeled = series("acceptance_decisions_total", *m)
        return ratio(total(rate(false_accepts, window)), total(rate(labeled, window)))
    objective = eq("objective", obj.quality_objective or obj.name)
    good = series("eval_windows_good_total", *m, objective)
    slices = series("eval_windows_total", *m, objective)
    return f"1 - {ratio(total(increase(good, window)), total(increase(slices, window)))}"


def burn_rate(obj: Objective, window: str, classes: Sequence[str] = ()) -> str:
    """How many times faster than sustainable the error budget burns over `window` (x);
    per class for a class kind."""
    return f"{group(slo_error_ratio(obj, window, classes))} / {_number(error_budget(obj))}"


def _worst_class(obj: Objective, expr: str) -> str:
    """A class kind's worst class (its largest error ratio); other kinds unchanged."""
    return f"max({expr})" if obj.kind in _CLASS_COUNTER else expr


def slo_attainment(obj: Objective, period: str, classes: Sequence[str] = ()) -> str:
    """Good share (0..1) over the SLO period, to compare with the target (a class kind's
    worst class)."""
    return f"1 - {group(_worst_class(obj, slo_error_ratio(obj, period, classes)))}"


def error_budget_remaining(obj: Objective, period: str, classes: Sequence[str] = ()) -> str:
    """Share of the period's error budget not yet spent (1 = untouched, <= 0 = exhausted; a
    class kind's worst class)."""
    worst = _worst_class(obj, slo_error_ratio(obj, period, classes))
    return f"1 - {group(worst)} / {_number(error_budget(obj))}"
