"""Fuzzing of every decoder in `monitor.events`: hostile bytes in, an event or a rejection
with a reason out, never an exception, never a hang.

The checks live in `DecoderHarness`; the inputs come from Hypothesis strategies (raw
bytes, arbitrary JSON, and valid events with hostile mutations, as single objects, arrays
and NDJSON batches) and, when the `atheris` package is installed, from coverage-guided
mutation by libFuzzer. `tests/faults/test_fuzz_decoders.py` runs a few hundred examples of
each property in CI; this script runs the full count and prints a summary:

    .venv/bin/python tests/faults/fuzz_decoders.py [--examples 25000] [--atheris-runs 100000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, timedelta, timezone
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.events import (
    DecodeLimits,
    FeedbackDecoder,
    FeedbackEvent,
    ImageDecoder,
    ImageEvent,
    ModelClassIndex,
    PredictionDecoder,
    PredictionEvent,
    RejectReason,
)
from monitor.lifecycle_events import LifecycleDecoder, LifecycleEvent

NOW = 1_750_000_000.0
CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
MODELS = {"digits": CLASSES, "wide": [f"c{i}" for i in range(1000)]}
LIMITS = DecodeLimits(max_message_bytes=1_048_576, max_batch_events=1000,
                      max_future_skew_seconds=300.0, max_request_id_chars=256)
IMAGE_MAX_BYTES = 65_536
MAX_SECONDS = 2.0  # one decode call of at most 1 MiB; far above the normal microseconds
MAX_DETAIL = 5000  # rejection details go to logs and dead-letter headers

#: crashes already reported, each (exception type, function in monitor/events.py that
#: raised it); tolerated and counted so that fuzzing keeps looking for new ones. Remove an
#: entry once fixed (tests/faults/test_fuzz_decoders.py has a strict xfail for each).
KNOWN_CRASHES: set[tuple[str, str]] = set()


class FuzzFailure(AssertionError):
    """A decoder broke its contract on one input."""


@dataclass
class Tally:
    inputs: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    known_crashes: Counter[str] = field(default_factory=Counter)
    slowest_s: float = 0.0

    def total(self) -> int:
        return sum(self.inputs.values())


class DecoderHarness:
    """Runs one input through one decoder and checks everything that must hold."""

    def __init__(self) -> None:
        index = {name: ModelClassIndex.of(c) for name, c in MODELS.items()}
        self.prediction = PredictionDecoder(index, LIMITS)
        self.feedback = FeedbackDecoder(index, LIMITS)
        self.image = ImageDecoder(index, IMAGE_MAX_BYTES, LIMITS)
        self.lifecycle = LifecycleDecoder(index, LIMITS)
        self.tally = Tally()

    # --- the three decoders -------------------------------------------------------
    def check_prediction(self, raw: bytes | None, items: int | None = None) -> None:
        """`items`: how many batch elements the input holds, when the caller knows."""
        d = self._timed("prediction", lambda: self.prediction.decode(raw, NOW))
        if d is None:
            return
        self._batch(d, raw, items)
        for e in d.events:
            self._prediction_event(e)
            _utf8_strings(e)
        self._check_singles(raw, d.events, d.rejections)

    def _batch(self, d: Any, raw: bytes | None, items: int | None) -> None:
        """A batch message's result: each element accepted or refused once, or the whole
        message refused alone; `items`: how many elements it holds, when known."""
        if not d.events and not d.rejections and not _empty_array(raw):
            raise FuzzFailure("input neither accepted nor rejected")
        whole = [r for r in d.rejections if r.index is None]
        if whole and len(d.events) + len(d.rejections) != 1:
            raise FuzzFailure("a whole-record rejection mixed with per-element results")
        indexed = [r.index for r in d.rejections if r.index is not None]
        if len(set(indexed)) != len(indexed):
            raise FuzzFailure(f"batch element rejected twice: {indexed}")
        if items is not None and not whole and len(d.events) + len(d.rejections) != items:
            raise FuzzFailure(f"{items} elements in, {len(d.events)} events + "
                              f"{len(d.rejections)} rejections out")
        self._rejections(d.rejections)

    def _check_singles(self, raw: bytes | None, events: list[PredictionEvent],
                       rejections: list[Any]) -> None:
        """The daemon decodes runs of one-event messages with one parser call: for this
        input twice over, that path gives the same two events or defers (None)."""
        joined = self._timed("prediction runs",
                             lambda: self.prediction.decode_singles([raw, raw], NOW))
        if joined is None:
            return
        if len(events) != 1 or rejections:
            raise FuzzFailure(f"decode_singles accepted what decode gives as {len(events)} "
                              f"events and {len(rejections)} rejections")
        if repr(joined) != repr([events[0]] * 2):  # repr: NaN fields compare equal
            raise FuzzFailure("decode_singles gave other events than decode")

    def _one_result(self, name: str, call: Callable[[], Any]) -> Any:
        """A decoder's result for one record: exactly one event or one rejection, whose
        rejections are sound; None when the call crashed in a known way."""
        d = self._timed(name, call)
        if d is None:
            return None
        if len(d.events) + len(d.rejections) != 1:
            raise FuzzFailure(f"{len(d.events)} events, {len(d.rejections)} rejections")
        self._rejections(d.rejections)
        return d

    def check_lifecycle(self, raw: bytes | None) -> None:
        """Lifecycle messages are batches too; an accepted load carries its hash, host and
        load time, a failed one its reason."""
        d = self._timed("lifecycle", lambda: self.lifecycle.decode(raw, NOW))
        if d is None:
            return
        self._batch(d, raw, None)
        for e in d.events:
            if type(e) is not LifecycleEvent:
                raise FuzzFailure(f"not a LifecycleEvent: {e!r}"[:200])
            _utf8_strings(e)
            _finite_ts(e.ts)
            if e.model not in MODELS:
                raise FuzzFailure(f"unknown model accepted: {e.model[:40]!r}")
            if e.kind == "loaded" and (e.host is None or e.sha256 is None
                                       or e.load_seconds is None
                                       or not math.isfinite(e.load_seconds)):
                raise FuzzFailure(f"a load without its host, hash or time: {e!r}"[:200])
            if e.kind == "load_failed" and (e.host is None or e.reason is None):
                raise FuzzFailure(f"a failed load without its host or reason: {e!r}"[:200])

    def check_feedback(self, raw: bytes | None, items: int | None = None) -> None:
        """Feedback messages are batches too (one object, a JSON array or NDJSON)."""
        d = self._timed("feedback", lambda: self.feedback.decode(raw, NOW))
        if d is None:
            return
        self._batch(d, raw, items)
        for e in d.events:
            if type(e) is not FeedbackEvent:
                raise FuzzFailure(f"not a FeedbackEvent: {e!r}"[:200])
            _utf8_strings(e)
            _finite_ts(e.ts)
            _bounded_id(e.request_id)
            if e.model is not None:
                if e.model not in MODELS:
                    raise FuzzFailure(f"unknown model accepted: {e.model[:40]!r}")
                if type(e.label) is not int or not 0 <= e.label < len(MODELS[e.model]):
                    raise FuzzFailure(f"label not resolved to a class index: {e.label!r}"[:200])
        self._count(d)

    def check_image(self, raw: bytes | None, headers: Sequence[tuple[str, bytes | None]]
                    ) -> None:
        d = self._one_result("image", lambda: self.image.decode(raw, headers, NOW))
        if d is None:
            return
        for e in d.events:
            if type(e) is not ImageEvent:
                raise FuzzFailure(f"not an ImageEvent: {e!r}"[:200])
            _utf8_strings((e.request_id, e.model, e.version, e.content_type))
            if e.model not in MODELS or not e.data or len(e.data) > IMAGE_MAX_BYTES:
                raise FuzzFailure("image accepted beyond its limits")
            _bounded_id(e.request_id)
            if e.ts is not None:
                _finite_ts(e.ts)
        self._count(d)

    # --- shared checks ------------------------------------------------------------
    def _timed(self, name: str, call: Callable[[], Any]) -> Any:
        self.tally.inputs[name] += 1
        t0 = time.perf_counter()
        try:
            d = call()
        except Exception as err:
            where = _raising_function(err)
            if (type(err).__name__, where) in KNOWN_CRASHES:
                self.tally.known_crashes[f"{type(err).__name__} in {where}"] += 1
                return None
            raise FuzzFailure(f"{name} decoder raised {type(err).__name__}: {err}"[:500]
                              ) from err
        dt = time.perf_counter() - t0
        self.tally.slowest_s = max(self.tally.slowest_s, dt)
        if dt > MAX_SECONDS:
            raise FuzzFailure(f"{name} decoder took {dt:.2f}s")
        if name == "prediction":
            self._count(d)
        return d

    def _count(self, d: Any) -> None:
        self.tally.accepted += len(d.events)
        for r in d.rejections:
            self.tally.rejected[r.reason.value] += 1

    @staticmethod
    def _rejections(rejections: Sequence[Any]) -> None:
        for r in rejections:
            if not isinstance(r.reason, RejectReason):
                raise FuzzFailure(f"rejection without a reason: {r!r}"[:200])
            if not isinstance(r.detail, str) or not r.detail.strip():
                raise FuzzFailure(f"rejection {r.reason} without a detail")
            if len(r.detail) > MAX_DETAIL:
                raise FuzzFailure(f"rejection detail of {len(r.detail)} characters")
            if not isinstance(r.raw, bytes):
                raise FuzzFailure("rejection does not keep the original bytes")

    @staticmethod
    def _prediction_event(e: Any) -> None:
        if type(e) is not PredictionEvent:
            raise FuzzFailure(f"not a PredictionEvent: {e!r}"[:200])
        if e.model not in MODELS:
            raise FuzzFailure(f"unknown model accepted: {e.model[:40]!r}")
        n = len(MODELS[e.model])
        _bounded_id(e.request_id)
        if not 0 < len(e.version) <= 128:
            raise FuzzFailure("version out of bounds")
        _finite_ts(e.ts)
        if not (0 <= e.pred < n or (e.pred == -1 and not e.ok)):
            raise FuzzFailure(f"pred {e.pred} outside the class list")
        if not (math.isnan(e.confidence) or 0.0 <= e.confidence <= 1.0):
            raise FuzzFailure(f"confidence {e.confidence}")
        if not (math.isnan(e.latency_s) or 0.0 <= e.latency_s < 1e6):
            raise FuzzFailure(f"latency {e.latency_s}")
        if any(not 0 <= k < n for k in e.top5) or len(e.top5) > 5:
            raise FuzzFailure(f"top5 {e.top5}")
        if e.probs is not None and (len(e.probs) != n or abs(math.fsum(e.probs) - 1) > 2e-3
                                    or not all(0.0 <= p <= 1.0 for p in e.probs)):
            raise FuzzFailure("probs accepted beyond their contract")


def _empty_array(raw: bytes | None) -> bool:
    """`[]` is a batch of no events: nothing to accept, nothing to refuse."""
    try:
        return json.loads(raw or b"null") == []
    except ValueError:
        return False


def _finite_ts(ts: float) -> None:
    if not (math.isfinite(ts) and 0 <= ts <= NOW + LIMITS.max_future_skew_seconds):
        raise FuzzFailure(f"timestamp {ts} accepted")


def _bounded_id(request_id: str) -> None:
    if not isinstance(request_id, str) or not 0 < len(request_id) <= LIMITS.max_request_id_chars:
        raise FuzzFailure("request id accepted beyond its bounds")


def _utf8_strings(values: Any) -> None:
    """Every string of an accepted event can be written as UTF-8 (checkpoints are)."""
    for v in values:
        if isinstance(v, str):
            try:
                v.encode()
            except UnicodeEncodeError:
                raise FuzzFailure(f"a string that is not UTF-8 accepted: {v[:40]!r}") from None


def _raising_function(err: BaseException) -> str:
    """The innermost frame of monitor/events.py in the traceback."""
    name = "?"
    for frame in traceback.extract_tb(err.__traceback__):
        if frame.filename.endswith(os.path.join("monitor", "events.py")):
            name = frame.name
    return name


# --- Hypothesis strategies ------------------------------------------------------------
#: text with a lone UTF-16 surrogate, which JSON can escape ("\ud800") but no UTF-8 holds
surrogate_text = st.builds(lambda a, c: a + c, st.text(max_size=5),
                           st.characters(categories=["Cs"]))
leaf = st.one_of(st.none(), st.booleans(), st.integers(),
                 st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
                 surrogate_text)
json_values = st.recursive(
    leaf, lambda inner: st.lists(inner, max_size=6) | st.dictionaries(
        st.text(max_size=12), inner, max_size=6), max_leaves=25)
OFFSETS = [UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12)),
           timezone(timedelta(minutes=330))]
timestamps = st.one_of(
    st.floats(min_value=0, max_value=NOW), st.floats(allow_nan=True, allow_infinity=True),
    st.integers(), st.integers(min_value=-2**70, max_value=2**70),
    st.datetimes(timezones=st.sampled_from(OFFSETS)).map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat()), st.text(max_size=40))
probability_vectors = st.lists(st.floats(0.0, 1.0), min_size=10, max_size=10).map(
    lambda xs: [x / sum(xs) for x in xs] if sum(xs) > 0 else [0.1] * 10)
HOSTILE: dict[str, st.SearchStrategy[Any]] = {
    "request_id": st.one_of(st.text(min_size=1, max_size=300), leaf),
    "ts": timestamps,
    "model": st.one_of(st.sampled_from(["digits", "wide", "nope", "", "DIGITS"]), leaf),
    "version": st.one_of(st.text(max_size=200), leaf),
    "pred": st.one_of(st.integers(-3, 1003), st.sampled_from([*CLASSES, "dog", "c999"]), leaf),
    "confidence": st.one_of(st.floats(-1.0, 2.0), leaf),
    "probs": st.one_of(probability_vectors, st.lists(st.floats(), max_size=12), json_values),
    "topk": st.one_of(st.lists(st.tuples(st.one_of(st.integers(-1, 12),
                                                     st.sampled_from(CLASSES)),
                                           st.floats(0.0, 1.0)).map(list), max_size=6),
                      json_values),
    "status": st.one_of(st.sampled_from(["ok", "error", "OK", ""]), leaf),
    "latency_ms": st.one_of(st.floats(), st.integers(), leaf),
    "deployment": st.one_of(st.text(max_size=20), leaf),
}


def _valid_prediction(i: int) -> dict[str, Any]:
    return {"request_id": f"r{i}", "ts": NOW - 60, "model": "digits", "version": "v1",
            "pred": i % 10, "confidence": 0.75, "latency_ms": 12.5}


@st.composite
def prediction_objects(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event with 0 to 4 hostile changes: a field replaced, removed or added."""
    obj = _valid_prediction(draw(st.integers(0, 10**6)))
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["replace", "replace", "remove", "add"]))
        key = draw(st.sampled_from(sorted(HOSTILE)))
        if action == "replace":
            obj[key] = draw(HOSTILE[key])
        elif action == "remove":
            obj.pop(key, None)
        else:
            obj[draw(st.text(max_size=10))] = draw(json_values)
    return obj


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, allow_nan=True).encode()


def _framed(draw: st.DrawFn, objects: st.SearchStrategy[dict[str, Any]]
            ) -> tuple[bytes, int | None]:
    """One object, a JSON array or NDJSON (a garbage line in it or not) of `objects`, as
    producers write batches: (message bytes, number of batch elements when known)."""
    shape = draw(st.sampled_from(["single", "array", "ndjson", "ndjson-garbage"]))
    if shape == "single":
        return _dump(draw(objects)), 1
    objs = draw(st.lists(objects, min_size=1, max_size=8))
    if shape == "array":
        return _dump(objs), len(objs)
    lines = [_dump(o) for o in objs]
    if shape == "ndjson-garbage":
        at = draw(st.integers(1, len(lines)))
        lines.insert(at, draw(st.binary(min_size=1, max_size=40)).replace(b"\n", b" "))
        return b"\n".join(lines), None
    return b"\n".join(lines), len(lines)


@st.composite
def prediction_messages(draw: st.DrawFn) -> tuple[bytes, int | None]:
    """(message bytes, number of batch elements when known)."""
    return _framed(draw, prediction_objects())


@st.composite
def feedback_objects(draw: st.DrawFn) -> dict[str, Any]:
    obj: dict[str, Any] = {"request_id": "r1", "label": 3, "ts": NOW - 30, "model": "digits"}
    extra = {"request_id": HOSTILE["request_id"], "ts": timestamps,
             "label": st.one_of(st.integers(), st.sampled_from([*CLASSES, "dog", ""]), leaf),
             "model": HOSTILE["model"], "source": st.one_of(st.text(max_size=20), leaf)}
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(sorted(extra)))
        if draw(st.booleans()):
            obj[key] = draw(extra[key])
        else:
            obj.pop(key, None)
    return obj


@st.composite
def feedback_messages(draw: st.DrawFn) -> tuple[bytes, int | None]:
    """(message bytes, number of batch elements when known)."""
    return _framed(draw, feedback_objects())


header_values = st.one_of(st.none(), st.binary(max_size=40),
                          st.sampled_from([b"digits", b"wide", b"r1", b"v1", b"image/png",
                                           b"image/jpeg; q=1", b"text/html",
                                           str(NOW).encode(), b"1e400", b"nan", b"-1",
                                           b"2999-01-01T00:00:00+00:00", b"\xff\xfe",
                                           b"r\xed\xa0\x80"]))


@st.composite
def image_records(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, bytes | None]]]:
    headers: list[tuple[str, bytes | None]] = [
        ("request_id", b"r1"), ("model", b"digits"), ("version", b"v1"),
        ("content-type", b"image/png"), ("ts", str(NOW - 5).encode())]
    for _ in range(draw(st.integers(0, 4))):
        key = draw(st.sampled_from(["request_id", "model", "version", "content-type", "ts",
                                    "Request_ID", "x"]))
        if draw(st.booleans()):
            headers.append((key, draw(header_values)))
        else:
            headers = [h for h in headers if h[0] != key]
    data = draw(st.one_of(st.binary(max_size=300), st.just(b""),
                          st.just(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)))
    return data, headers


def _fuzz_settings(examples: int, derandomize: bool) -> settings:
    return settings(max_examples=examples, deadline=None, database=None,
                    derandomize=derandomize,
                    suppress_health_check=list(HealthCheck))


def hypothesis_properties(harness: DecoderHarness, examples: int, derandomize: bool = False
                          ) -> list[Callable[[], None]]:
    """One callable per property; each runs `examples` generated inputs."""
    s = _fuzz_settings(examples, derandomize)

    @s
    @given(st.binary(max_size=2048))
    def raw_bytes_to_every_decoder(raw: bytes) -> None:
        harness.check_prediction(raw)
        harness.check_feedback(raw)
        harness.check_lifecycle(raw)
        harness.check_image(raw, [("request_id", raw[:20]), ("model", b"digits"),
                                  ("version", b"v1")])

    @s
    @given(json_values)
    def arbitrary_json_to_every_decoder(value: Any) -> None:
        raw = _dump(value)
        harness.check_prediction(raw)
        harness.check_feedback(raw)
        harness.check_lifecycle(raw)

    @s
    @given(prediction_messages())
    def mutated_prediction_messages(message: tuple[bytes, int | None]) -> None:
        harness.check_prediction(*message)

    @s
    @given(feedback_messages())
    def mutated_feedback(message: tuple[bytes, int | None]) -> None:
        harness.check_feedback(*message)

    @s
    @given(image_records())
    def mutated_image_records(record: tuple[bytes, list[tuple[str, bytes | None]]]) -> None:
        harness.check_image(*record)

    return [raw_bytes_to_every_decoder, arbitrary_json_to_every_decoder,
            mutated_prediction_messages, mutated_feedback, mutated_image_records]


# --- atheris (coverage-guided), in a child process: libFuzzer exits when done -------
SEEDS = [_dump(_valid_prediction(1)), b"\n".join(_dump(_valid_prediction(i)) for i in range(3)),
         _dump([_valid_prediction(1), {"x": 1}]),
         _dump({"request_id": "r1", "label": "three", "ts": NOW - 3, "model": "digits"}),
         _dump([{"request_id": "r1", "label": 3, "ts": NOW - 3}, {"request_id": "r2"}]),
         _dump({**_valid_prediction(2), "probs": [0.1] * 10, "pred": None}),
         _dump({**_valid_prediction(3), "topk": [["one", 0.6], [2, 0.3]], "pred": None})]


def _atheris_child(runs: int, seed: int, workdir: Path) -> None:
    import atheris

    harness = DecoderHarness()
    with atheris.instrument_imports():
        import monitor.events  # noqa: F401  (instrumented for coverage feedback)

    def one_input(data: bytes) -> None:
        if not data:
            return
        kind, body = data[0] % 3, data[1:]
        if kind == 0:
            harness.check_prediction(body)
        elif kind == 1:
            harness.check_feedback(body)
        else:
            cut = body.find(b"|")
            value = body[:cut] if cut >= 0 else b"digits"
            harness.check_image(body, [("request_id", b"r"), ("model", value),
                                       ("version", b"v1"), ("ts", body[:16])])

    corpus = workdir / "corpus"
    corpus.mkdir(exist_ok=True)
    for i, s in enumerate(SEEDS):
        for kind in range(3):
            (corpus / f"seed-{i}-{kind}").write_bytes(bytes([kind]) + s)
    atheris.instrument_func(one_input)
    atheris.Setup([sys.argv[0], f"-runs={runs}", f"-seed={seed}", "-max_len=4096",
                   "-print_final_stats=1", f"-artifact_prefix={workdir}/", str(corpus)],
                  one_input)
    atheris.Fuzz()


def run_atheris(runs: int, seed: int) -> dict[str, Any]:
    """Runs libFuzzer over the three decoders in a child; returns its numbers."""
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, __file__, "--atheris-child", str(runs),
                               "--seed", str(seed), "--workdir", tmp],
                              capture_output=True, text=True, timeout=3600)
        out = proc.stdout + proc.stderr
        done = re.search(r"Done (\d+) runs in (\d+) second", out)
        crashes = sorted(p.name for p in Path(tmp).glob("crash-*"))
    return {"runs": int(done.group(1)) if done else 0, "exit": proc.returncode,
            "crashes": crashes, "tail": out[-3000:] if proc.returncode else ""}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--examples", type=int, default=25_000, help="per Hypothesis property")
    ap.add_argument("--atheris-runs", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--atheris-child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.atheris_child is not None:
        _atheris_child(args.atheris_child, args.seed, Path(args.workdir))
        return 0

    harness = DecoderHarness()
    failures: list[str] = []
    t0 = time.monotonic()
    for prop in hypothesis_properties(harness, args.examples):
        before = harness.tally.total()
        started = time.monotonic()
        try:
            prop()
        except Exception as err:  # hypothesis re-raises the shrunk failing example
            failures.append(f"{prop.__name__}: {type(err).__name__}: {str(err)[:300]}")
        print(f"hypothesis {prop.__name__:36s} {harness.tally.total() - before:>9,} decoder "
              f"calls in {time.monotonic() - started:6.1f}s", file=sys.stderr, flush=True)
    t = harness.tally
    print(f"\nHypothesis: {t.total():,} decoder calls ({dict(t.inputs)}) in "
          f"{time.monotonic() - t0:.0f}s; accepted events {t.accepted:,}; rejections by "
          f"reason {dict(t.rejected.most_common())}; slowest call {t.slowest_s * 1e3:.1f} ms")
    print(f"known crashes tolerated: {dict(t.known_crashes) or 'none'}")
    print(f"new failures: {len(failures)}")
    for f in failures:
        print(f"  {f}")
    athe: dict[str, Any] = {"runs": 0}
    if args.atheris_runs:
        try:
            import atheris  # noqa: F401
        except ImportError:
            print("atheris: not installed (pip install atheris); skipped")
        else:
            athe = run_atheris(args.atheris_runs, args.seed)
            print(f"atheris: {athe['runs']:,} runs, exit {athe['exit']}, crash artifacts "
                  f"{athe['crashes'] or 'none'}")
            if athe["exit"] != 0:
                print(athe["tail"])
    grand = t.total() + athe["runs"]
    print(f"\ntotal inputs: {grand:,}; new crashes or contract violations: "
          f"{len(failures) + len(athe.get('crashes', []))}")
    return 1 if failures or athe.get("exit", 0) else 0


if __name__ == "__main__":
    raise SystemExit(main())
