"""A demo-like run through the real broker, with a baseline the live daemon fits from its
first events (`baseline.mode: first_events`) and a canary that drifts: replaying a range
that starts long after those first events reproduces the live daemon's drift figures
within 1 %, because the replay takes the daemon's baseline from its checkpoint; and
`visionmon baseline export` writes that same baseline."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaProducer

from monitor import baseline as baseline_mod
from monitor.config import load_config
from tests.conftest import CLASSES, base_config, parse_metrics, scrape, wait_for, write_config
from tests.replay.test_replay import final_samples
from visionmon import cli
from visionmon.broker import EmbeddedBroker, create_topics
from visionmon.traffic import SyntheticTraffic, TrafficShape, ndjson

pytestmark = pytest.mark.slow  # left out of `make test-fast`

#: event seconds of traffic; the canary starts at CANARY_S
RUN_S = 720
CANARY_S = 300
#: event seconds produced before the rest: enough for the baseline's first events
BASELINE_S = 120
#: the replayed range starts here: after the baseline's first events and the canary's
#: start, and more than the 5m window before the end
REPLAY_FROM_S = 400
FIRST_EVENTS = 500
WINDOW = "5m"

Key = tuple[str, frozenset[tuple[str, str]]]


@dataclass
class LiveRun:
    t0: float
    config: Path
    live: dict[Key, float]
    tmp: Path


def _run(cmd: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = cli.main(cmd)
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def live_run(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[LiveRun]:
    """Twelve minutes of event time: v1 steady, from minute 5 a canary v2 whose classes and
    confidences differ; consumed by a live daemon that fits its baseline from the first
    500 predictions (the first two minutes, produced first) and checkpoints; scraped at
    the end, then stopped."""
    from visionmon.app import App, wait_ready

    tmp = tmp_path_factory.mktemp("live-drift")
    n = int(time.time())
    names = {"predictions": f"ld-pred-{n}", "images": f"ld-img-{n}", "feedback": f"ld-fb-{n}"}
    create_topics(broker.bootstrap, list(names.values()), 1)
    cfg = base_config(broker.bootstrap, names, models=[{"name": "digits", "classes": CLASSES}],
                      windows={"sizes": [WINDOW, "1h"], "slices": 60},
                      baseline={"mode": "first_events", "events": FIRST_EVENTS},
                      state={"checkpoint_dir": str(tmp / "state"),
                             "checkpoint_interval_seconds": 1.0})
    config = write_config(tmp, cfg)
    t0 = math.floor(time.time() / 60) * 60 - 1800.0
    v1 = SyntheticTraffic("digits", "v1", CLASSES, seed=1)
    prior = np.linspace(1.0, 3.0, len(CLASSES))
    v2 = SyntheticTraffic("digits", "v2", CLASSES, seed=2, prior=prior / prior.sum(),
                          shape=TrafficShape(concentration=3.0))
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    produced = 0

    def produce(start_s: int, end_s: int) -> None:
        nonlocal produced
        for at in range(start_s, end_s, 2):
            ts = t0 + at
            batch = v1.events(16, ts) + (v2.events(8, ts) if at >= CANARY_S else [])
            producer.send(names["predictions"], ndjson(batch), timestamp_ms=int(ts * 1000))
            produced += 1
        producer.flush()

    app = App(load_config(config))
    running = app.start_background()
    try:
        wait_ready(app.daemon, 60)

        def consumed() -> float:
            m = parse_metrics(scrape(running.url))
            key = ("visionmon_records_consumed_total",
                   frozenset({("topic", names["predictions"])}))
            return m.get(key, 0.0)

        # as live traffic comes: the baseline's two minutes first, then the run
        produce(0, BASELINE_S)
        wait_for(lambda: consumed() == produced, 60, what="the daemon to seal its baseline")
        produce(BASELINE_S, RUN_S)
        wait_for(lambda: consumed() == produced, 60, what="the daemon to consume the run")
        live = parse_metrics(scrape(running.url))
    finally:
        producer.close()
        running.stop()   # writes the final checkpoint
    yield LiveRun(t0, config, live, tmp)


def drift_psi(values: dict[Key, float], window: str = WINDOW) -> dict[tuple[str, str], float]:
    """(version, feature) -> PSI of the window."""
    return {(dict(k)["version"], dict(k)["feature"]): v for (name, k), v in values.items()
            if name == "visionmon_drift_psi" and dict(k)["window"] == window}


def replay(run: LiveRun, out: str, *options: str) -> tuple[dict[tuple[str, str], float], str]:
    rc, printed, err = _run(["replay", "--config", str(run.config),
                             "--since", str(run.t0 + REPLAY_FROM_S),
                             "--until", str(run.t0 + RUN_S), "--out", str(run.tmp / out),
                             "--no-progress", *options])
    assert rc == 0, err
    values, _ = final_samples(run.tmp / out)
    return drift_psi(values), printed


def test_replaying_the_run_reproduces_the_live_drift_figures_within_one_percent(
        live_run: LiveRun) -> None:
    live = drift_psi(live_run.live)
    # the figures compared are real ones: both versions, every prediction feature, and
    # the canary drifting far past what the steady version shows
    assert {v for v, _ in live} == {"v1", "v2"} and len(live) >= 8
    assert live[("v2", "predicted_class")] > 5 * live[("v1", "predicted_class")]
    replayed, printed = replay(live_run, "checkpoint.om")
    assert "baseline  digits: the checkpoint" in printed
    assert set(replayed) == set(live)
    far = {k: (replayed[k], live[k]) for k in live
           if replayed[k] != pytest.approx(live[k], rel=0.01)}
    assert not far, far


def test_a_baseline_fitted_from_the_replayed_range_would_not_reproduce_them(
        live_run: LiveRun) -> None:
    live = drift_psi(live_run.live)
    fitted, printed = replay(live_run, "fitted.om", "--fit-baseline")
    assert "fitted from the range's first 500 events" in printed
    far = [k for k in live if fitted.get(k) != pytest.approx(live[k], rel=0.01)]
    assert len(far) >= len(live) // 2, (fitted, live)


def test_export_writes_the_live_baseline_and_replaying_with_it_gives_the_same_figures(
        live_run: LiveRun) -> None:
    out = live_run.tmp / "exported.json"
    rc, _, err = _run(["baseline", "export", "--config", str(live_run.config),
                       "--out", str(out)])
    assert rc == 0, err
    b = baseline_mod.load(out, "digits", CLASSES)
    info = [dict(k) for name, k in live_run.live if name == "visionmon_baseline_info"]
    assert [i["sha256"] for i in info] == [b.sha256[:16]]
    assert b.events == FIRST_EVENTS
    named, printed = replay(live_run, "named.om", "--baseline", str(out),
                            "--no-baseline-from-checkpoint")
    assert "baseline  digits: --baseline file" in printed
    checkpointed, _ = replay(live_run, "again.om")
    assert named == checkpointed


def test_a_replay_from_the_first_event_keeps_the_baselines_events_out_as_the_daemon_did(
        live_run: LiveRun) -> None:
    """From before the first event, the replay meets the events the live baseline was
    collected from: like the daemon, it leaves them out of the drift windows (the 1h window
    holds the whole run), and says the baseline came from first events."""
    rc, _, err = _run(["replay", "--config", str(live_run.config), "--since",
                       str(live_run.t0 - 1), "--until", str(live_run.t0 + RUN_S), "--out",
                       str(live_run.tmp / "whole.om"), "--no-progress"])
    assert rc == 0, err
    values, _ = final_samples(live_run.tmp / "whole.om")

    def events(vals: dict[Key, float]) -> dict[tuple[str, str], float]:
        return {(dict(k)["version"], dict(k)["feature"]): v for (name, k), v in vals.items()
                if name == "visionmon_drift_window_events" and dict(k)["window"] == "1h"}

    assert events(values) == events(live_run.live)
    assert events(values)[("v1", "confidence")] < 16 * RUN_S / 2   # the baseline's are out
    replayed, live = drift_psi(values, "1h"), drift_psi(live_run.live, "1h")
    far = {k: (replayed.get(k), live[k]) for k in live
           if replayed.get(k) != pytest.approx(live[k], rel=0.01)}
    assert not far, far
    sources = {dict(k)["source"] for name, k in values if name == "visionmon_baseline_info"}
    assert sources == {"first_events"}
