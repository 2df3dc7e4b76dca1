"""Fixtures for the reference-model tests: one trained digits model per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from reference_model.digits import DigitsArtifact, build_digits_reference


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> DigitsArtifact:
    """The digits CNN, trained once (about 2 s on one thread) and saved as TorchScript."""
    torch.set_num_threads(1)
    return build_digits_reference(Path(tmp_path_factory.mktemp("digits")), thread_nice=0)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """TorchScript is deprecated in torch 2.13 but still a supported artifact format here."""
    for item in items:
        if "tests/reference" in str(item.path):
            item.add_marker(pytest.mark.filterwarnings(
                r"ignore:.*torch\.jit\..* is deprecated:DeprecationWarning"))
