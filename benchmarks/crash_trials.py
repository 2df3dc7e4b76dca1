"""Daemon crash trials: SIGKILL at random points of a stream, restart, count exactly.

Each trial streams N prediction events (one per message, 3 partitions) plus a label for
every 4th one into fresh topics while a `visionmon run` subprocess with checkpointing
(every 0.5 s) consumes them. At 1 to 3 random points (seeded) the daemon is SIGKILLed and
started again at once. After the last restart the trial waits for the stream to drain and
compares what the daemon exports with what was produced:

  counted     visionmon_requests_total after the run (must equal N: nothing lost and,
              thanks to checkpoint positions, nothing counted twice)
  labels      visionmon_labels_total (joined labels; must equal N/4)
  re-read     per kill, events the dead process had counted beyond its last checkpoint:
              read again after the restart and counted once (the "uncommitted batch")

Trials alternate the two Kafka backends. The CI test (tests/faults/test_daemon_crash.py)
runs two short trials through `run_trial`; this script runs all of them:

    .venv/bin/python benchmarks/crash_trials.py [--trials 10] [--events 100000]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.faults.harness import (
    DaemonProcess,
    daemon_config,
    produce_stream,
    total,
    wait_for,
)
from visionmon.broker import EmbeddedBroker, create_topics, free_port

PARTITIONS = 3
LABEL_EVERY = 4


@dataclass
class Kill:
    target: int          # the count at which the kill was armed
    counted: float       # last count the dead process exported
    restored: float      # first count the restarted process exported (its checkpoint)

    @property
    def reread(self) -> float:
        return max(0.0, self.counted - self.restored)


@dataclass
class TrialResult:
    seed: int
    client: str
    events: int
    labels_expected: int
    kills: list[Kill] = field(default_factory=list)
    counted: float = 0.0
    labels: float = 0.0
    seconds: float = 0.0
    exit_code: int | None = None

    @property
    def duplicates(self) -> float:
        return max(0.0, self.counted - self.events)

    @property
    def missing(self) -> float:
        return max(0.0, self.events - self.counted)

    @property
    def max_reread(self) -> float:
        return max((k.reread for k in self.kills), default=0.0)

    def ok(self) -> bool:
        return (self.counted == self.events and self.labels == self.labels_expected
                and self.exit_code == 0)


def _requests(d: DaemonProcess) -> float:
    return total(d.metrics(), "visionmon_requests_total")


def _checkpointed_requests(state_dir: Path) -> float:
    """Requests counted in the checkpoint a killed daemon left (what its successor loads)."""
    from collectors.checkpoint import FILENAME, decode

    path = state_dir / FILENAME
    if not path.exists():
        return 0.0
    state = decode(path.read_bytes())
    return float(sum(s["requests_ok"] + s["requests_error"]
                     for _m, _v, s in state["engine"]["by_version"]))


def run_trial(bootstrap: str, seed: int, events: int, workdir: Path,
              client: str = "kafka-python", max_kills: int = 3, rate: float = 5000
              ) -> TrialResult:
    """One trial against an existing broker; topics are created fresh for it. The stream
    is produced at about `rate` events per second once the daemon is ready."""
    rng = random.Random(seed)
    tag = f"crash{seed}-{uuid.uuid4().hex[:6]}"
    names = {"predictions": f"{tag}-pred", "images": f"{tag}-img", "feedback": f"{tag}-fb"}
    create_topics(bootstrap, list(names.values()), PARTITIONS)
    state_dir = workdir / tag / "state"
    cfg = daemon_config(bootstrap, names, free_port(), f"{tag}-group", client=client,
                        checkpoint_dir=state_dir, checkpoint_interval_s=0.5)
    labels_expected = len(range(0, events, LABEL_EVERY))
    result = TrialResult(seed, client, events, labels_expected)
    t0 = time.monotonic()
    # the stream: produced while the daemon consumes (and dies), `rate` events/s
    producer = threading.Thread(target=produce_stream, name="producer", daemon=True,
                                args=(bootstrap, names, 0, events, PARTITIONS, LABEL_EVERY),
                                kwargs={"pace_s": 1000 / rate})
    daemon = DaemonProcess(cfg, workdir / tag, "daemon").start()
    daemon.wait_ready(60)
    producer.start()
    try:
        targets = sorted(int(rng.uniform(0.05, 0.95) * events)
                         for _ in range(rng.randint(1, max_kills)))
        for target in targets:
            last = [0.0]

            def reached(target: int = target, last: list[float] = last) -> bool:
                if not daemon.alive():
                    raise AssertionError(f"daemon died on its own:\n{daemon.log_tail()}")
                n = _requests(daemon)
                last[0] = max(last[0], n)
                return n >= target

            wait_for(reached, 120, every=0.02, what=f"{target} events counted",
                     on_timeout=daemon.log_tail)
            time.sleep(rng.uniform(0.0, 0.3))  # land anywhere: mid-batch, mid-checkpoint
            counted = max(last[0], _requests(daemon))
            daemon.kill()
            result.kills.append(Kill(target, counted, _checkpointed_requests(state_dir)))
            daemon.start()
        producer.join(300)

        def drained() -> bool:
            m = daemon.metrics()
            return (total(m, "visionmon_requests_total") >= events
                    and total(m, "visionmon_labels_total") >= labels_expected)

        with contextlib.suppress(AssertionError):  # reported as missing below
            wait_for(drained, 180, every=0.2, what="the whole stream counted")
        time.sleep(1.5)  # anything counted twice would show up now
        m = daemon.metrics()
        result.counted = total(m, "visionmon_requests_total")
        result.labels = total(m, "visionmon_labels_total")
    finally:
        result.exit_code = daemon.terminate()
        result.seconds = time.monotonic() - t0
    return result


def print_table(results: list[TrialResult], out: object = sys.stdout) -> None:
    print("| trial | seed | backend | kills | counted at kill -> restored from checkpoint "
          "| produced | counted | labels produced / joined | duplicates | missing "
          "| largest re-read tail | exit | s |", file=out)  # type: ignore[arg-type]
    print("|---:|---:|---|---:|---|---:|---:|---|---:|---:|---:|---:|---:|",
          file=out)  # type: ignore[arg-type]
    for i, r in enumerate(results, 1):
        kills = ", ".join(f"{k.counted:,.0f} -> {k.restored:,.0f}" for k in r.kills)
        print(f"| {i} | {r.seed} | {r.client} | {len(r.kills)} | {kills} | {r.events:,} "
              f"| {r.counted:,.0f} | {r.labels_expected:,} / {r.labels:,.0f} "
              f"| {r.duplicates:,.0f} | {r.missing:,.0f} | {r.max_reread:,.0f} "
              f"| {r.exit_code} | {r.seconds:.0f} |", file=out)  # type: ignore[arg-type]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--first-seed", type=int, default=1)
    args = ap.parse_args()
    results: list[TrialResult] = []
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        for i in range(args.trials):
            seed = args.first_seed + i
            client = ("kafka-python", "confluent-kafka")[i % 2]
            r = run_trial(broker.bootstrap, seed, args.events, Path(tmp), client)
            results.append(r)
            print(f"trial {i + 1}/{args.trials} seed {seed} {client}: {len(r.kills)} kills, "
                  f"counted {r.counted:,.0f}/{r.events:,}, labels {r.labels:,.0f}/"
                  f"{r.labels_expected:,} ({r.seconds:.0f}s)", file=sys.stderr, flush=True)
    print()
    print_table(results)
    bad = [r for r in results if not r.ok()]
    kills = sum(len(r.kills) for r in results)
    print(f"\n{len(results)} trials, {kills} SIGKILLs: "
          f"{len(results) - len(bad)} exact, {len(bad)} not exact")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
