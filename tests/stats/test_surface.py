"""The statistics package holds only what the product computes with: every public function
and class in `monitor/stats/` is reached from product code, directly or through another
statistics function that is; what only tests and benchmarks call lives in `tests/oracles/`."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATS = ROOT / "monitor" / "stats"
#: the packages a deployment runs
PRODUCT = ("monitor", "collectors", "visionmon", "reference_model", "alerts", "dashboards")


def _names_used(tree: ast.AST) -> set[str]:
    """Every bare name and attribute name a syntax tree mentions."""
    used: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            used.add(node.id)
        elif isinstance(node, ast.Attribute):
            used.add(node.attr)
        elif isinstance(node, ast.alias):
            used.add(node.name.rsplit(".", 1)[-1])
    return used


def _stats_definitions() -> dict[str, ast.AST]:
    """Public top-level functions and classes of monitor/stats/, by name."""
    found: dict[str, ast.AST] = {}
    for path in sorted(STATS.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if (isinstance(node, ast.FunctionDef | ast.ClassDef)
                    and not node.name.startswith("_")):
                found[node.name] = node
    return found


def _product_roots() -> set[str]:
    """Names that product modules outside monitor/stats/ mention."""
    used: set[str] = set()
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*.py"):
            if STATS not in path.parents:
                used |= _names_used(ast.parse(path.read_text()))
    return used


def _private_helpers_used() -> set[str]:
    """Names the private helpers of monitor/stats/ mention (a helper runs for its caller)."""
    used: set[str] = set()
    for path in STATS.glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("_"):
                used |= _names_used(node)
    return used


def test_every_public_statistics_function_is_reached_from_product_code() -> None:
    definitions = _stats_definitions()
    reached = _product_roots() & set(definitions)
    frontier = list(reached)
    while frontier:
        callees = (_names_used(definitions[frontier.pop()]) | _private_helpers_used())
        for name in callees & set(definitions) - reached:
            reached.add(name)
            frontier.append(name)
    assert sorted(set(definitions) - reached) == []


def _imports(path: Path) -> set[str]:
    """The modules a file imports from."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found


def test_product_code_never_imports_the_oracles() -> None:
    importers = [str(path.relative_to(ROOT)) for package in PRODUCT
                 for path in (ROOT / package).rglob("*.py")
                 if any(m.startswith("tests") for m in _imports(path))]
    assert importers == []
