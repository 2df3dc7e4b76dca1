"""Imports point inward: the core (`monitor/`) knows no Kafka client, exporter, torch or
outer package, and `collectors/` never reaches into the composition root (`visionmon/`).

Every import statement is read from the source (also those inside functions), so a lazy
import cannot slip past the rule."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FORBIDDEN = {
    "monitor": ("kafka", "prometheus_client", "torch", "confluent_kafka", "collectors",
                "visionmon", "reference_model"),
    "collectors": ("visionmon",),
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every absolute import in a file."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module.split(".")[0]))
    return out


def violations(package: str) -> list[str]:
    banned = FORBIDDEN[package]
    return [f"{p.relative_to(ROOT)}:{line} imports {mod}"
            for p in sorted((ROOT / package).rglob("*.py"))
            for line, mod in imported_modules(p) if mod in banned]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_inward(package: str) -> None:
    assert violations(package) == []


def test_the_rule_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    f = tmp_path / "lazy.py"
    f.write_text("def f():\n    from visionmon.app import App\n    import torch.nn\n")
    assert imported_modules(f) == [(2, "visionmon"), (3, "torch")]


def test_relative_imports_are_not_mistaken_for_packages(tmp_path: Path) -> None:
    f = tmp_path / "rel.py"
    f.write_text("from . import torch\nfrom .visionmon import x\n")
    assert imported_modules(f) == []
