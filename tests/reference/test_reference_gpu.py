"""The reference model's GPU through NVML: a fake NVML module handed in (the seam), and the
metrics absent, not zero, where there is no GPU (this machine has none)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

from collectors.exposition import ExpositionWriter
from monitor.reference_config import ImagesConfig
from monitor.snapshot import SnapshotBuilder
from reference_model.digits import DIGIT_CLASSES
from reference_model.gpu import (
    MEMORY_TOTAL,
    MEMORY_USED,
    POWER,
    UTILIZATION,
    GpuMonitor,
    reference_gpu,
)
from reference_model.shadow import ShadowScorer
from tests.reference.test_shadow import Collector, FakeScorer, card

GPU_METRICS = (UTILIZATION, MEMORY_USED, MEMORY_TOTAL, POWER)


class FakeNVMLError(Exception):
    """What pynvml raises (pynvml.NVMLError)."""


@dataclass
class Utilization:
    gpu: int
    memory: int


@dataclass
class Memory:
    total: int
    used: int
    free: int


@dataclass
class FakeNvml:
    """The part of pynvml that reference_model.gpu calls; `refuse` names calls that raise,
    `calls` records every call."""

    util: int = 37
    used: int = 3 * 2**30
    total: int = 80 * 2**30
    milliwatts: int = 212_500
    refuse: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)
    NVMLError: type[Exception] = FakeNVMLError

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name in self.refuse:
            raise FakeNVMLError(f"{name}: Not Supported")

    def nvmlInit(self) -> None:
        self._call("nvmlInit")

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        self._call("nvmlDeviceGetHandleByUUID")
        return f"handle:{uuid}"

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        self._call("nvmlDeviceGetHandleByIndex")
        return f"handle:{index}"

    def nvmlDeviceGetUtilizationRates(self, handle: str) -> Utilization:
        self._call("nvmlDeviceGetUtilizationRates")
        return Utilization(gpu=self.util, memory=5)

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> Memory:
        self._call("nvmlDeviceGetMemoryInfo")
        return Memory(total=self.total, used=self.used, free=self.total - self.used)

    def nvmlDeviceGetPowerUsage(self, handle: str) -> int:
        self._call("nvmlDeviceGetPowerUsage")
        return self.milliwatts


def exported(monitor: GpuMonitor | None) -> dict[str, float]:
    """metric -> value of the GPU metrics on /metrics text, labelled model="digits"."""
    b = SnapshotBuilder()
    if monitor is not None:
        monitor.snapshot(b, "digits")
    text = ExpositionWriter().write(b.build()).decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name_labels, value = line.rsplit(" ", 1)
        assert name_labels.endswith('{model="digits"}'), line
        out[name_labels.split("{")[0]] = float(value)
    return out


READS = [
    ("a GPU that answers everything exports all four, as a ratio, bytes and watts", set(),
     {UTILIZATION: 0.37, MEMORY_USED: 3 * 2**30, MEMORY_TOTAL: 80 * 2**30, POWER: 212.5}),
    ("a board that does not report power exports the other three",
     {"nvmlDeviceGetPowerUsage"},
     {UTILIZATION: 0.37, MEMORY_USED: 3 * 2**30, MEMORY_TOTAL: 80 * 2**30}),
    ("a GPU whose every read fails exports nothing, not zeros",
     {"nvmlDeviceGetUtilizationRates", "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetPowerUsage"},
     {}),
]


@pytest.mark.parametrize(("sentence", "refuse", "expected"), READS, ids=[r[0] for r in READS])
def test_nvml_reads_become_metrics_in_their_units(sentence, refuse, expected):
    nvml = FakeNvml(refuse=refuse)
    monitor = GpuMonitor.open(nvml, "GPU-1234")
    assert monitor is not None
    assert exported(monitor) == expected


def test_the_gpu_is_found_by_uuid_when_torch_reports_one_else_by_index():
    by_uuid, by_index = FakeNvml(), FakeNvml()
    GpuMonitor.open(by_uuid, "GPU-1234")
    GpuMonitor.open(by_index, None, 1)
    assert by_uuid.calls == ["nvmlInit", "nvmlDeviceGetHandleByUUID"]
    assert by_index.calls == ["nvmlInit", "nvmlDeviceGetHandleByIndex"]


@pytest.mark.parametrize("failing", ["nvmlInit", "nvmlDeviceGetHandleByUUID"])
def test_nvml_without_a_driver_or_the_gpu_gives_no_monitor(failing):
    assert GpuMonitor.open(FakeNvml(refuse={failing}), "GPU-1234") is None


def test_a_model_on_the_cpu_never_asks_nvml():
    nvml = FakeNvml()
    assert reference_gpu("cpu", nvml) is None
    assert nvml.calls == []


def _snapshot(**kw: Any) -> dict[str, Any]:
    """One snapshot of a shadow scorer with a CPU fake scorer (closed afterwards)."""
    torch.set_num_threads(1)
    shadow = ShadowScorer(card(), ImagesConfig(), DIGIT_CLASSES, Collector(),
                          scorer=FakeScorer(), **kw)
    try:
        b = SnapshotBuilder()
        shadow.snapshot(b)
        return b.build()
    finally:
        shadow.close()


def test_without_a_gpu_the_shadow_scorer_exports_no_gpu_metric_not_zero():
    """The default (`gpu="auto"`) on this machine: a CPU model, so the family is absent."""
    text = ExpositionWriter().write(_snapshot()).decode()
    assert "visionmon_reference_model_up" in text
    assert "visionmon_reference_gpu" not in text


def test_with_a_gpu_monitor_the_shadow_scorer_exports_its_reads():
    series = _snapshot(gpu=GpuMonitor.open(FakeNvml(), "GPU-1234"))
    assert series[UTILIZATION] == {("digits",): 0.37}
    assert series[POWER] == {("digits",): 212.5}
