"""docs/configuration.md, generated from the config models: every key with its type,
default and meaning (the docstring under the key), per section with a link to the page
that explains it.

    python -m visionmon.config_docs docs/configuration.md     (or: make config-docs)

A key without a docstring stops the generator, so the reference cannot fall behind the
models; tests/unit/test_configuration_doc.py keeps the committed file equal to the output.
"""

from __future__ import annotations

import re
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel
from pydantic.fields import FieldInfo

from monitor.config import VisionmonConfig
from monitor.config_paths import is_path
from monitor.durations import Duration

ROOT = Path(__file__).resolve().parents[1]
DOC = Path("docs/configuration.md")

#: Section (or nested section) -> (page under ROOT, heading on that page or "" for the top)
#: that explains it; the generator checks that the heading exists.
EXPLAINED_IN: dict[str, tuple[str, str]] = {
    "version": ("examples/visionmon.yaml", ""),
    "kafka": ("README.md", "Kafka clients: what each sustains"),
    "kafka.topics": ("docs/events.md", ""),
    "models": ("docs/events.md", ""),
    "http": ("deploy/README.md", ""),
    "limits": ("docs/events.md", "Rejections"),
    "otel": ("README.md", "Data flow"),
    "state": ("docs/reliability.md", "Daemon crashes"),
    "windows": ("docs/statistics.md", "Windows"),
    "baseline": ("docs/statistics.md", "Baseline"),
    "drift": ("docs/statistics.md", "Drift threshold"),
    "drift.mmd": ("docs/statistics.md", "Embedding drift: MMD²"),
    "labels": ("docs/statistics.md", "Late labels"),
    "shadow_join": ("docs/statistics.md", "Shadow agreement against the baseline"),
    "quality": ("docs/alerts.md", "Sparse SLIs"),
    "images": ("docs/reference-model.md", "Image intake (`images:`)"),
    "reference": ("docs/reference-model.md", "Model card (`reference:`)"),
    "slos": ("docs/alerts.md", "The spec"),
    "slos.windows": ("docs/alerts.md", "Burn-rate alerts"),
    "slos.thresholds": ("docs/alerts.md", "Threshold alerts"),
    "cost": ("docs/alerts.md", "Cost and GPU recording rules"),
}

_DURATION_METADATA = tuple(typing.get_args(Duration)[1:])


@dataclass(frozen=True, slots=True)
class Key:
    """One row of the reference: dotted key path (`[]` for list items), type, default,
    meaning."""

    path: str
    type: str
    default: str
    meaning: str


class UndocumentedKey(Exception):
    """A config key has no docstring: write one under it in its model."""


# ---------------------------------------------------------------------------------------
# Types and defaults as a reader of the YAML sees them


def _model_in(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """(the section model a field holds, whether it is a list of them)."""
    args = [annotation, *typing.get_args(annotation)]
    for a in args:
        if isinstance(a, type) and issubclass(a, BaseModel):
            return a, False
        if typing.get_origin(a) is list:
            inner = typing.get_args(a)[0]
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner, True
    return None, False


def _type_name(annotation: Any, info: FieldInfo | None = None) -> str:
    if info is not None and is_path(info):
        return "path (relative: from the config file's folder)"
    if info is not None and any(m in info.metadata for m in _DURATION_METADATA):
        return "duration"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        metadata = annotation.__metadata__
        if any(m in metadata for m in _DURATION_METADATA):
            return "duration"
        return _type_name(args[0], None)
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        named = [_type_name(a, None) for a in args if a is not type(None)]
        optional = type(None) in args
        text = " or ".join(named)
        return f"{text} or none" if optional else text
    if origin is list:
        return f"list of {_type_name(args[0], None)}"
    if origin is dict:
        return f"mapping of {_type_name(args[0], None)} to {_type_name(args[1], None)}"
    if origin is tuple:
        return f"{len(args)} {_type_name(args[0], None)}s" if args else "list"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return {str: "string", int: "integer", float: "number", bool: "boolean",
            AwareDatetime: "timestamp (ISO 8601, with a time zone)"}.get(
        annotation, getattr(annotation, "__name__", str(annotation)))


def _bounds(info: FieldInfo) -> str:
    """` ≥ 1, ≤ 60000` from a field's numeric constraints."""
    marks = []
    for m in info.metadata:
        for attr, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"),
                           ("min_length", "items ≥")):
            value = getattr(m, attr, None)
            if value is not None:
                marks.append(f"{sign} {value:g}" if isinstance(value, float)
                             else f"{sign} {value}")
    return f" ({', '.join(marks)})" if marks else ""


def _yaml(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    return str(value)


def _default(info: FieldInfo, owner: BaseModel | None, name: str) -> str:
    if owner is not None:
        value = getattr(owner, name)
    elif info.is_required():
        return "required"
    else:
        value = info.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(section)"
    return f"`{_yaml(value)}`"


# ---------------------------------------------------------------------------------------
# Meanings


def _one_line(text: str) -> str:
    """One Markdown table cell: one line, `|` escaped, a capital and a full stop."""
    line = re.sub(r"\s+", " ", text).strip().replace("|", "\\|")
    line = line[:1].upper() + line[1:]
    return line if line.endswith((".", ")")) else line + "."


def _meaning(model: type[BaseModel], name: str, info: FieldInfo, path: str) -> str:
    if info.description:
        return _one_line(info.description)
    for base in model.__mro__[1:]:           # a subclass that only changes the default
        inherited = getattr(base, "model_fields", {}).get(name)
        if inherited is not None and inherited.description:
            return _one_line(inherited.description)
    section, _ = _model_in(info.annotation)
    if section is not None and section.__doc__:
        return _one_line(section.__doc__.split("\n\n")[0])
    raise UndocumentedKey(f"{model.__name__}.{name} ({path}) has no docstring; write one "
                          f"under it in {model.__module__}")


# ---------------------------------------------------------------------------------------
# Walking the models


def keys(model: type[BaseModel], owner: BaseModel | None = None,
         prefix: str = "") -> Iterator[Key]:
    """Every key of `model` and its sections, depth first, in declaration order.
    `owner`: the default instance of this section (its defaults may differ from the
    class's, e.g. `shadow_join`)."""
    for name, info in model.model_fields.items():
        key = info.alias or name
        path = f"{prefix}{key}"
        section, many = _model_in(info.annotation)
        kind = ("list of sections" if many else "section") if section is not None \
            else _type_name(info.annotation, info) + _bounds(info)
        if section is not None and not many and type(None) in typing.get_args(info.annotation):
            kind = "section or none"
        yield Key(path, kind, _default(info, owner, name), _meaning(model, name, info, path))
        if section is not None:
            value = getattr(owner, name) if owner is not None else (
                None if info.is_required() else info.get_default(call_default_factory=True))
            nested = value if isinstance(value, BaseModel) else None
            yield from keys(section, nested, f"{path}[]." if many else f"{path}.")


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _link(section: str, root: Path) -> str:
    page, heading = EXPLAINED_IN[section]
    text = (root / page).read_text()
    if heading and not re.search(rf"^#+ {re.escape(heading)}\s*$", text, re.MULTILINE):
        raise ValueError(f"{page} has no heading {heading!r} (EXPLAINED_IN[{section!r}])")
    target = Path(page).relative_to("docs").as_posix() if page.startswith("docs/") \
        else f"../{page}"
    title = heading or page
    return f"[{title}]({target}{'#' + _slug(heading) if heading else ''})"


HEADER = """\
<!-- GENERATED by `python -m visionmon.config_docs docs/configuration.md` from the config
     models (monitor/config.py, monitor/reference_config.py, monitor/slo_spec.py):
     DO NOT EDIT. Change the docstring under a key and regenerate. -->

# Configuration reference

One YAML file, `version: 1`; check it with `visionmon check-config FILE`. Unknown keys
are errors; every error names the file, the key path and what would be valid. Secrets are
never read from the file: keys ending in `_env` name the environment variable that holds
them. A relative path is read from the config file's folder. Durations are a number and a
unit: `30s`, `5m`, `1h`, `1d`, `2w`. Full example:
[examples/visionmon.yaml](../examples/visionmon.yaml).

`[]` in a key marks the items of a list (`models[].name` is the `name` of each model).
"""


def render(root: Path = ROOT) -> str:
    """The whole page (Markdown)."""
    rows = list(keys(VisionmonConfig))
    out = [HEADER]
    for top in VisionmonConfig.model_fields:
        section = [k for k in rows if k.path == top or k.path.startswith((f"{top}.",
                                                                          f"{top}[]."))]
        head = section[0]
        out.append(f"\n## `{top}`\n\n{head.meaning}")
        links = [_link(s, root) for s in EXPLAINED_IN
                 if s == top or s.startswith(f"{top}.")]
        out.append(f"See {', '.join(links)}.\n" if links else "")
        out.append("| key | type | default | meaning |\n|---|---|---|---|")
        shown = section[1:] if len(section) > 1 else section   # the section's own row
        out.extend(f"| `{k.path}` | {k.type} | {k.default} | {k.meaning} |" for k in shown)
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else ROOT / DOC
    out.write_text(render())
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
