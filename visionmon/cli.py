"""The `visionmon` command: run, check-config, demo, and the generators."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Collection, Sequence
from types import FrameType

from monitor.config import ConfigError, LoadedConfig, load_config
from monitor.segment_budget import budget_lines
from visionmon import __version__, logs
from visionmon.preflight import COMMANDS, RUN, Command, preflight

log = logging.getLogger("visionmon")


def _checked(path: str, commands: Collection[Command]) -> LoadedConfig:
    """Load the config and run the preflight checks that guard `commands`; warnings are
    logged, errors raised together as one ConfigError."""
    loaded = load_config(path)
    found = preflight(loaded, commands)
    for problem in found.warnings:
        log.warning("%s", found.line(problem))
    found.raise_errors()
    return loaded


def _cmd_check_config(args: argparse.Namespace) -> int:
    """Every check of `run`, `alerts generate` and `dashboards generate`, all reported."""
    try:
        loaded = load_config(args.config)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    found = preflight(loaded, COMMANDS)
    for problem in found.problems:
        print(("warning: " if problem.warning else "") + found.line(problem), file=sys.stderr)
    if found.errors:
        print(f"{args.config}: {len(found.errors)} problem(s); nothing was started",
              file=sys.stderr)
        return 2
    models = ", ".join(f"{n} ({len(m.classes)} classes)" for n, m in loaded.models.items())
    warned = f"; {len(found.warnings)} warning(s)" if found.warnings else ""
    print(f"{args.config}: OK (config version {loaded.config.version}; models: {models}"
          f"{warned})")
    for line in budget_lines(loaded):
        print(line)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    logs.configure(args.log_level, args.log_format)
    from collectors.checkpoint_format import CheckpointRefused
    try:
        loaded = _checked(args.config, RUN)
        from visionmon.app import App
        app = App(loaded, reset_state=args.reset_state)
    except (ConfigError, CheckpointRefused) as err:
        print(err, file=sys.stderr)
        return 2

    def _stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s received: finishing the batch", signal.Signals(signum).name)
        app.daemon.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    from visionmon.gc_tuning import tune_collector
    tune_collector()
    try:
        app.run()
    except CheckpointRefused as err:  # the broker is another cluster than the checkpoint's
        print(err, file=sys.stderr)
        return 2
    log.info("stopped")
    return 0


def _positive(text: str) -> float:
    """An argparse type: a number above 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def _cmd_demo(args: argparse.Namespace) -> int:
    logs.configure(args.log_level, args.log_format)
    from visionmon.demo import run_demo
    return run_demo(args)


def _cmd_generate(kind: Command, args: argparse.Namespace) -> int:
    try:
        loaded = _checked(args.config, (kind,))
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    try:
        if kind == "alerts":
            from alerts.generate import write_all as write_alerts
            paths = write_alerts(loaded, args.out)
        else:
            from dashboards.generate import write_all as write_dashboards
            paths = write_dashboards(loaded, args.out)
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    for p in paths:
        print(p)
    return 0


def _cmd_baseline(args: argparse.Namespace) -> int:
    from visionmon.baseline_cli import build_baseline_command
    return build_baseline_command(args)


def _cmd_baseline_export(args: argparse.Namespace) -> int:
    from visionmon.baseline_cli import export_baseline_command
    return export_baseline_command(args)


def _cmd_bridge(args: argparse.Namespace) -> int:
    logs.configure(args.log_level, args.log_format)
    from collectors.kserve.command import run_bridge
    return run_bridge(args)


def _cmd_replay(args: argparse.Namespace) -> int:
    logs.configure(args.log_level, args.log_format)
    from visionmon.postmortem.cli import replay_command
    return replay_command(args)


def _cmd_report(args: argparse.Namespace) -> int:
    logs.configure(args.log_level, args.log_format)
    from visionmon.postmortem.cli import report_command
    return report_command(args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="visionmon", description=(
        "Monitoring sidecar for image classifiers: Kafka in, Prometheus metrics out."))
    p.add_argument("--version", action="version", version=f"visionmon {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def logging_opts(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--log-format", choices=["text", "json"], default="text",
                        help="log lines as plain text or one JSON object each (default text)")
        sp.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        default="INFO", help="least severe level logged (default INFO)")

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", required=True, help="YAML config file")
    run.add_argument("--reset-state", action="store_true",
                     help="start with empty state: move the checkpoint in state.checkpoint_dir "
                          "aside (renamed state.ckpt.reset-<time>, not deleted). Needed when "
                          "the checkpoint belongs to another Kafka cluster, consumer group, "
                          "topics or class list, which the daemon otherwise refuses")
    logging_opts(run)
    run.set_defaults(func=_cmd_run)

    chk = sub.add_parser("check-config", help="every check of run, alerts generate and "
                                              "dashboards generate; exit 2 on any error")
    chk.add_argument("config", help="YAML config file")
    chk.set_defaults(func=_cmd_check_config)

    demo = sub.add_parser("demo", help="embedded broker + sample traffic + daemon")
    demo.add_argument("--duration", type=_positive, default=150.0,
                      help="seconds of traffic (wall clock; default 150)")
    demo.add_argument("--speed", type=_positive, default=None,
                      help="time compression: event seconds per wall second (default 10; "
                           "5 with --workload real)")
    demo.add_argument("--seed", type=int, default=7,
                      help="random seed of the models' training and the traffic (default 7)")
    demo.add_argument("--rate", type=float, default=120.0,
                      help="predictions per wall second (default 120)")
    demo.add_argument("--image-fraction", type=float, default=None,
                      help="fraction of requests whose image is sampled (default 0.1; 0.05 "
                           "with --workload real, which the reference model scores on one "
                           "CPU core)")
    demo.add_argument("--workload", choices=("digits", "real"), default="digits",
                      help="digits: two small CNNs trained at start-up (the default); real: "
                           "MobileNetV2 serving and EfficientNet-Lite0 shadow-scoring, "
                           "ImageNet weights and 1,000 classes, on real photos (needs a "
                           "source checkout; about a minute more the first time)")
    demo.add_argument("--port", type=int, default=0, help="HTTP port (0: a free one)")
    demo.add_argument("--prometheus", action="store_true",
                      help="also start a real Prometheus with the generated rules")
    demo.add_argument("--keep-running", action="store_true",
                      help="keep the daemon serving after the traffic ends (Ctrl-C stops it)")
    demo.add_argument("--out", default=None, help="folder for the generated config and report")
    logging_opts(demo)
    demo.set_defaults(func=_cmd_demo)

    for kind in ("alerts", "dashboards"):
        g = sub.add_parser(kind, help=f"{kind} generator")
        gsub = g.add_subparsers(dest="action", required=True)
        gen = gsub.add_parser("generate", help=f"generate {kind} from the config")
        gen.add_argument("--config", required=True, help="YAML config file")
        gen.add_argument("--out", required=True,
                         help="output folder (created; generated files are replaced)")
        gen.set_defaults(func=lambda a, k=kind: _cmd_generate(k, a))

    base = sub.add_parser("baseline", help="baseline profiles")
    bsub = base.add_subparsers(dest="action", required=True)
    build = bsub.add_parser("build", help="build a baseline file")
    build.add_argument("--config", required=True, help="YAML config file")
    build.add_argument("--model", required=True, help="model name (one of the config's models)")
    build.add_argument("--out", required=True,
                       help="baseline file to write (JSON, written atomically)")
    build.add_argument("--from-jsonl", default=None, metavar="FILE",
                       help="prediction events, one JSON object per line")
    build.add_argument("--labels-jsonl", default=None, metavar="FILE",
                       help="feedback events (labels), one JSON object per line: calibrates "
                            "the label-free accuracy estimate")
    build.add_argument("--from-kafka", action="store_true",
                       help="read the predictions topic between --since and --until instead")
    build.add_argument("--since", default=None,
                       help="start of the Kafka time range (epoch seconds or RFC 3339)")
    build.add_argument("--until", default=None,
                       help="end of the Kafka time range (epoch seconds or RFC 3339)")
    build.add_argument("--images", default=None, metavar="PATH",
                       help="images to profile with the reference model (a folder of "
                            "jpg/png/webp files or JSON lines with image_b64)")
    build.set_defaults(func=_cmd_baseline)
    export = bsub.add_parser("export", help="write the baseline the daemon uses (read from "
                                            "its checkpoint) to a baseline file")
    export.add_argument("--config", required=True, help="the daemon's YAML config")
    export.add_argument("--model", default=None,
                        help="the model whose baseline to export (default: the only one)")
    export.add_argument("--out", required=True,
                        help="baseline file to write (loaded by baseline.mode: file)")
    export.set_defaults(func=_cmd_baseline_export)

    from collectors.kserve.command import add_bridge_arguments
    bridge = sub.add_parser("bridge", help="KServe payload-logger bridge: CloudEvents in, "
                                           "contract events to Kafka out")
    add_bridge_arguments(bridge)
    logging_opts(bridge)
    bridge.set_defaults(func=_cmd_bridge)

    from visionmon.postmortem.cli import add_replay_arguments
    rep = sub.add_parser("replay", help="recompute the metrics of a past time range into "
                                        "an OpenMetrics file (postmortems)")
    add_replay_arguments(rep)
    logging_opts(rep)
    rep.set_defaults(func=_cmd_replay)

    from visionmon.postmortem.cli import add_report_arguments
    rpt = sub.add_parser("report", help="HTML postmortem report of a time range")
    add_report_arguments(rpt)
    logging_opts(rpt)
    rpt.set_defaults(func=_cmd_report)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
