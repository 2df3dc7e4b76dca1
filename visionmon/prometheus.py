"""A local Prometheus for the demo (`--prometheus`): generated rules, short intervals."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from monitor.config import LoadedConfig
from visionmon.broker import free_port


@dataclass
class PrometheusProcess:
    proc: subprocess.Popen[bytes]
    url: str
    rules_dir: Path

    @classmethod
    def start(cls, loaded: LoadedConfig, workdir: Path, target_url: str,
              interval: str = "1s") -> PrometheusProcess:
        from alerts.generate import write_rules

        binary = shutil.which("prometheus")
        if binary is None:
            raise FileNotFoundError("prometheus is not installed (Debian package 'prometheus')")
        workdir.mkdir(parents=True, exist_ok=True)
        rules_dir = workdir / "rules"
        rules = [str(p) for p in write_rules(loaded, rules_dir) if p.suffix in (".yml", ".yaml")
                 and "test" not in p.name]
        target = target_url.removeprefix("http://").rstrip("/")
        (workdir / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": rules,
            "scrape_configs": [{"job_name": "visionmon", "static_configs": [
                {"targets": [target]}]}]}))
        port = free_port()
        proc = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=(workdir / "prometheus.log").open("ab"), stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=1).close()
                return cls(proc, url, rules_dir)
            except OSError:
                time.sleep(0.2)
        proc.kill()
        raise RuntimeError(f"prometheus did not become ready; see {workdir / 'prometheus.log'}")

    def firing(self) -> set[str]:
        """Names of firing alerts, as `Alert/slo/severity` for SLO alerts, else `Alert`."""
        import json

        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/alerts", timeout=2) as resp:
                data = json.loads(resp.read())
        except OSError:
            return set()
        out = set()
        for a in data.get("data", {}).get("alerts", []):
            if a.get("state") != "firing":
                continue
            labels = a.get("labels", {})
            name = labels.get("alertname", "?")
            if "slo" in labels:
                name = f"{name}/{labels['slo']}/{labels.get('severity', '')}"
            out.add(name)
        return out

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
