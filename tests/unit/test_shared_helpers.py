"""Small shared helpers exist once: the atomic write, the Prometheus starter, the version
source, the fold-in label value; and library defaults equal the config's."""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.atomic_write import replacing, write_bytes_atomically, write_text_atomically
from monitor.config import BaselineConfig, DriftConfig, QualityConfig, VisionmonConfig
from monitor.drift import DriftMonitor
from monitor.durations import parse_duration
from monitor.shadow import ShadowMonitor

ROOT = Path(__file__).resolve().parents[2]
#: The product's packages (benchmarks keep their own scratch files).
PRODUCT = ("monitor", "collectors", "reference_model", "alerts", "dashboards", "visionmon",
           "deploy")


def _sources(packages: tuple[str, ...] = (*PRODUCT, "benchmarks", "tests")) -> Iterator[Path]:
    for package in packages:
        yield from sorted((ROOT / package).rglob("*.py"))


# --- one atomic write ------------------------------------------------------------------

def test_an_atomic_write_leaves_only_the_file_with_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "out.bin"
    write_bytes_atomically(target, (b"head\n", b"body"), mode=0o600)
    assert target.read_bytes() == b"head\nbody"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["out.bin"]


def test_a_write_that_fails_midway_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    write_text_atomically(target, "old")

    def chunks() -> Iterator[bytes]:
        yield b"new, half"
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_bytes_atomically(target, chunks())
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_a_durable_write_syncs_the_file_and_its_folder(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    write_bytes_atomically(tmp_path / "state", b"x", durable=True)
    assert len(synced) == 2


def test_a_path_writer_keeps_the_suffix_it_needs(tmp_path: Path) -> None:
    with replacing(tmp_path / "model.pt2", suffix=".pt2") as tmp:
        assert tmp.suffix == ".pt2" and tmp.parent == tmp_path
        tmp.write_bytes(b"program")
    assert (tmp_path / "model.pt2").read_bytes() == b"program"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt2"]


def _renames(source: str) -> list[int]:
    """Lines calling `os.replace(a, b)`, `os.rename(a, b)` or `path.replace(b)` /
    `path.rename(b)` (pathlib's, one argument; `str.replace` takes two)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("replace", "rename")
                and isinstance(node.func.value, ast.Name)):
            continue
        if len(node.args) == (2 if node.func.value.id == "os" else 1) and not node.keywords:
            lines.append(node.lineno)
    return lines


#: Renames outside the helper that are not writes, with why.
RENAMES_ALLOWED = {
    "collectors/checkpoint.py": "a corrupt checkpoint is moved aside, not written",
    "monitor/atomic_write.py": "the helper itself",
}


def test_every_whole_file_write_goes_through_the_one_helper() -> None:
    offenders = []
    for path in _sources(PRODUCT):
        rel = path.relative_to(ROOT).as_posix()
        if rel in RENAMES_ALLOWED:
            continue
        offenders += [f"{rel}:{line}" for line in _renames(path.read_text())]
    assert offenders == [], "write through monitor.atomic_write instead"


# --- one Prometheus starter, one version source, one fold-in value ---------------------

def test_only_one_module_starts_a_prometheus_process() -> None:
    starters = [p.relative_to(ROOT).as_posix() for p in _sources()
                if "--storage.tsdb.path" in p.read_text()
                and p.name != "test_shared_helpers.py"]
    assert starters == ["visionmon/prometheus.py"]


def test_the_otel_bridge_takes_its_version_from_package_metadata() -> None:
    from collectors import otel_bridge

    imported = {n.module for n in ast.walk(ast.parse(Path(otel_bridge.__file__).read_text()))
                if isinstance(n, ast.ImportFrom)}
    assert not any(m and m.split(".")[0] == "visionmon" for m in imported)
    assert otel_bridge.package_version() == importlib.metadata.version("visionmon")


def test_the_fold_in_label_value_is_spelled_once() -> None:
    spelled = [p.relative_to(ROOT).as_posix() for p in sorted((ROOT / "monitor").rglob("*.py"))
               if '"_other"' in p.read_text()]
    assert spelled == ["monitor/catalog.py"]


# --- defaults live in the config models ------------------------------------------------

_SHADOW_JOIN = VisionmonConfig.model_fields["shadow_join"].get_default(
    call_default_factory=True)

LIBRARY_DEFAULTS: list[tuple[str, Any, str, Any]] = [
    ("DriftMonitor's level is drift.alpha", DriftMonitor, "alpha", DriftConfig().alpha),
    ("DriftMonitor's minimum effect is drift.min_effect", DriftMonitor, "min_effect",
     DriftConfig().min_effect),
    ("DriftMonitor's correction is drift.correction", DriftMonitor, "correction",
     DriftConfig().correction),
    ("DriftMonitor's bins are baseline.quantile_bins", DriftMonitor, "quantile_bins",
     BaselineConfig().quantile_bins),
    ("ShadowMonitor's join size is shadow_join.max_entries", ShadowMonitor, "max_entries",
     _SHADOW_JOIN.max_entries),
    ("ShadowMonitor's join time-to-live is shadow_join.ttl", ShadowMonitor, "ttl_seconds",
     parse_duration(_SHADOW_JOIN.ttl)),
    ("ShadowMonitor's image baseline is baseline.images", ShadowMonitor, "baseline_images",
     BaselineConfig().images),
    ("ShadowMonitor's minimum agreement images is quality.min_shadow_images", ShadowMonitor,
     "min_agreement_images", QualityConfig().min_shadow_images),
]


@pytest.mark.parametrize(("sentence", "cls", "param", "config_default"), LIBRARY_DEFAULTS,
                         ids=[r[0] for r in LIBRARY_DEFAULTS])
def test_a_library_default_equals_the_configs(sentence: str, cls: Any, param: str,
                                              config_default: Any) -> None:
    assert inspect.signature(cls).parameters[param].default == config_default, sentence


def test_shadow_join_sizes_are_configurable_with_todays_values() -> None:
    cfg = VisionmonConfig.model_validate({"version": 1, "models": [
        {"name": "m", "classes": ["a", "b"]}], "shadow_join": {"max_entries": 7, "ttl": "5m"}})
    assert (cfg.shadow_join.max_entries, cfg.shadow_join.ttl) == (7, "5m")
    assert (_SHADOW_JOIN.max_entries, parse_duration(_SHADOW_JOIN.ttl)) == (50_000, 3600)
