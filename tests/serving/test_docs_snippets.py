"""The Python snippets of docs/serving.md's README section run as written (bootstrap
address aside) and the daemon counts what they produce."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from collectors.emitter import sampled
from tests.conftest import base_config, metric_sum, parse_metrics, scrape, wait_for
from tests.serving.fakes import png
from visionmon.broker import create_topics

DOC = Path(__file__).resolve().parents[2] / "docs" / "serving.md"


def snippets() -> list[str]:
    section = DOC.read_text().split("\n---\n")[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_readme_snippets_feed_the_daemon(broker, start_daemon, tmp_path):
    names = {"predictions": "predictions", "images": "images", "feedback": "feedback"}
    create_topics(broker.bootstrap, list(names.values()), 1)
    daemon = start_daemon(base_config(broker.bootstrap, names))
    (tmp_path / "digit.png").write_bytes(png(9))
    blocks = snippets()
    assert len(blocks) == 2, "the emitter and the own-producer snippets"
    for code in blocks:
        subprocess.run([sys.executable, "-c", code.replace("127.0.0.1:9092", broker.bootstrap)],
                       cwd=tmp_path, check=True, timeout=60)
    images = 1 + sampled("req-1", 0.05)

    def done() -> bool:
        m = parse_metrics(scrape(daemon.url))
        return (metric_sum(m, "visionmon_requests_total") >= 101
                and metric_sum(m, "visionmon_events_accepted_total", topic="images") >= images
                and metric_sum(m, "visionmon_labels_total") >= 2)

    wait_for(done, 30, what="the snippets' events counted")
    m = parse_metrics(scrape(daemon.url))
    assert metric_sum(m, "visionmon_requests_total", model="digits", version="v3") == 101
    assert metric_sum(m, "visionmon_records_rejected_total") == 0
    # the emitter's label and the own producer's, each joined to its prediction
    assert metric_sum(m, "visionmon_labels_total", outcome="correct") == 2
