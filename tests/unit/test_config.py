"""Config validation: broken configs are refused with the file and the key path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # left out of `make test-fast`

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "visionmon.yaml"

GOOD_MODELS = "models:\n  - {name: digits, classes: [a, b, c]}\n"

BROKEN = [
    ("unknown top-level key", "version: 1\n" + GOOD_MODELS + "kafak: {}\n", "kafak",
     "unknown key"),
    ("unknown nested key", "version: 1\n" + GOOD_MODELS + "kafka: {group: x}\n",
     "kafka.group", "unknown key"),
    ("wrong client choice", "version: 1\n" + GOOD_MODELS + "kafka: {client: librdkafka}\n",
     "kafka.client", "kafka-python"),
    ("port out of range", "version: 1\n" + GOOD_MODELS + "http: {port: 70000}\n",
     "http.port", "65535"),
    ("no models", "version: 1\nmodels: []\n", "models", "at least 1"),
    ("duplicate class", "version: 1\nmodels:\n  - {name: m, classes: [a, a]}\n",
     "models.0.classes", "duplicate"),
    ("missing version", GOOD_MODELS, "version", "required"),
    ("future version", "version: 2\n" + GOOD_MODELS, "version", "version 1"),
    ("literal secret", "version: 1\n" + GOOD_MODELS +
     "kafka: {security_protocol: SASL_SSL, sasl_password: hunter2}\n", "kafka",
     "sasl_password_env"),
    ("bad window", "version: 1\n" + GOOD_MODELS + "windows: {sizes: [5 minutes]}\n",
     "windows.sizes", "duration"),
    ("not yaml", "version: 1\nmodels: [\n", "line", "YAML"),
    ("class file missing", "version: 1\nmodels:\n  - {name: m, classes_file: nope.txt}\n",
     "models.0.classes_file", "cannot read"),
]


@pytest.mark.parametrize(("title", "text", "key", "hint"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_config_is_refused_naming_file_and_key(tmp_path, title, text, key, hint):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "visionmon", "check-config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert str(path) in proc.stderr
    assert key in proc.stderr
    assert hint in proc.stderr


def test_example_config_is_valid():
    proc = subprocess.run([sys.executable, "-m", "visionmon", "check-config", str(EXAMPLE)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stdout


def test_class_file_is_read_relative_to_the_config(tmp_path):
    from monitor.config import load_config

    (tmp_path / "classes.txt").write_text("cat\ndog\n\nbird\n")
    path = tmp_path / "c.yaml"
    path.write_text("version: 1\nmodels:\n  - {name: m, classes_file: classes.txt}\n")
    loaded = load_config(path)
    assert loaded.models["m"].classes == ("cat", "dog", "bird")
