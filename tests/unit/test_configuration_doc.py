"""docs/configuration.md is generated from the config models and kept equal to them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from monitor.config import VisionmonConfig
from monitor.frozen_model import Frozen
from visionmon.config_docs import DOC, ROOT, UndocumentedKey, keys, render


def test_the_committed_reference_equals_the_generated_one() -> None:
    assert (ROOT / DOC).read_text() == render(), \
        "regenerate: python -m visionmon.config_docs docs/configuration.md"


def test_every_key_has_a_type_a_default_and_a_meaning() -> None:
    rows = list(keys(VisionmonConfig))
    assert len(rows) > 150
    for row in rows:
        assert row.type and row.default and len(row.meaning) > 10, row


#: Keys once documented only in code (issue 21): each is a row, with its default.
ROWS = [("baseline.mode", "`none`"), ("baseline.images", "`300`"), ("drift.correction",
        "`bonferroni`"), ("drift.mmd.reservoir", "`256`"), ("labels.ttl", "`1d`"),
        ("shadow_join.max_entries", "`50000`"), ("shadow_join.ttl", "`1h`"),
        ("quality.min_shadow_images", "`100`"), ("slos.thresholds.ece.for", "`1h`"),
        ("slos.thresholds.kafka_disconnected.severity", "`page`")]


@pytest.mark.parametrize(("key", "default"), ROWS, ids=[r[0] for r in ROWS])
def test_a_key_documented_only_in_code_is_in_the_reference(key: str, default: str) -> None:
    text = (ROOT / DOC).read_text()
    row = next((line for line in text.splitlines() if line.startswith(f"| `{key}` |")), None)
    assert row is not None, f"{key} missing from {DOC}"
    assert f"| {default} |" in row


def test_a_key_without_a_docstring_stops_the_generator() -> None:
    class Section(Frozen):
        documented: int = 1
        """A documented key."""
        bare: int = 2

    with pytest.raises(UndocumentedKey, match="bare"):
        list(keys(Section))


def test_every_link_points_to_an_existing_page() -> None:
    doc = ROOT / DOC
    for target in re.findall(r"\]\(([^)#]+)", render()):
        assert (doc.parent / target).resolve().exists(), target
    assert Path(ROOT / "README.md").read_text().count("docs/configuration.md") >= 1
