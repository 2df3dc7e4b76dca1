"""The base of every config section: immutable, unknown keys refused.

Its own module so that `monitor.config` and the section modules it imports
(`slo_spec`, `reference_config`) share one base without importing each other.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    """Base of every config section: immutable, unknown keys refused. The docstring under
    each key is its description (the source of docs/configuration.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)
