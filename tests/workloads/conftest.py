"""Small versions of the real-image workloads, built once per test session in a temporary
cache (the full builds are for the benchmarks)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from benchmarks.workloads.workload import Workload, load_workload


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def workload_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("workloads"))


@pytest.fixture(scope="session")
def build_log() -> list[str]:
    return []


@pytest.fixture(scope="session")
def clipart_small(workload_cache: Path, build_log: list[str]) -> Workload:
    torch.set_num_threads(1)
    return load_workload("clipart", "small", workload_cache, build_log.append)


@pytest.fixture(scope="session")
def imagenet_small(workload_cache: Path, build_log: list[str]) -> Workload:
    torch.set_num_threads(1)
    return load_workload("imagenet", "small", workload_cache, build_log.append)
