"""File paths in the config: marked once by type, resolved from the config file's folder.

A key typed `ConfigPath` holds a file or folder path. `relative_to(section, folder)`
returns the section with every such path that is relative joined onto `folder` (the
config file's folder), absolute paths kept as written. One rule for every path key, so a
config moved with its files keeps working from any working directory.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel
from pydantic.fields import FieldInfo


class _RelativeToConfig:
    """Marker on `ConfigPath`: the value is a path relative to the config file's folder."""

    def __repr__(self) -> str:
        return "RelativeToConfig"


RELATIVE_TO_CONFIG = _RelativeToConfig()
ConfigPath = Annotated[str, RELATIVE_TO_CONFIG]

M = TypeVar("M", bound=BaseModel)


def _marked(annotation: Any) -> bool:
    if typing.get_origin(annotation) is Annotated:
        return any(m is RELATIVE_TO_CONFIG for m in annotation.__metadata__)
    return any(_marked(a) for a in typing.get_args(annotation))


def is_path(info: FieldInfo) -> bool:
    """True when a field is typed `ConfigPath` (alone, optional or in a union; pydantic
    moves the marker of a bare `ConfigPath` into the field's metadata)."""
    return RELATIVE_TO_CONFIG in info.metadata or _marked(info.annotation)


def _joined(folder: Path, value: Any) -> Any:
    if isinstance(value, str) and value and not Path(value).is_absolute():
        return str(folder / value)
    return value


def _resolved(value: Any, folder: Path) -> Any:
    if isinstance(value, BaseModel):
        return relative_to(value, folder)
    if isinstance(value, list | tuple):
        items = [_resolved(v, folder) for v in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) \
            else type(value)(items)
    return value


def relative_to(section: M, folder: Path) -> M:
    """`section` with each relative `ConfigPath` joined onto `folder`, recursively
    (nested sections and lists of them); unchanged parts are the same objects."""
    update: dict[str, Any] = {}
    for name, info in type(section).model_fields.items():
        value = getattr(section, name)
        new = _joined(folder, value) if is_path(info) else _resolved(value, folder)
        if new is not value:
            update[name] = new
    return section.model_copy(update=update) if update else section
