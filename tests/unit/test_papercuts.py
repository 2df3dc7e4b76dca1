"""Papercuts an adopter hit: options without help text, docs that scrape the wrong port."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.config import HttpConfig
from visionmon.cli import parser

ROOT = Path(__file__).resolve().parents[2]


def _options(p: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction | argparse._VersionAction):
            yield path, action


OPTIONS = list(_options(parser(), "visionmon"))


@pytest.mark.parametrize(("command", "action"), OPTIONS,
                         ids=[f"{c} {a.option_strings[0] if a.option_strings else a.dest}"
                              for c, a in OPTIONS])
def test_every_option_of_every_subcommand_has_help_text(command: str,
                                                        action: argparse.Action) -> None:
    assert action.help and action.help.strip(), \
        f"`{command} {'/'.join(action.option_strings) or action.dest}` has no help text"


def test_the_help_table_covers_the_subcommands_options() -> None:
    commands = {c for c, _ in OPTIONS}
    assert {"visionmon baseline build", "visionmon check-config", "visionmon run",
            "visionmon alerts generate", "visionmon dashboards generate"} <= commands
    assert len(OPTIONS) > 40


def test_docs_and_help_scrape_visionmon_on_its_default_port() -> None:
    default = HttpConfig().port
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")),
             *sorted((ROOT / "visionmon").rglob("*.py"))]
    wrong = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in texts
             for m in re.finditer(r"https?://(?:visionmon|daemon):(\d+)", p.read_text())
             if int(m.group(1)) != default]
    assert wrong == [], f"the default port is {default}"
