"""`visionmon bridge`: the KServe payload-logger bridge as a long-running process.

Wiring only: the config's `kafka` section opens the emitter's producer, the bridge pairs
and converts events, and one HTTP server takes the CloudEvents and serves /metrics,
/healthz and /readyz. SIGTERM/SIGINT stop the server, settle waiting halves, then drain
and flush the emitter.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

log = logging.getLogger(__name__)


def _model_pair(text: str) -> tuple[str, str]:
    source, sep, target = text.partition("=")
    if not sep or not source or not target:
        raise argparse.ArgumentTypeError(f"{text!r}: use KSERVE_NAME=VISIONMON_MODEL")
    return source, target


def add_bridge_arguments(p: argparse.ArgumentParser) -> None:
    """The `bridge` subcommand's options (logging options are added by the CLI)."""
    p.add_argument("--config", required=True,
                   help="visionmon YAML config: its kafka section and model list are used")
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (0: a free one)")
    p.add_argument("--model", action="append", type=_model_pair, default=[],
                   metavar="KSERVE=MODEL",
                   help="map a KServe model or InferenceService name to a configured model "
                        "(repeatable); unmapped names are used as they are")
    p.add_argument("--default-version", default="default",
                   help="version for responses without model_version (all V1 responses)")
    p.add_argument("--image-sample-rate", type=float, default=0.0,
                   help="fraction of requests whose image is produced (by request id)")
    p.add_argument("--scores", choices=["probs", "logits"], default="probs",
                   help="score vectors are probabilities, or logits to pass through softmax")
    p.add_argument("--output-name", default=None, help="V2 output tensor to read")
    p.add_argument("--pair-ttl", type=float, default=30.0,
                   help="seconds a request or response waits for its other half")
    p.add_argument("--unpaired-requests-as-errors", action="store_true",
                   help="log a request whose response never came as status=error")
    p.add_argument("--drop-unpaired-responses", action="store_true",
                   help="drop a response whose request never came (default: log it)")


def run_bridge(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code (2: bad configuration)."""
    from prometheus_client.registry import CollectorRegistry

    from collectors.emitter import EmitterSettings, PredictionLogger
    from collectors.http_server import HttpServer
    from collectors.kserve.bridge import BridgeCollector, BridgeSettings, KServeBridge
    from collectors.kserve.http_app import BridgeApp
    from monitor.config import ConfigError, load_config

    try:
        loaded = load_config(args.config)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    unknown = sorted({target for _, target in args.model} - set(loaded.models))
    if unknown:
        print(f"--model: {unknown} not in the models of {args.config} "
              f"({sorted(loaded.models)})", file=sys.stderr)
        return 2
    try:
        emitter = EmitterSettings(
            image_sample_rate=args.image_sample_rate,
            image_max_bytes=loaded.config.images.max_bytes,
            batch_max_bytes=min(512 * 1024, loaded.config.limits.max_message_bytes),
            batch_max_events=min(100, loaded.config.limits.max_batch_events))
        settings = BridgeSettings(
            model_map=dict(args.model), default_version=args.default_version,
            scores=args.scores, output_name=args.output_name, pair_ttl_s=args.pair_ttl,
            emit_unpaired_responses=not args.drop_unpaired_responses,
            unpaired_requests_as_errors=args.unpaired_requests_as_errors)
    except ValueError as err:
        print(f"bridge: {err}", file=sys.stderr)
        return 2
    registry = CollectorRegistry()
    logger = PredictionLogger(loaded.config.kafka, emitter, registry=registry,
                              close_at_exit=False)
    bridge = KServeBridge(logger, settings)
    registry.register(BridgeCollector(bridge.stats))
    server = HttpServer(BridgeApp(bridge, registry), args.bind, args.port)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s received: stopping the bridge", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    bridge.start()
    server.start()
    log.info("bridge listening on %s:%d; producing to %s", args.bind, server.port,
             ", ".join(loaded.config.kafka.bootstrap_servers))
    stop.wait()
    server.stop()
    bridge.close()
    logger.close()
    log.info("bridge stopped: %s", bridge.stats())
    return 0
