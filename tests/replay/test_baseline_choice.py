"""`visionmon baseline export` writes the daemon's baseline from its checkpoint, byte-identical
on a round trip, and says why when it cannot; `visionmon replay` refuses to fit a baseline
from the replayed range unless told, naming the choices. No broker: the checkpoints are the
engine's own state, written by the daemon's checkpoint store."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from collectors.checkpoint import CheckpointStore
from monitor import baseline as baseline_mod
from monitor.config import load_config
from tests.conftest import CLASSES
from visionmon import cli
from visionmon.app import build_statistics
from visionmon.baseline_cli import read_events
from visionmon.traffic import SyntheticTraffic, TrafficShape, ndjson

FIRST_EVENTS = 200


def config(tmp: Path, name: str = "c.yaml", **over: Any) -> Path:
    """A one-model config; `over` replaces top-level sections."""
    cfg: dict[str, Any] = {"version": 1, "models": [{"name": "digits", "classes": CLASSES}],
                           "baseline": {"mode": "first_events", "events": FIRST_EVENTS},
                           "state": {"checkpoint_dir": str(tmp / "state")}}
    cfg.update(over)
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def checkpoint_after(path: Path, predictions: int) -> None:
    """What the daemon checkpoints after `predictions` successful predictions."""
    loaded = load_config(path)
    traffic = SyntheticTraffic("digits", "v1", CLASSES, seed=3,
                               shape=TrafficShape(error_rate=0.0))
    events, _ = read_events(loaded, iter([ndjson(traffic.events(predictions, 1000.0))]))
    stats = build_statistics(loaded)
    stats.engine.apply_predictions(events)
    store = CheckpointStore(loaded.config.state.checkpoint_dir or "")
    store.save({"engine": stats.engine.state(), "positions": [], "committed": [],
                "saved_at": 1000.0})


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = cli.main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def test_export_writes_the_checkpoints_baseline_and_a_round_trip_gives_the_same_bytes(
        tmp_path: Path) -> None:
    cfg = config(tmp_path)
    checkpoint_after(cfg, FIRST_EVENTS + 50)
    rc, out, err = run("baseline", "export", "--config", str(cfg),
                       "--out", str(tmp_path / "a.json"))
    assert rc == 0, err
    first = (tmp_path / "a.json").read_bytes()
    b = baseline_mod.load(tmp_path / "a.json", "digits", CLASSES)
    assert b.events == FIRST_EVENTS and b.source == f"first {FIRST_EVENTS} events"
    assert b.sha256 in out
    # the daemon's own restore, not a second reading of the file format
    state = CheckpointStore(tmp_path / "state").load()
    held = [ext["baselines"]["digits"] for ext in state["engine"]["extensions"].values()
            if "baselines" in ext]
    assert held and held[0]["sha256"] == b.sha256
    # loaded with baseline.mode: file, then exported again: the same bytes
    cfg2 = config(tmp_path, "c2.yaml", baseline={"mode": "file",
                                                 "path": str(tmp_path / "a.json")})
    rc, _, err = run("baseline", "export", "--config", str(cfg2),
                     "--out", str(tmp_path / "b.json"))
    assert rc == 0, err
    assert (tmp_path / "b.json").read_bytes() == first
    assert orjson.loads(first)["sha256"] == b.sha256


EXPORT_REFUSALS = [
    # (what is wrong, config sections, options, checkpoint after n predictions, words said)
    ("the config keeps no checkpoint", {"state": {}}, [], None,
     ["state.checkpoint_dir is not set"]),
    ("the checkpoint folder does not exist", {}, [], None,
     ["does not exist", "has the daemon run"]),
    ("the daemon has not written a checkpoint yet", {}, [], "empty", ["no checkpoint in"]),
    ("the daemon is still collecting its first events", {}, [], 120,
     ["still collecting", "120 of 200"]),
    ("the config has no baseline at all", {"baseline": {"mode": "none"}}, [], 500,
     ["no baseline for model 'digits'", "'none'"]),
    ("the model is not configured", {}, ["--model", "cats"], 500,
     ["--model 'cats' is not configured"]),
]


@pytest.mark.parametrize(("why", "over", "options", "checkpoint", "said"), EXPORT_REFUSALS,
                         ids=[r[0] for r in EXPORT_REFUSALS])
def test_export_says_why_it_cannot(tmp_path: Path, why: str, over: dict[str, Any],
                                   options: list[str], checkpoint: int | str | None,
                                   said: list[str]) -> None:
    cfg = config(tmp_path, **over)
    if checkpoint == "empty":
        (tmp_path / "state").mkdir()
    elif isinstance(checkpoint, int):
        checkpoint_after(cfg, checkpoint)
    rc, _, err = run("baseline", "export", "--config", str(cfg), *options,
                     "--out", str(tmp_path / "x.json"))
    assert rc == 2
    assert err.startswith("baseline export failed: ")
    for words in said:
        assert words in err, (why, err)
    assert not (tmp_path / "x.json").exists()


def predictions_jsonl(tmp: Path, n: int = 300) -> Path:
    events = SyntheticTraffic("digits", "v1", CLASSES, seed=5).events(n, 2000.0)
    path = tmp / "p.jsonl"
    path.write_bytes(ndjson(events))
    return path


REPLAY_REFUSALS = [
    # (the situation, config sections, options, checkpoint, words said)
    ("first_events and no checkpoint_dir", {"state": {}}, [], None,
     ["would fit a new baseline for 'digits'", "first 200 events", "first_events",
      "--baseline FILE", "--baseline-from-checkpoint", "--fit-baseline",
      "no state.checkpoint_dir"]),
    ("first_events and no checkpoint written yet", {}, [], "empty",
     ["would fit a new baseline", "no checkpoint in"]),
    ("first_events and the daemon still collecting", {}, [], 50,
     ["would fit a new baseline", "still collecting", "50 of 200"]),
    ("the checkpoint asked for and none kept", {"state": {}}, ["--baseline-from-checkpoint"],
     None, ["--baseline-from-checkpoint: ", "state.checkpoint_dir is not set"]),
    ("the checkpoint turned off", {}, ["--no-baseline-from-checkpoint"], 250,
     ["would fit a new baseline", "--no-baseline-from-checkpoint"]),
]


@pytest.mark.parametrize(("why", "over", "options", "checkpoint", "said"), REPLAY_REFUSALS,
                         ids=[r[0] for r in REPLAY_REFUSALS])
def test_replay_refuses_to_fit_a_baseline_from_the_range_naming_the_choice(
        tmp_path: Path, why: str, over: dict[str, Any], options: list[str],
        checkpoint: int | str | None, said: list[str]) -> None:
    cfg = config(tmp_path, **over)
    if checkpoint == "empty":
        (tmp_path / "state").mkdir()
    elif isinstance(checkpoint, int):
        checkpoint_after(cfg, checkpoint)
    rc, _, err = run("replay", "--config", str(cfg), "--from-jsonl",
                     str(predictions_jsonl(tmp_path)), *options,
                     "--out", str(tmp_path / "x.om"), "--no-progress")
    assert rc == 2
    for words in said:
        assert words in err, (why, err)
    assert not (tmp_path / "x.om").exists()


def baseline_info(path: Path) -> set[str]:
    """The sha256 label of every visionmon_baseline_info sample of a replay's output."""
    out = set()
    for line in path.read_text().splitlines():
        if line.startswith("visionmon_baseline_info{"):
            out.add(line.split('sha256="')[1].split('"')[0])
    return out


def test_replay_uses_the_checkpoints_baseline_a_named_file_or_fits_when_told(
        tmp_path: Path) -> None:
    cfg = config(tmp_path)
    checkpoint_after(cfg, 250)
    live = CheckpointStore(tmp_path / "state").load()
    live_sha = next(ext["baselines"]["digits"]["sha256"]
                    for ext in live["engine"]["extensions"].values() if "baselines" in ext)
    jsonl = str(predictions_jsonl(tmp_path))
    rc, out, err = run("replay", "--config", str(cfg), "--from-jsonl", jsonl,
                       "--out", str(tmp_path / "ckpt.om"), "--no-progress")
    assert rc == 0, err
    assert baseline_info(tmp_path / "ckpt.om") == {live_sha[:16]}
    assert f"baseline  digits: the checkpoint {tmp_path / 'state'}" in out

    other = baseline_mod.build_baseline(
        "digits", CLASSES, read_events(load_config(cfg), iter([ndjson(SyntheticTraffic(
            "digits", "v9", CLASSES, seed=11).events(400, 5.0))]))[0], created_at=5.0)
    baseline_mod.save(other, tmp_path / "other.json")
    rc, out, err = run("replay", "--config", str(cfg), "--from-jsonl", jsonl,
                       "--baseline", str(tmp_path / "other.json"),
                       "--out", str(tmp_path / "named.om"), "--no-progress")
    assert rc == 0, err
    assert baseline_info(tmp_path / "named.om") == {other.sha256[:16]}
    assert "baseline  digits: --baseline file" in out

    rc, out, err = run("replay", "--config", str(cfg), "--from-jsonl", jsonl, "--fit-baseline",
                       "--out", str(tmp_path / "fit.om"), "--no-progress")
    assert rc == 0, err
    fitted = baseline_info(tmp_path / "fit.om")
    assert len(fitted) == 1 and fitted != {live_sha[:16]}
    assert "fitted from the range's first 200 events" in out


def test_a_named_baseline_of_another_model_is_refused(tmp_path: Path) -> None:
    cfg = config(tmp_path, state={})
    fashion = [f"c{i}" for i in range(10)]
    b = baseline_mod.build_baseline("fashion", fashion, read_events(
        load_config(config(tmp_path, "f.yaml", state={},
                           models=[{"name": "fashion", "classes": fashion}])),
        iter([ndjson(SyntheticTraffic("fashion", "v1", fashion, seed=1).events(200, 5.0))]))[0])
    baseline_mod.save(b, tmp_path / "fashion.json")
    rc, _, err = run("replay", "--config", str(cfg), "--from-jsonl",
                     str(predictions_jsonl(tmp_path)), "--baseline",
                     str(tmp_path / "fashion.json"), "--out", str(tmp_path / "x.om"),
                     "--no-progress")
    assert rc == 2
    assert "--baseline: " in err and "model 'fashion'" in err
