"""Composition root: wires config, engine, statistics extensions, the consumer loop,
the HTTP endpoints and the optional OpenTelemetry export into one running daemon."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from collectors.checkpoint_format import CheckpointRefused
from collectors.daemon import Daemon, DaemonCapture
from collectors.exporter import build_registry
from collectors.gallery_page import render_gallery
from collectors.http_server import HttpEndpoints, HttpServer
from collectors.render_worker import RenderWorker
from collectors.snapshot_cache import SnapshotCache
from monitor import baseline as baseline_mod
from monitor.acceptance import AcceptanceMonitor, AcceptanceRule
from monitor.baseline import Baseline, BaselineError
from monitor.class_auc import ClassAucMonitor
from monitor.config import MMD_SHARE, ConfigError, LoadedConfig, read_secret
from monitor.drift import DriftMonitor
from monitor.durations import parse_duration
from monitor.engine import Engine
from monitor.gallery import FailureGallery
from monitor.labels import LabelMonitor
from monitor.lifecycle import ModelLifecycle
from monitor.quality import QualityBounds, QualityEvaluator
from monitor.scored import ScoredImage
from monitor.segments import SegmentMonitor
from monitor.series_cap import SeriesCap
from monitor.shadow import ShadowMonitor
from monitor.snapshot import Series, SnapshotBuilder
from monitor.unusual import UNUSUAL_SCORES
from monitor.unusual_monitor import UnusualMonitor
from monitor.windows import WindowSpec
from visionmon import __version__

log = logging.getLogger(__name__)


@dataclass
class Statistics:
    """The engine and the statistics blocks plugged into it."""

    engine: Engine
    drift: DriftMonitor
    labels: LabelMonitor
    quality: QualityEvaluator
    shadow: ShadowMonitor | None = None
    #: with kafka.topics.lifecycle only
    lifecycle: ModelLifecycle | None = None
    #: with a reference model
    unusual: UnusualMonitor | None = None


def load_baselines(loaded: LoadedConfig) -> dict[str, Baseline]:
    """Baseline files named by the config (`{model}` in the path is the model's name; a
    relative path was resolved from the config file's folder by `resolve`)."""
    cfg = loaded.config.baseline
    if cfg.mode != "file" or cfg.path is None:
        return {}
    try:
        if "{model}" in cfg.path or len(loaded.models) == 1:
            return {name: baseline_mod.load(Path(cfg.path.replace("{model}", name)), name,
                                            m.classes)
                    for name, m in loaded.models.items()}
        # one file for several models: it serves the model it names, the others have none
        baseline = baseline_mod.load(Path(cfg.path))
        if baseline.model not in loaded.models:
            raise BaselineError(f"{cfg.path}: baseline is for model {baseline.model!r}, which "
                                f"is not configured; configured models are "
                                f"{', '.join(sorted(loaded.models))} (put {{model}} in the "
                                "path for one file per model)")
        return {baseline.model: baseline_mod.load(Path(cfg.path), baseline.model,
                                                  loaded.models[baseline.model].classes)}
    except BaselineError as err:
        raise ConfigError(f"{loaded.path}: baseline.path: {err}") from None


def acceptance_rules(loaded: LoadedConfig) -> dict[str, AcceptanceRule]:
    """The models' acceptance rules (`models[].accept`), negative classes as indices."""
    out = {}
    for name, m in loaded.models.items():
        if m.accept is not None:
            index = m.index()
            out[name] = AcceptanceRule(m.accept.threshold,
                                       tuple(index[c] for c in m.accept.negative_classes))
    return out


def build_statistics(loaded: LoadedConfig) -> Statistics:
    cfg = loaded.config
    models = {n: m.classes for n, m in loaded.models.items()}
    windows = tuple(WindowSpec(name, secs, cfg.windows.slices)
                    for name, secs in zip(cfg.windows.sizes, cfg.windows.seconds(), strict=True))
    engine = Engine(models, cfg.limits.max_versions_per_model,
                    horizon_s=max(w.seconds for w in windows))
    topics = cfg.kafka.topics
    # unless `drift.mmd.alpha` is set, the embedding MMD test takes half of `drift.alpha`
    # and the features share the rest, so the whole drift verdict keeps `drift.alpha`
    if cfg.drift.mmd.permutations is not None:
        log.warning("%s: drift.mmd.permutations is ignored: the embedding MMD test no longer "
                    "permutes (its null is simulated when the baseline is built)", loaded.path)
    mmd_alpha = cfg.drift.mmd.alpha
    shared = mmd_alpha is None and cfg.reference is not None
    if mmd_alpha is None:
        mmd_alpha = cfg.drift.alpha * MMD_SHARE
    drift = DriftMonitor(models, windows, cfg.drift.alpha, cfg.drift.min_effect,
                         features=cfg.drift.features, correction=cfg.drift.correction,
                         embedding_alpha=mmd_alpha if shared else 0.0,
                         baselines=load_baselines(loaded),
                         first_events=cfg.baseline.events
                         if cfg.baseline.mode == "first_events" else None,
                         quantile_bins=cfg.baseline.quantile_bins,
                         min_labels=cfg.baseline.min_labels)
    smallest = windows[int(np.argmin([w.seconds for w in windows]))].name
    labels = LabelMonitor(models, windows, cfg.labels.max_entries,
                          parse_duration(cfg.labels.ttl), cfg.state.hash_request_ids,
                          calibration_for=lambda m: getattr(drift.baselines.get(m),
                                                            "calibration", None),
                          atc_threshold_for=lambda m: getattr(drift.baselines.get(m),
                                                              "atc_threshold", None),
                          reject=lambda reason, n: engine.record_rejection("feedback", reason, n),
                          late=lambda n: engine.record_late(topics.feedback, n),
                          duplicates=cfg.labels.duplicates)
    q = cfg.quality
    quality = QualityEvaluator(
        QualityBounds(parse_duration(q.eval_slice), q.min_labels, q.min_accuracy, q.max_ece,
                      q.min_shadow_agreement, q.min_shadow_images),
        drifting=lambda m, v: drift.drifting(m, v, smallest))
    labels.joined_listeners.append(quality.on_label)
    labels.joined_listeners.append(drift.on_label)  # a first-events baseline's calibration
    engine.extensions.extend([drift, labels, quality])
    lifecycle = None
    if topics.lifecycle is not None:
        lifecycle = ModelLifecycle(engine.versions.key, cfg.limits.max_model_replicas)
        engine.extensions.append(lifecycle)
    rules = acceptance_rules(loaded)
    if rules:
        acceptance = AcceptanceMonitor(models, rules, windows, cfg.limits.max_series_per_metric)
        labels.batch_listeners.append(acceptance.on_joined)
        engine.extensions.append(acceptance)
    if cfg.auc.enabled:
        auc = ClassAucMonitor(models, windows, cfg.auc.score_bins, cfg.auc.slices)
        labels.batch_listeners.append(auc.on_joined)
        engine.extensions.append(auc)
    segments = {n: m.segments for n, m in loaded.models.items() if m.segments}
    per_segment = None
    if segments:
        seg_windows = tuple(WindowSpec(w.name, w.seconds, cfg.windows.segment_slices)
                            for w in windows)
        per_segment = SegmentMonitor(models, segments, seg_windows, drift,
                                     min_shadow_images=q.min_shadow_images)
        labels.batch_listeners.append(per_segment.on_joined)
        engine.extensions.append(per_segment)
    shadow = None
    if cfg.reference is not None:
        shadow = ShadowMonitor(models, windows, drift, quality,
                               hash_request_ids=cfg.state.hash_request_ids,
                               baseline_images=cfg.baseline.images,
                               version_key=engine.versions.key, mmd=cfg.drift.mmd,
                               mmd_alpha=mmd_alpha,
                               min_agreement_images=q.min_shadow_images,
                               max_entries=cfg.shadow_join.max_entries,
                               ttl_seconds=parse_duration(cfg.shadow_join.ttl),
                               late=lambda n: engine.record_late(topics.images, n))
        engine.extensions.append(shadow)
        if cfg.images.gallery.enabled:
            shadow.gallery = FailureGallery(models, cfg.images.gallery,
                                            cfg.state.hash_request_ids)
            labels.joined_listeners.append(shadow.gallery.on_label)
        if per_segment is not None:
            shadow.batch_listeners.append(per_segment.on_shadow)
            shadow.feature_listeners.append(per_segment.on_input_features)
        unusual = UnusualMonitor(windows, drift.baselines.get,
                                 lambda m: drift.watermark.get(m, 0.0),
                                 alpha=cfg.drift.alpha / len(UNUSUAL_SCORES),
                                 min_images=q.min_shadow_images,
                                 version_key=engine.versions.key, gallery=shadow.gallery)
        engine.extensions.append(unusual)
    return Statistics(engine, drift, labels, quality, shadow, lifecycle,
                      unusual if shadow is not None else None)


def build_engine(loaded: LoadedConfig) -> Engine:
    return build_statistics(loaded).engine


@dataclass(frozen=True, slots=True)
class AppCapture:
    """A snapshot before its statistics: the daemon's copy and the series of the shadow
    scorer, the build and the config (those outside the series cap)."""

    daemon: DaemonCapture
    extra: Mapping[str, Series]

    def render(self, cap: SeriesCap) -> dict[str, Series]:
        b = SnapshotBuilder()
        b.merge(self.daemon.render(cap))
        b.merge(self.extra)
        return b.build()


@dataclass
class RunningDaemon:
    """A daemon with its HTTP server, running in a background thread (tests, demo)."""

    app: App
    thread: threading.Thread

    @property
    def daemon(self) -> Daemon:
        return self.app.daemon

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.app.http.port}"

    def stop(self, timeout_s: float = 15.0) -> None:
        self.app.daemon.stop()
        self.thread.join(timeout_s)
        self.app.close()


class App:
    """Everything `visionmon run` starts."""

    def __init__(self, loaded: LoadedConfig, port: int | None = None,
                 reset_state: bool = False) -> None:
        """Raises ConfigError, or CheckpointRefused when the checkpoint directory holds
        another group's, topics' or model's state (`reset_state` moves it aside first)."""
        self.loaded = loaded
        cfg = loaded.config
        self.stats = build_statistics(loaded)
        self.engine = self.stats.engine
        self.scorer = None
        if cfg.reference is not None:
            from reference_model.artifact import ArtifactError
            from reference_model.shadow import ShadowScorer

            ref = cfg.reference
            try:
                self.scorer = ShadowScorer(ref, cfg.images, loaded.models[ref.model].classes,
                                           self._on_scored)
            except ArtifactError as err:  # refused at start, with what to do about it
                raise ConfigError(f"{loaded.path}: reference: {err}") from None
        try:
            self.daemon = Daemon(loaded, self.engine, feedback_sink=self.stats.labels,
                                 lifecycle_sink=self.stats.lifecycle,
                                 image_sink=self.scorer,
                                 extra_ready=self.scorer.ready if self.scorer else None,
                                 reset_state=reset_state)
        except CheckpointRefused:
            if self.scorer is not None:
                self.scorer.close()
            raise
        #: renders snapshots in a worker process (http.render_worker), else None
        self.render_worker = (RenderWorker(self.capture, self.daemon.series_cap)
                              if cfg.http.render_worker else None)
        #: what /metrics and the OpenTelemetry bridge read: `snapshot`, computed at most
        #: once per http.snapshot_interval_seconds
        self.snapshots = SnapshotCache(self.snapshot, cfg.http.snapshot_interval_seconds,
                                       renderer=self.render_worker)
        self.registry = build_registry(self.snapshots.snapshot)
        auth = None
        if cfg.http.basic_auth_user_env:
            user = read_secret(cfg.http.basic_auth_user_env, "http.basic_auth_user_env")
            pw = read_secret(cfg.http.basic_auth_password_env, "http.basic_auth_password_env")
            auth = (user or "", pw or "")
        endpoints = HttpEndpoints(self.registry, self.daemon.healthy, self.daemon.ready, auth,
                                  snapshots=self.snapshots, gallery=self._gallery_page())
        self.http = HttpServer(endpoints, cfg.http.bind, cfg.http.port if port is None else port,
                               cfg.http.tls_certfile, cfg.http.tls_keyfile)
        self.otel = None
        if cfg.otel.endpoint:
            from collectors.otel_bridge import OtelBridge
            self.otel = OtelBridge.for_endpoint(lambda: self.snapshots.snapshot("otel"),
                                                cfg.otel)
            self.engine.histogram_hook = self.otel.observe_histogram
            self.stats.labels.histogram_hook = self.otel.observe_histogram

    def _gallery_page(self) -> Callable[[], bytes] | None:
        """What /gallery serves: the failure gallery's page, or None (404) when it is off."""
        shadow = self.stats.shadow
        gallery = None if shadow is None else shadow.gallery
        if gallery is None:
            return None
        return lambda: render_gallery(gallery.entries(), gallery.size)

    def _on_scored(self, items: list[ScoredImage]) -> None:
        """Reference-model results, from the inference thread."""
        unusual = self.stats.unusual
        prepared = unusual.prepare(items) if unusual is not None else []  # outside the lock
        if self.stats.shadow is not None:
            with self.daemon.lock:
                self.stats.shadow.apply_scored(items)
                if unusual is not None:
                    unusual.apply(prepared)

    def snapshot(self) -> dict[str, Series]:
        """Every series, computed now (readers go through `snapshots`)."""
        return self.capture().render(self.daemon.series_cap)

    def capture(self) -> AppCapture:
        """The daemon's copy of the counts and the series of what runs beside it (cheap)."""
        b = SnapshotBuilder()
        if self.scorer is not None:
            self.scorer.snapshot(b)
        b.set("visionmon_build_info", (__version__,), 1.0)
        b.set("visionmon_config_info", (self.loaded.sha256[:16], "1"), 1.0)
        if self.render_worker is not None:
            for reason, n in self.render_worker.restarts.items():
                b.set("visionmon_render_worker_restarts_total", (reason,), float(n))
        return AppCapture(self.daemon.capture(), b.build())

    def _start(self) -> None:
        if self.render_worker is not None:
            self.render_worker.start()
        self.daemon.restore()  # the first snapshot shows the checkpoint's counts
        self.snapshots.warm()  # the first scrape finds a snapshot, not a cold render
        self.http.start()

    def run(self) -> None:
        """Blocking: serve HTTP and consume until stopped; the HTTP server stops last."""
        self._start()
        log.info("config loaded from %s; serving /metrics on %s:%d", self.loaded.path,
                 self.loaded.config.http.bind, self.http.port)
        try:
            self.daemon.run()
        finally:
            self.close()

    def close(self) -> None:
        """Stop what runs beside the loop: shadow scoring, OTel export, then HTTP last."""
        if self.scorer is not None:
            self.scorer.close()
        if self.otel is not None:
            self.otel.shutdown()
        self.http.stop()
        self.snapshots.close()
        if self.render_worker is not None:
            self.render_worker.close()

    def start_background(self) -> RunningDaemon:
        self._start()
        thread = threading.Thread(target=self.daemon.run, name="visionmon-loop", daemon=True)
        thread.start()
        return RunningDaemon(self, thread)


def wait_ready(daemon: Daemon, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ok, _ = daemon.ready()
        if ok:
            return
        time.sleep(0.1)
    raise TimeoutError(f"daemon not ready after {timeout_s}s: {daemon.ready()[1]}")
