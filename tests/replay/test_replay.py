"""`visionmon replay` over a stretch recorded through the real broker gives the live run's
numbers, and writes OpenMetrics that promtool turns into Prometheus blocks."""

from __future__ import annotations

import io
import math
import shutil
import subprocess
from collections import defaultdict
from contextlib import redirect_stdout
from pathlib import Path

import orjson
import pytest

from monitor.config import load_config
from tests.conftest import CLASSES, metric_sum
from tests.replay.conftest import STRETCH_S, Recorded, read_samples
from visionmon import cli
from visionmon.postmortem.read import KafkaRangeReader
from visionmon.postmortem.replay import run_replay
from visionmon.postmortem.timerange import TimeRange

pytestmark = pytest.mark.slow  # left out of `make test-fast`

Key = tuple[str, frozenset[tuple[str, str]]]


def final_samples(path: Path) -> tuple[dict[Key, float], dict[Key, list[float]]]:
    """The last snapshot (every series at the file's last timestamp), and the timestamps
    of every series."""
    last: dict[Key, tuple[float, float]] = {}
    stamps: dict[Key, list[float]] = defaultdict(list)
    for name, labels, value, t in read_samples(path):
        key = (name, labels)
        stamps[key].append(t)
        if key not in last or t >= last[key][0]:
            last[key] = (t, value)
    end = max(t for t, _ in last.values())
    return {k: v for k, (t, v) in last.items() if t == end}, dict(stamps)


def same(a: float, b: float) -> bool:
    if float(a).is_integer() and float(b).is_integer():
        return a == b
    return a == pytest.approx(b, rel=1e-9, abs=1e-12)  # float sums in another order


def test_replayed_metrics_equal_the_live_run(recorded: Recorded) -> None:
    replayed, _ = final_samples(recorded.replay_out)
    names = {name for name, _ in replayed}
    live = {k: v for k, v in recorded.live.items() if k[0] in names}
    assert set(replayed) == set(live), (set(replayed) ^ set(live))
    differ = {k: (replayed[k], live[k]) for k in replayed if not same(replayed[k], live[k])}
    assert not differ
    # and the numbers are the ones produced, not two identical mistakes
    assert metric_sum(replayed, "visionmon_requests_total") == len(recorded.predictions)
    assert metric_sum(replayed, "visionmon_events_accepted_total",
                      topic=recorded.names["feedback"]) == len(recorded.feedback)
    assert metric_sum(replayed, "visionmon_records_rejected_total") == 5
    for family in ("visionmon_labels_total", "visionmon_drift_psi",
                   "visionmon_label_delay_seconds_count", "visionmon_baseline_info",
                   "visionmon_class_recall_ratio", "visionmon_confusion_pair_total"):
        assert family in names, family
    assert "rejected  5" in recorded.replay_stdout


def test_each_series_has_one_point_per_step_in_time_order(recorded: Recorded) -> None:
    _, stamps = final_samples(recorded.replay_out)
    for key, ts in stamps.items():
        assert ts == sorted(ts) and len(set(ts)) == len(ts), key
        grid = [t for t in ts[:-1] if not math.isclose(t % 15.0, 0.0, abs_tol=1e-6)]
        assert not grid, (key, grid)
    requests = [ts for (name, _), ts in stamps.items() if name == "visionmon_requests_total"]
    assert max(len(ts) for ts in requests) == STRETCH_S // 15 + 1
    text = recorded.replay_out.read_text()
    assert text.endswith("# EOF\n")
    seen: list[str] = [ln.split()[2] for ln in text.splitlines() if ln.startswith("# TYPE ")]
    assert len(seen) == len(set(seen)), "a metric family appears twice (not contiguous)"


def test_records_come_out_in_record_timestamp_order(recorded: Recorded) -> None:
    loaded = load_config(recorded.config)
    stamps = [(r.timestamp_ms, r.topic) for r in KafkaRangeReader(
        loaded, TimeRange(recorded.t0, recorded.t0 + STRETCH_S))]
    assert len(stamps) == sum(recorded.produced.values())
    assert [t for t, _ in stamps] == sorted(t for t, _ in stamps)
    assert len({topic for _, topic in stamps}) == 3


def test_a_narrower_range_keeps_records_and_events_inside_it(recorded: Recorded,
                                                             tmp_path: Path) -> None:
    since, until = recorded.t0 + 60, recorded.t0 + 120
    loaded = load_config(recorded.config)
    window = TimeRange(since, until)
    summary = run_replay(loaded, KafkaRangeReader(loaded, window), window,
                         tmp_path / "narrow.om")
    values, _ = final_samples(tmp_path / "narrow.om")

    def inside(pairs: list[tuple[float, float]]) -> int:
        return sum(1 for rts, ts in pairs if since <= rts <= until and since <= ts <= until)

    expected = inside(recorded.predictions)
    assert 0 < expected < len(recorded.predictions)
    assert metric_sum(values, "visionmon_requests_total") == expected
    assert summary.predictions == expected
    assert summary.events_outside > 0  # the lagging records' events fall before `since`
    assert metric_sum(values, "visionmon_events_accepted_total",
                      topic=recorded.names["feedback"]) == inside(recorded.feedback)
    assert summary.records_outside > 0  # offsets-for-times is only a lower bound on Tansu


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_turns_the_output_into_blocks_with_the_live_values(recorded: Recorded,
                                                                    tmp_path: Path) -> None:
    blocks = tmp_path / "data"
    made = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics",
                           str(recorded.replay_out), str(blocks)],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    (blocks / "wal").mkdir(exist_ok=True)  # `tsdb dump` opens the data dir as a TSDB
    dump = subprocess.run(["promtool", "tsdb", "dump", str(blocks)],
                          capture_output=True, text=True, timeout=60)
    assert dump.returncode == 0, dump.stderr
    newest: dict[str, tuple[int, float]] = {}
    for line in dump.stdout.splitlines():
        series, value, stamp = line.rsplit(" ", 2)
        if int(stamp) >= newest.get(series, (-1, 0.0))[0]:
            newest[series] = (int(stamp), float(value))
    _, stamps = final_samples(recorded.replay_out)
    assert len(newest) == len(stamps)  # every series of the file became a TSDB series
    assert sum(len(ts) for ts in stamps.values()) == len(dump.stdout.splitlines())
    for status in ("ok", "error"):
        for version in ("v1", "v2"):
            key = (f'{{__name__="visionmon_requests_total", model="digits", '
                   f'status="{status}", version="{version}"}}')
            live = recorded.live[("visionmon_requests_total", frozenset(
                {("model", "digits"), ("version", version), ("status", status)}))]
            assert newest[key][1] == live
    assert any(s.startswith('{__name__="visionmon_request_latency_seconds_bucket"')
               for s in newest)
    assert any(s.startswith('{__name__="visionmon_baseline_info"') for s in newest)


def test_replay_reads_json_lines_exported_from_elsewhere(tmp_path: Path) -> None:
    import yaml

    t0 = 1_700_000_000.0
    preds = [{"request_id": f"r{i}", "ts": t0 + i, "model": "digits", "version": "v1",
              "pred": CLASSES[i % 10], "confidence": 0.9, "latency_ms": 12.0}
             for i in range(100)]
    labels = [{"request_id": f"r{i}", "label": CLASSES[(i + (i % 4 == 0)) % 10],
               "ts": t0 + i + 3} for i in range(0, 100, 2)]
    (tmp_path / "p.jsonl").write_bytes(
        b"\n".join(orjson.dumps(p) for p in preds) + b"\nnot json\n")
    (tmp_path / "f.jsonl").write_bytes(b"\n".join(orjson.dumps(f) for f in labels))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(
        {"version": 1, "models": [{"name": "digits", "classes": CLASSES}]}))
    out = io.StringIO()
    with redirect_stdout(out):
        rc = cli.main(["replay", "--config", str(tmp_path / "c.yaml"),
                       "--from-jsonl", str(tmp_path / "p.jsonl"),
                       "--labels-jsonl", str(tmp_path / "f.jsonl"),
                       "--since", str(t0 + 10), "--until", str(t0 + 59),
                       "--step", "10", "--out", str(tmp_path / "x.om"), "--no-progress"])
    assert rc == 0
    values, stamps = final_samples(tmp_path / "x.om")
    assert metric_sum(values, "visionmon_requests_total") == 50  # ts 10..59
    # labels 10..56 at ts+3 <= 59, joined to predictions inside the range
    joined = metric_sum(values, "visionmon_labels_total")
    assert joined == len([i for i in range(10, 57, 2)])
    assert metric_sum(values, "visionmon_labels_total", outcome="incorrect") == \
        len([i for i in range(12, 57, 4)])
    assert all(t % 10 == 0 for ts in stamps.values() for t in ts[:-1])
    assert "100 predictions" not in out.getvalue() and "50 predictions" in out.getvalue()


def test_an_empty_range_is_refused_without_writing(tmp_path: Path) -> None:
    import yaml

    (tmp_path / "p.jsonl").write_bytes(orjson.dumps(
        {"request_id": "a", "ts": 100.0, "model": "digits", "version": "v1", "pred": 1}))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(
        {"version": 1, "models": [{"name": "digits", "classes": CLASSES}]}))
    rc = cli.main(["replay", "--config", str(tmp_path / "c.yaml"), "--from-jsonl",
                   str(tmp_path / "p.jsonl"), "--since", "200", "--until", "300",
                   "--out", str(tmp_path / "x.om"), "--no-progress"])
    assert rc == 2
    assert not (tmp_path / "x.om").exists()


@pytest.mark.filterwarnings(r"ignore:.*torch\.jit\..* is deprecated:DeprecationWarning")
def test_replay_scores_sampled_images_with_the_reference_model(recorded: Recorded,
                                                               tmp_path: Path) -> None:
    import yaml

    torch = pytest.importorskip("torch")
    from reference_model.digits import build_digits_reference

    torch.set_num_threads(1)
    art = build_digits_reference(tmp_path, thread_nice=0, epochs=2)
    cfg = yaml.safe_load(recorded.config.read_text())
    cfg["reference"] = art.config.model_dump(mode="json")
    (tmp_path / "shadow.yaml").write_text(yaml.safe_dump(cfg))
    loaded = load_config(tmp_path / "shadow.yaml")
    window = TimeRange(recorded.t0, recorded.t0 + STRETCH_S)
    summary = run_replay(loaded, KafkaRangeReader(loaded, window), window,
                         tmp_path / "shadow.om")
    values, _ = final_samples(tmp_path / "shadow.om")
    images = summary.images
    assert images == recorded.produced[recorded.names["images"]] - 1  # one had no headers
    assert metric_sum(values, "visionmon_reference_images_scored_total") == images
    assert metric_sum(values, "visionmon_shadow_scored_total") == images  # all joined
    assert metric_sum(values, "visionmon_shadow_class_total") == images
    info = [dict(k) for n, k in values if n == "visionmon_reference_model_info"]
    assert info and info[0]["sha256"] == art.sha256
    # the other counters are those of the replay without scoring
    plain, _ = final_samples(recorded.replay_out)
    assert metric_sum(values, "visionmon_labels_total") == metric_sum(plain,
                                                                      "visionmon_labels_total")
    # and the report draws shadow agreement by class from it
    from tests.replay.test_report import parse, render

    rc, printed = render(["--config", str(tmp_path / "shadow.yaml"), "--from-openmetrics",
                          str(tmp_path / "shadow.om"), "--thumbnails", "0",
                          "--out", str(tmp_path / "report")])
    assert rc == 0, printed
    shadow = parse(tmp_path / "report").sections["shadow"]
    assert not shadow.no_data and shadow.figures
    versions = parse(tmp_path / "report").sections["versions"]
    assert any(art.sha256 in row for row in versions.cells)
