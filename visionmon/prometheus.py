"""A real Prometheus process: the one way visionmon starts one (the demo's
`--prometheus`, and the tests through tests/prom_server.py).

    with PrometheusServer(workdir, ["127.0.0.1:9464"], rule_files=[...]) as prom:
        prom.wait_for_targets_up()
        prom.query("up")          # -> list of {"metric": {...}, "value": [ts, "1"]}
        prom.alerts()             # -> list of {"labels", "annotations", "state", ...}

Needs the `prometheus` binary on PATH (Debian package `prometheus`). Its configuration,
storage and log live in `workdir`; it listens on 127.0.0.1 on a free port.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from monitor.config import LoadedConfig
from visionmon.broker import free_port

PROMETHEUS = shutil.which("prometheus")


class PrometheusError(RuntimeError):
    """Prometheus did not start, or an API call failed."""


class PrometheusServer:
    """One Prometheus process. `scrape_interval`/`evaluation_interval` are Prometheus
    durations (short ones, e.g. `1s`, for tests)."""

    def __init__(self, workdir: str | Path, targets: Sequence[str] = (),
                 rule_files: Sequence[str | Path] = (), scrape_interval: str = "1s",
                 evaluation_interval: str | None = None, job: str = "visionmon",
                 binary: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.rule_files = [str(Path(p).resolve()) for p in rule_files]
        self.targets = list(targets)
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval or scrape_interval
        self.job = job
        self.binary = binary or PROMETHEUS
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None

    # --- lifecycle ---------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        """The prometheus.yml written at start."""
        return {
            "global": {"scrape_interval": self.scrape_interval,
                       "scrape_timeout": self.scrape_interval,
                       "evaluation_interval": self.evaluation_interval},
            "rule_files": self.rule_files,
            "scrape_configs": [{"job_name": self.job,
                                "static_configs": [{"targets": self.targets}]}],
        }

    def start(self, timeout_s: float = 30.0) -> PrometheusServer:
        if self.binary is None:
            raise PrometheusError("prometheus binary not found on PATH (Debian package "
                                  "`prometheus`)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        self._log = self.workdir / "prometheus.log"
        for _ in range(3):  # the free port can be taken between probing and binding
            self.port = free_port()
            with self._log.open("ab") as log:
                self._proc = subprocess.Popen(
                    [self.binary, f"--config.file={config}",
                     f"--storage.tsdb.path={self.workdir / 'data'}",
                     f"--web.listen-address=127.0.0.1:{self.port}",
                     "--storage.tsdb.retention.time=1d", "--log.level=warn"],
                    stdout=log, stderr=subprocess.STDOUT)
            if self._wait_ready(timeout_s):
                return self
            self.stop()
        raise PrometheusError(f"prometheus did not become ready; log:\n{self.log_tail()}")

    def _wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None

    def log_tail(self, lines: int = 40) -> str:
        if self._log is None or not self._log.exists():
            return ""
        return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- HTTP API ----------------------------------------------------------------
    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; returns `data` or raises PrometheusError (with the error
        Prometheus gave, e.g. a PromQL parse error)."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=30) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as err:  # 4xx/5xx carry the error in the body
            body = json.loads(err.read() or b"{}")
        except OSError as err:
            raise PrometheusError(f"GET /api/v1/{path} failed: {err}") from err
        if body.get("status") != "success":
            raise PrometheusError(f"GET /api/v1/{path}: {body.get('errorType')}: "
                                  f"{body.get('error')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query (now, or at unix time `at`): the result vector; a scalar comes
        back as `[{"value": [ts, "v"]}]`."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        if data["resultType"] == "scalar":
            return [{"value": data["result"]}]
        return list(data["result"])

    def query_range(self, expr: str, start: float, end: float, step: str = "1s"
                    ) -> list[dict[str, Any]]:
        """Range query: the result matrix (one entry per series)."""
        return list(self.api("query_range", query=expr, start=f"{start:.3f}",
                             end=f"{end:.3f}", step=step)["result"])

    def label_values(self, label: str, match: str) -> list[str]:
        """Values of `label` on series matching the selector `match`."""
        return list(self.api(f"label/{label}/values", **{"match[]": match}))

    def value(self, expr: str) -> float | None:
        """The value of a query returning at most one sample, or None."""
        result = self.query(expr)
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(f"{expr} returned {len(result)} samples")
        return float(result[0]["value"][1])

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending and firing): `labels`, `annotations`, `state`, `value`."""
        return list(self.api("alerts")["alerts"])

    def rules(self) -> list[dict[str, Any]]:
        """Loaded rule groups (with health and last error of each rule)."""
        return list(self.api("rules")["groups"])

    def firing(self) -> set[str]:
        """Names of firing alerts, as `Alert/slo/severity` for SLO alerts, else `Alert`;
        empty when Prometheus cannot be reached (the demo polls it while it stops)."""
        try:
            alerts = self.alerts()
        except PrometheusError:
            return set()
        out = set()
        for a in alerts:
            if a.get("state") != "firing":
                continue
            labels = a.get("labels", {})
            name = labels.get("alertname", "?")
            if "slo" in labels:
                name = f"{name}/{labels['slo']}/{labels.get('severity', '')}"
            out.add(name)
        return out

    def targets_up(self) -> bool:
        active = self.api("targets")["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)

    def wait_for_targets_up(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.targets_up():
                return
            time.sleep(0.2)
        raise PrometheusError(f"targets not up after {timeout_s}s: "
                              f"{self.api('targets')['activeTargets']}")


def start_with_generated_rules(loaded: LoadedConfig, workdir: Path, target_url: str,
                               interval: str = "1s") -> PrometheusServer:
    """A Prometheus scraping `target_url` every `interval` with the rules that
    `visionmon alerts generate` writes for `loaded` (into `workdir/rules`)."""
    from alerts.generate import write_rules

    rules = write_rules(loaded, workdir / "rules")
    target = target_url.removeprefix("http://").rstrip("/")
    return PrometheusServer(workdir, [target], rules, scrape_interval=interval).start()
