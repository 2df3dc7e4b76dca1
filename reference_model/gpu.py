"""The reference model's own GPU, read through NVML: utilisation, memory and power.

Exported as `visionmon_reference_gpu_utilization_ratio`,
`visionmon_reference_gpu_memory_used_bytes`, `visionmon_reference_gpu_memory_total_bytes` and
`visionmon_reference_gpu_power_watts`, only where the model runs on CUDA and NVML answers
(`pip install 'visionmon[gpu]'`, which brings `nvidia-ml-py`): on a CPU, without the package
or without a driver they are absent, never 0.
A field NVML refuses (power on some boards) is absent alone.

The NVML module is a parameter (`GpuMonitor.open(nvml, ...)`), so tests hand in a fake one;
`load_nvml()` imports the real one lazily.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from monitor.catalog import PREFIX
from monitor.snapshot import SnapshotBuilder

log = logging.getLogger(__name__)

UTILIZATION = f"{PREFIX}reference_gpu_utilization_ratio"
MEMORY_USED = f"{PREFIX}reference_gpu_memory_used_bytes"
MEMORY_TOTAL = f"{PREFIX}reference_gpu_memory_total_bytes"
POWER = f"{PREFIX}reference_gpu_power_watts"
#: The extra that installs NVML's Python binding.
EXTRA = "visionmon[gpu]"


@dataclass(frozen=True, slots=True)
class GpuReading:
    """One read of the GPU; None where NVML refused that field. Utilisation 0..1 (share of
    NVML's last sample period with a kernel running), memory in bytes, power in watts."""

    utilization_ratio: float | None
    memory_used_bytes: float | None
    memory_total_bytes: float | None
    power_watts: float | None

    def series(self) -> tuple[tuple[str, float], ...]:
        """(metric, value) for every field NVML answered."""
        pairs = ((UTILIZATION, self.utilization_ratio), (MEMORY_USED, self.memory_used_bytes),
                 (MEMORY_TOTAL, self.memory_total_bytes), (POWER, self.power_watts))
        return tuple((name, v) for name, v in pairs if v is not None)


class GpuMonitor:
    """Reads one GPU through an NVML module (the real `pynvml` or a test's fake)."""

    def __init__(self, nvml: Any, handle: Any) -> None:
        self._nvml = nvml
        self._handle = handle

    @classmethod
    def open(cls, nvml: Any, uuid: str | None = None, index: int = 0) -> GpuMonitor | None:
        """The GPU with this UUID (`GPU-...`, immune to CUDA_VISIBLE_DEVICES renumbering), or
        at this NVML index; None, logged, when NVML cannot be initialised or has no such GPU."""
        try:
            nvml.nvmlInit()
            if uuid is not None:
                handle = nvml.nvmlDeviceGetHandleByUUID(uuid)
            else:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
        except nvml.NVMLError as err:
            log.warning("reference GPU metrics off: NVML cannot read GPU %s: %s",
                        uuid or index, err)
            return None
        return cls(nvml, handle)

    def _ask(self, call: str) -> Any | None:
        try:
            return getattr(self._nvml, call)(self._handle)
        except self._nvml.NVMLError:
            return None

    def read(self) -> GpuReading:
        """Utilisation, memory and power now; each field None when NVML refuses it."""
        util = self._ask("nvmlDeviceGetUtilizationRates")
        memory = self._ask("nvmlDeviceGetMemoryInfo")
        milliwatts = self._ask("nvmlDeviceGetPowerUsage")
        return GpuReading(
            utilization_ratio=None if util is None else float(util.gpu) / 100.0,
            memory_used_bytes=None if memory is None else float(memory.used),
            memory_total_bytes=None if memory is None else float(memory.total),
            power_watts=None if milliwatts is None else float(milliwatts) / 1000.0)

    def snapshot(self, builder: SnapshotBuilder, model: str) -> None:
        """Add the fields NVML answered, labelled with the reference model's name."""
        for name, value in self.read().series():
            builder.set(name, (model,), value)


def load_nvml() -> ModuleType | None:
    """NVML's binding (`pynvml`, from nvidia-ml-py), or None with a log line naming the extra."""
    try:
        import pynvml
    except ImportError:
        log.info("reference GPU metrics off: NVML's binding is not installed "
                 "(pip install '%s')", EXTRA)
        return None
    return pynvml


def cuda_uuid(index: int) -> str | None:
    """NVML's UUID (`GPU-...`) of torch's CUDA device `index`, where torch reports it."""
    import torch

    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    if uuid is None:
        return None
    text = str(uuid)
    return text if text.startswith("GPU-") else f"GPU-{text}"


def reference_gpu(device: str, nvml: Any | None = None) -> GpuMonitor | None:
    """The monitor of the GPU a reference model on `device` (`cuda`, `cuda:1`, `cpu`) runs
    on; None on a CPU or where NVML is missing or cannot read it."""
    if not device.startswith("cuda"):
        return None
    nvml = nvml if nvml is not None else load_nvml()
    if nvml is None:
        return None
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    return GpuMonitor.open(nvml, cuda_uuid(index), index)
