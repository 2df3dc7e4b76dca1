"""The promtool test case of each threshold check: one pure function per check,
(rule, resolved check, step) -> a scenario whose expected alerts are computed here.

Each builder is a column of `alerts.checks.CHECKS`. A case fires after the rule's `for:`
and is silent one step before; a series just inside the bound (or a blip shorter than
`for:`) never fires; it resolves. Series are labelled as the daemon labels them, and the
metric and comparison come from the resolved check, so a case reads what its rule reads.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from alerts import names
from alerts.model import Check
from alerts.rules import AlertingRule, number
from alerts.scenario import ScenarioError, labels_text, series_values, steps_text
from alerts.simulate import hold, window_delta
from alerts.templates import QueryResult, render
from alerts.thresholds import LABEL_COVERAGE_LOOKBACK
from monitor.catalog import ECE_SOURCE_LABELS, ECE_SOURCE_REFERENCE, metric
from monitor.durations import format_duration, parse_duration

#: How a check's `comparison` compares a value with its bound, as PromQL does.
COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt, "<": operator.lt, "==": operator.eq}


@dataclass(slots=True)
class Instance:
    """One alert instance: its labels, and per step the expression's value (None: the
    expression does not return it) and the annotation query results."""

    labels: dict[str, str]
    values: list[float | None]
    queries: list[dict[str, QueryResult]] = field(default_factory=list)
    fires: bool = False


@dataclass(slots=True)
class ThresholdCase:
    """A sentence, input series and the alert instances expected of them. Instance `main`
    is the one whose firing and resolving steps are asserted; every other one must fire
    (or stay silent) as its `fires` says."""

    name: str
    rule: AlertingRule
    series: dict[str, list[float]]
    instances: list[Instance]
    step_s: int
    main: int = 0

    def firing(self) -> list[list[bool]]:
        steps = self.rule.for_s // self.step_s
        return [hold([v is not None for v in inst.values], steps) for inst in self.instances]

    def checks(self) -> tuple[int, ...]:
        timeline = self.firing()[self.main]
        fire = timeline.index(True)
        resolved = timeline.index(False, fire)
        return tuple(sorted({fire - 1, fire, resolved - 1, resolved, len(timeline) - 1}))

    def exp_alerts(self, t: int) -> list[dict[str, Any]]:
        out = []
        for inst, timeline in zip(self.instances, self.firing(), strict=True):
            if not timeline[t]:
                continue
            value = inst.values[t]
            assert value is not None
            labels = {**inst.labels, **dict(self.rule.labels)}
            queries = inst.queries[t] if inst.queries else {}
            out.append({"exp_labels": labels,
                        "exp_annotations": {k: render(tpl, labels, value, queries)
                                            for k, tpl in self.rule.annotations}})
        return out

    def to_test(self) -> dict[str, Any]:
        fire = self.firing()[self.main]
        assert True in fire, f"{self.name}: the main series never fires"
        for i, (inst, f) in enumerate(zip(self.instances, self.firing(), strict=True)):
            if i != self.main and any(f) != inst.fires:
                raise ScenarioError(f"{self.name}: series {inst.labels} "
                                    + ("never fires" if inst.fires else "fires"))
        return {
            "name": self.name,
            "interval": format_duration(self.step_s),
            "input_series": [{"series": s, "values": series_values(v)}
                             for s, v in self.series.items()],
            "alert_rule_test": [
                {"eval_time": steps_text(t, self.step_s), "alertname": self.rule.alert,
                 "exp_alerts": self.exp_alerts(t)} for t in self.checks()],
        }


def _steps(*runs: tuple[int, float]) -> list[float]:
    """Concatenate (count, value) runs into a per-step gauge."""
    return [v for n, v in runs for _ in range(n)]


def _cumulative(increments: Iterable[float]) -> list[float]:
    out = [0.0]
    for inc in increments:
        out.append(out[-1] + inc)
    return out


def _bound(c: Check) -> float:
    assert c.bound is not None, f"check {c.key} has no bound"
    return c.bound


def _gauge_case(rule: AlertingRule, c: Check, step_s: int, name: str,
                base: dict[str, str], bad: float, near: float, good: float,
                fmt_near: str, ignored: tuple[str, dict[str, str]] | None = None
                ) -> ThresholdCase:
    """The check's gauge compared with its bound: a bad spell longer than `for:`, a series
    just inside the bound, and a bad blip one step shorter than `for:`. `ignored`: a
    sentence and labels of a series the rule must not read, bad as long as the main one."""
    bound, compare = _bound(c), COMPARE[c.comparison]
    f = rule.for_s // step_s
    lead, bad_len, tail = 5, f + 5, 5
    total = lead + bad_len + tail
    main = _steps((lead, good), (bad_len, bad), (tail, good))
    near_s = _steps((total, near))
    blip = _steps((lead, good), (max(f - 1, 0), bad), (total - lead - max(f - 1, 0), good))
    variants = [("main", main), ("near", near_s)] + ([("blip", blip)] if f >= 2 else [])
    series, instances = {}, []
    for tag, values in variants:
        labels = {**base, "model": f"{base.get('model', 'digits')}-{tag}"} if "model" in base \
            else {**base, "instance": tag}
        series[labels_text(metric(c.metric), labels)] = values
        instances.append(Instance(labels, [v if compare(v, bound) else None for v in values]))
    ignored_text = ""
    if ignored is not None:
        ignored_text, labels = f", {ignored[0]}", {**base, **ignored[1]}
        series[labels_text(metric(c.metric), labels)] = main
        instances.append(Instance(labels, [None] * total))
    blip_text = f", a {steps_text(max(f - 1, 0), step_s)} blip" if f >= 2 else ""
    full = (f"{name} fires after {steps_text(f, step_s)}, not {steps_text(1, step_s)} earlier; "
            f"{fmt_near}{blip_text}{ignored_text} never fires; it resolves when the value "
            "recovers")
    return ThresholdCase(full, rule, series, instances, step_s)


_MV = {"model": "digits", "version": "v1"}


#: The daemon's input features of a sampled image (with a reference model), which a camera
#: change moves together.
CAMERA_FEATURES = ("brightness", "contrast", "saturation", "red_mean", "green_mean",
                   "blue_mean", "width", "height", "bytes", "sharpness", "jpeg_quality",
                   "duplicate", *(f"embedding_pc{i}" for i in range(1, 9)))
#: A version whose declared rollout lasts through a case: its tickets are held back.
ROLLOUT_VERSION = "v-canary"


def _rollout_series(case: ThresholdCase, model: str = "digits") -> ThresholdCase:
    """The case with `ROLLOUT_VERSION` of `model` in a declared rollout at every step."""
    steps = len(next(iter(case.series.values())))
    labels = {"model": model, "version": ROLLOUT_VERSION}
    case.series[labels_text(names.ROLLOUT_ACTIVE, labels)] = [1.0] * steps
    return case


def drift_case(rule: AlertingRule, c: Check, step_s: int) -> ThresholdCase:
    window = c.window or ""
    f = rule.for_s // step_s
    lead, bad_len, tail = 5, f + 5, 5
    total = lead + bad_len + tail
    threshold, mmd_critical = 0.05, 2.7
    # a camera change: the 20 input features and the embeddings move, each by a different
    # amount; the prediction feature margin stays just under its critical value
    moved = {f: round(0.06 + 0.005 * i, 4) for i, f in enumerate(CAMERA_FEATURES)}
    moved["margin"] = 0.049
    mmd_moved = 4.5

    def spell(length: int, bad: float, good: float) -> list[float]:
        return _steps((lead, good), (length, bad), (total - lead - length, good))

    series: dict[str, list[float]] = {}
    versions = [("v1", bad_len, True), (ROLLOUT_VERSION, bad_len, False)]
    if f >= 2:
        versions.append(("v2", f - 1, False))
    instances = []
    for version, length, fires in versions:
        base = {"model": "digits", "version": version}
        ratios: list[list[tuple[str, float]]] = [[] for _ in range(total)]
        for feature, psi in moved.items():
            labels = {**base, "feature": feature, "window": window}
            values = spell(length, psi, 0.02)
            series[labels_text(metric(c.metric), labels)] = values
            series[labels_text(metric("drift_threshold"), labels)] = _steps((total, threshold))
            for t, v in enumerate(values):
                ratios[t].append((feature, v / threshold))
        mmd = spell(length, mmd_moved, 1.0)
        mmd_labels = {**base, "window": window}
        series[labels_text(metric("embedding_mmd"), mmd_labels)] = mmd
        series[labels_text(metric("embedding_mmd_threshold"), mmd_labels)] = _steps(
            (total, mmd_critical))
        for t, v in enumerate(mmd):
            ratios[t].append((names.EMBEDDING_MMD_FEATURE, v / mmd_critical))
        over = [tuple(sorted(((n, r) for n, r in step if r > 1), key=lambda p: -p[1]))
                for step in ratios]
        held_back = version == ROLLOUT_VERSION
        instances.append(Instance(
            {**base, "window": window},
            [float(len(o)) if o and not held_back else None for o in over],
            [{"drifted": o, "worst": (max(step, key=lambda p: p[1]),)}
             for o, step in zip(over, ratios, strict=True)],
            fires=fires))
    name = (f"drift: a camera change moving the {len(CAMERA_FEATURES)} input features and the "
            "embeddings over their critical values is one alert for the model and version, "
            "listing them furthest first, after "
            f"{steps_text(f, step_s)}, not {steps_text(1, step_s)} earlier; a feature just "
            "under its critical value is not listed; the same drift of a version during its "
            "declared rollout"
            + (f" and a {steps_text(f - 1, step_s)} blip" if f >= 2 else "")
            + " never fire; it resolves when the statistics drop")
    return _rollout_series(ThresholdCase(name, rule, series, instances, step_s))


def ece_case(rule: AlertingRule, c: Check, step_s: int) -> ThresholdCase:
    b = _bound(c)
    return _gauge_case(rule, c, step_s, "calibration: ECE above its bound",
                       {**_MV, "window": c.window or "", "source": ECE_SOURCE_LABELS},
                       bad=round(b + 0.05, 6), near=round(b - 0.001, 6), good=round(b / 2, 6),
                       fmt_near=f"ECE {number(round(b - 0.001, 6))}",
                       ignored=(f"the same ECE against the reference model "
                                f"(source {ECE_SOURCE_REFERENCE})",
                                {"model": "digits-reference", "source": ECE_SOURCE_REFERENCE}))


#: The `ignored` series of an agreement case: a version in its declared rollout.
_IN_ROLLOUT = ("the same drop of a version during its declared rollout",
               {"model": "digits", "version": ROLLOUT_VERSION})


def shadow_case(rule: AlertingRule, c: Check, step_s: int) -> ThresholdCase:
    b = _bound(c)
    return _rollout_series(_gauge_case(
        rule, c, step_s, "shadow agreement: agreement below its bound",
        {**_MV, "window": c.window or ""}, bad=round(b - 0.1, 6), near=round(b + 0.001, 6),
        good=round((1 + b) / 2, 6), fmt_near=f"agreement {number(round(b + 0.001, 6))}",
        ignored=_IN_ROLLOUT))


def shadow_drop_case(rule: AlertingRule, c: Check, step_s: int) -> ThresholdCase:
    a = _bound(c)
    near = float(f"{a * 1.001:.6g}")
    return _rollout_series(_gauge_case(
        rule, c, step_s, "shadow agreement drop: agreement significantly under the baseline's",
        {**_MV, "window": c.window or ""}, bad=float(f"{a / 100:.3g}"), near=near, good=0.5,
        fmt_near=f"p-value {number(near)}", ignored=_IN_ROLLOUT))


def coverage_case(rule: AlertingRule, c: Check, step_s: int) -> ThresholdCase:
    bound, window = _bound(c), c.window or ""
    f = rule.for_s // step_s
    lookback = parse_duration(LABEL_COVERAGE_LOOKBACK) // step_s
    lead, bad_len, tail = 5, f + 5, 5
    healthy, collapsed = round(bound * 20, 6), round(bound / 10, 6)
    main = _steps((lead, healthy), (bad_len, collapsed), (tail, healthy))
    never = _steps((lead + bad_len + tail, collapsed))
    series, instances = {}, []
    for model, values in (("digits", main), ("fashion", never)):
        labels = {"model": model, "version": "v1", "window": window}
        series[labels_text(metric(c.metric), labels)] = values
        instances.append(Instance(labels, [
            v if v < bound and max(values[max(0, t - lookback):t + 1]) >= bound else None
            for t, v in enumerate(values)]))
    name = (f"label coverage: a drop below {number(bound * 100)}% fires after "
            f"{steps_text(f, step_s)}, not {steps_text(1, step_s)} earlier; a model that never "
            "had labels never fires; it resolves when labels return")
    return ThresholdCase(name, rule, series, instances, step_s)


def high_risk_recall_case(rule: AlertingRule, c: Check, step_s: int) -> ThresholdCase:
    """The first high-risk class collapses on v1; recall just over the bound (v2), the same
    collapse with too few labels (v3) and a class that is not high-risk never fire."""
    bound, window = _bound(c), c.window or ""
    model, classes = c.classes[0]
    high_risk = classes[0]
    f = rule.for_s // step_s
    lead, bad_len, tail = 5, f + 5, 5
    total = lead + bad_len + tail
    healthy, collapsed, near = 0.95, 0.07, round(bound + 0.01, 6)
    labels_per_step = float(max(c.min_records or 0, 10))
    plenty = _cumulative([labels_per_step] * (total - 1))
    few = _steps((total, 1.0))
    cases = [("v1", high_risk, _steps((lead, healthy), (bad_len, collapsed), (tail, healthy)),
              plenty),
             ("v2", high_risk, _steps((total, near)), plenty),
             ("v3", high_risk, _steps((total, collapsed)), few),
             ("v1", "class-not-high-risk", _steps((total, collapsed)), plenty)]
    series, instances = {}, []
    for version, cls, recall, labels in cases:
        base = {"model": model, "version": version, "class": cls}
        series[labels_text(metric(c.metric), {**base, "window": window})] = recall
        series[labels_text(metric("labels_total"), {**base, "outcome": "correct"})] = labels
        judged = cls in classes and labels is plenty
        instances.append(Instance({**base, "window": window},
                                  [v if judged and v < bound and t > 0 else None
                                   for t, v in enumerate(recall)], fires=False))
    name = (f"high-risk recall: recall of {high_risk} at {number(collapsed * 100)}% fires after "
            f"{steps_text(f, step_s)}, not {steps_text(1, step_s)} earlier; recall "
            f"{number(near * 100)}%, the same collapse with fewer than {c.min_records} labels "
            "and a class that is not high-risk never fire; it resolves when recall recovers")
    return ThresholdCase(name, rule, series, instances, step_s)


def lag_case(rule: AlertingRule, c: Check, step_s: int) -> ThresholdCase:
    min_records, range_s = c.min_records or 0, c.range_s or step_s
    f, w = rule.for_s // step_s, range_s // step_s
    growth = max(100, min_records // 5)
    lead = 5
    grow_steps = min_records // growth + 2 + f + 5
    increments = [0.0] * lead + [float(growth)] * grow_steps + [0.0] * (w + 5)
    lag = _cumulative(increments)
    stable = [float(min_records * 5)] * len(lag)

    def growing(values: list[float], t: int) -> float | None:
        lo = max(0, t - w)
        window = values[lo:t + 1]
        if len(window) < 2 or not values[t] > min_records or min(window) == max(window):
            return None
        return values[t]

    labels_main = {"topic": "predictions", "partition": "0"}
    labels_stable = {"topic": "predictions", "partition": "1"}
    series = {labels_text(metric(c.metric), labels_main): lag,
              labels_text(metric(c.metric), labels_stable): stable}
    instances = [Instance(labels_main, [growing(lag, t) for t in range(len(lag))]),
                 Instance(labels_stable, [growing(stable, t) for t in range(len(lag))])]
    name = (f"consumer lag: lag above {min_records} records and growing fires after "
            f"{steps_text(f, step_s)}, not {steps_text(1, step_s)} earlier; a large stable lag "
            f"never fires; it resolves {format_duration(range_s)} after the lag stops growing")
    return ThresholdCase(name, rule, series, instances, step_s)


def kafka_case(rule: AlertingRule, c: Check, step_s: int) -> ThresholdCase:
    return _gauge_case(rule, c, step_s, "kafka: a lost broker connection", {},
                       bad=0.0, near=1.0, good=1.0, fmt_near="a connected replica")


def no_events_case(rule: AlertingRule, c: Check, step_s: int) -> ThresholdCase:
    range_s = c.range_s or step_s
    w = range_s // step_s
    lead, gap, tail = 20, w + 5, 5
    per_step = 100.0
    incs = [per_step] * lead + [0.0] * gap + [per_step] * tail
    requests = _cumulative(incs)
    stop = lead
    last_ts = [float(min(i, stop) if i <= lead + gap else i) * step_s
               for i in range(len(requests))]
    sparse = _cumulative([1.0 if i % w == 0 else 0.0 for i in range(len(incs))])
    series = {
        labels_text(metric(c.metric), {**_MV, "status": "ok"}): requests,
        labels_text(metric("last_event_timestamp_seconds"), _MV): last_ts,
        labels_text(metric(c.metric), {"model": "fashion", "version": "v1", "status": "ok"}):
            sparse,
    }

    def quiet(counter: list[float], t: int) -> float | None:
        d = window_delta(counter, t, w)
        return 0.0 if d is not None and d == 0 else None

    n = len(requests)
    main = Instance({"model": "digits"}, [quiet(requests, t) for t in range(n)],
                    [{"age": float(t * step_s) - last_ts[t]} for t in range(n)])
    other = Instance({"model": "fashion"}, [quiet(sparse, t) for t in range(n)])
    name = (f"no events: a model without requests for {format_duration(range_s)} pages, not "
            f"{steps_text(1, step_s)} earlier; a model with one request every "
            f"{format_duration(range_s)} never does; it resolves when requests resume")
    return ThresholdCase(name, rule, series, [main, other], step_s)


def rejected_case(rule: AlertingRule, c: Check, step_s: int) -> ThresholdCase:
    bound, range_s = _bound(c), c.range_s or step_s
    f, w = rule.for_s // step_s, range_s // step_s
    lead, bad_len, tail = 5, w + f + 5, w + 2
    n = lead + bad_len + tail
    rejected_per_step = math.ceil(2 * bound * 1000)
    near_rejected = math.ceil(bound * 1000) - 1
    topics = {
        "predictions": ([0.0] * lead + [float(rejected_per_step)] * bad_len + [0.0] * tail,
                        [float(1000 - rejected_per_step)] * n),
        "feedback": ([float(near_rejected)] * n, [float(1000 - near_rejected)] * n),
        "images": ([0.0] * lead + [10.0] * bad_len + [0.0] * tail, None),
    }
    series: dict[str, list[float]] = {}
    instances = []
    per_second = 1.0 / float(w * step_s)  # as Prometheus 2.x rate() does
    for topic, (rej_inc, acc_inc) in topics.items():
        rej = _cumulative(rej_inc)
        series[labels_text(metric(c.metric), {"topic": topic, "reason": "invalid_json"})] = rej
        acc = None
        if acc_inc is not None:
            acc = _cumulative(acc_inc)
            series[labels_text(metric("events_accepted_total"), {"topic": topic})] = acc
        values: list[float | None] = []
        for t in range(n + 1):
            d_rej = window_delta(rej, t, w)
            if d_rej is None:
                values.append(None)
                continue
            r_rej = d_rej * per_second
            if acc is None:
                r_acc = 0 * r_rej
            else:
                d_acc = window_delta(acc, t, w)
                assert d_acc is not None
                r_acc = d_acc * per_second
            den = r_rej + r_acc
            ratio = r_rej / den if den else math.nan
            values.append(ratio if ratio > bound else None)
        instances.append(Instance({"topic": topic}, values, fires=topic == "images"))
    name = (f"rejected records: more than {number(bound * 100)}% rejected over "
            f"{format_duration(range_s)} fires after {steps_text(f, step_s)}, not "
            f"{steps_text(1, step_s)} earlier; {number(near_rejected / 10)}% never fires; a topic "
            "with only rejections fires too; it resolves when rejections stop")
    return ThresholdCase(name, rule, series, instances, step_s)


def reference_case(rule: AlertingRule, c: Check, step_s: int) -> ThresholdCase:
    return _gauge_case(rule, c, step_s, "reference model: shadow scoring down",
                       {"model": "digits"}, bad=0.0, near=1.0, good=1.0,
                       fmt_near="a running reference model")


def checkpoint_case(rule: AlertingRule, c: Check, step_s: int) -> ThresholdCase:
    """A daemon whose writes fail (six per step) while its last success ages; one whose
    writes fail now and then but also succeed; one that failed shorter than `for:`; and one
    that never wrote a checkpoint (no timestamp at all), which fires too."""
    assert c.range_s is not None and c.stale_s is not None
    stale_s, f, w = c.stale_s, rule.for_s // step_s, c.range_s // step_s
    lead, bad_len, tail = 5, f + 5, w + 2
    n = lead + bad_len + tail
    spell = [lead < i <= lead + bad_len for i in range(n + 1)]
    blip = [lead < i <= lead + max(f - 1, 0) for i in range(n + 1)]
    last, fail = metric("last_checkpoint_timestamp_seconds"), metric(c.metric)
    daemons: dict[str, tuple[list[bool], list[bool] | None]] = {
        # instance: (steps whose writes fail, steps whose writes succeed; None: never)
        "failing": (spell, [not s for s in spell]),
        "intermittent": ([True] * (n + 1), [True] * (n + 1)),
        "blip": (blip, [not s for s in blip]),
        "never-written": (spell, None),
    }
    series: dict[str, list[float]] = {}
    instances = []
    for instance, (fails, writes) in daemons.items():
        failures = _cumulative(6.0 if fails[i] else 0.0 for i in range(1, n + 1))
        series[labels_text(fail, {"instance": instance, "reason": "io"})] = failures
        last_ok: list[float | None] = [None] * (n + 1)
        if writes is not None:
            for i in range(n + 1):  # written 5 s before each scrape, or kept from before
                written = max(i * step_s - 5.0, 0.0)
                last_ok[i] = written if writes[i] else last_ok[i - 1] if i else None
            assert all(v is not None for v in last_ok), instance
            series[labels_text(last, {"instance": instance})] = [float(v or 0) for v in last_ok]
        values: list[float | None] = []
        queries: list[dict[str, QueryResult]] = []
        for t in range(n + 1):
            d = window_delta(failures, t, w)
            ok = last_ok[t]
            fresh = ok is not None and t * step_s - ok < stale_s
            values.append(d if d is not None and d > 0 and not fresh else None)
            queries.append({"age": None if ok is None else t * step_s - ok})
        instances.append(Instance({"instance": instance}, values, queries,
                                  fires=instance == "never-written"))
    name = (f"checkpoint failing: writes failing over {format_duration(c.range_s)} with no "
            f"success for {number(stale_s)}s fire after {steps_text(f, step_s)}, not "
            f"{steps_text(1, step_s)} earlier; failures between successful writes"
            + (f" and a {steps_text(f - 1, step_s)} spell" if f >= 2 else "")
            + " never fire; a daemon that never wrote one fires too; it resolves at the next "
            "successful write")
    return ThresholdCase(name, rule, series, instances, step_s)


def artifact_mismatch_case(rule: AlertingRule, c: Check, step_s: int) -> ThresholdCase:
    """Version v1 holds two artifacts and serves for a while, then stops serving; v2 holds
    two artifacts but serves nothing; v3 holds one artifact that two visionmon replicas
    both report (two `instance`s), and serves."""
    assert c.range_s is not None and c.bound is not None
    f, w = rule.for_s // step_s, c.range_s // step_s
    lead, serving, tail = 5, f + 5, w + 2
    n = lead + serving + tail
    busy = _cumulative([0.0] * lead + [50.0] * serving + [0.0] * tail)
    steady = _cumulative([50.0] * n)
    idle = [0.0] * (n + 1)
    sha = {"a": "a" * 64, "b": "b" * 64, "c": "c" * 64}
    versions: dict[str, tuple[list[tuple[str, str]], list[float]]] = {
        # version: ((sha256, instance) of each model_info series, requests)
        "v1": ([(sha["a"], "d1"), (sha["b"], "d1")], busy),
        "v2": ([(sha["a"], "d1"), (sha["b"], "d1")], idle),
        "v3": ([(sha["c"], "d1"), (sha["c"], "d2")], steady),
    }
    series: dict[str, list[float]] = {}
    instances = []
    for version, (artifacts, requests) in versions.items():
        mv = {"model": "digits", "version": version}
        for digest, instance in artifacts:
            labels = {**mv, "sha256": digest, "instance": instance}
            series[labels_text(metric(c.metric), labels)] = [1.0] * (n + 1)
        series[labels_text(metric("requests_total"), {**mv, "status": "ok"})] = requests
        hashes = float(len({digest for digest, _ in artifacts}))
        values: list[float | None] = []
        for t in range(n + 1):
            d = window_delta(requests, t, w)
            serving_now = d is not None and d > 0
            values.append(hashes if serving_now and hashes > c.bound else None)
        instances.append(Instance(mv, values))
    name = (f"artifact mismatch: two artifacts under one serving version fire after "
            f"{steps_text(f, step_s)}, not {steps_text(1, step_s)} earlier; two artifacts "
            "under a version without traffic, and one artifact reported by two visionmon "
            f"replicas, never fire; it resolves {format_duration(c.range_s)} after the "
            "version stops serving")
    return ThresholdCase(name, rule, series, instances, step_s)


def unusual_inputs_case(rule: AlertingRule, c: Check, step_s: int) -> ThresholdCase:
    """The kNN score's ratio over its critical value past `for:`; the energy score's ratio
    at its critical value (not over) and a blip one step shorter than `for:` never fire."""
    window = c.window or ""
    f = rule.for_s // step_s
    lead, bad_len, tail = 5, f + 5, 5
    total = lead + bad_len + tail
    critical, clean, unusual = 0.025, 0.01, 0.08
    short = max(f - 1, 0)
    variants = [("digits", "knn", _steps((lead, clean), (bad_len, unusual), (tail, clean))),
                ("digits", "energy", _steps((total, critical)))]
    if f >= 2:
        variants.append(("digits-blip", "knn", _steps((lead, clean), (short, unusual),
                                                      (total - lead - short, clean))))
    series, instances = {}, []
    for model, score, values in variants:
        labels = {"model": model, "version": "v1", "window": window, "score": score}
        series[labels_text(metric(c.metric), labels)] = values
        series[labels_text(metric("unusual_input_ratio_threshold"), labels)] = _steps(
            (total, critical))
        instances.append(Instance(labels, [v if v > critical else None for v in values]))
    blip_text = f", a {steps_text(short, step_s)} blip" if f >= 2 else ""
    name = (f"unusual inputs: a ratio over its critical value fires after "
            f"{steps_text(f, step_s)}, not {steps_text(1, step_s)} earlier; a ratio at its "
            f"critical value{blip_text} never fires; it resolves when the ratio recovers")
    return ThresholdCase(name, rule, series, instances, step_s)
