"""The `segments` of a model's config: the keys (camera, site) its statistics are also
kept by, each bounded by `max_values` or a fixed `values` list.

Its own module so that `monitor.config` stays a list of sections and the engine's
segment block (`monitor.segments`) can read one typed rule per key.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from monitor.catalog import CATALOG, OTHER
from monitor.frozen_model import Frozen

#: what a value beyond a key's bound folds into (and a value not in its `values` list)
SEGMENT_OTHER = OTHER
#: the value of a key an event does not carry
SEGMENT_NONE = "_none"
#: the labels a segment series carries its key and value in (monitor/catalog.py)
SEGMENT_LABELS = ("segment_key", "segment")
#: label names Prometheus itself gives meaning to, never segment keys
_PROMETHEUS_LABELS = frozenset({"le", "quantile", "job", "instance", "alertname",
                                "severity"})
#: a segment key: lower case, so that it matches its (case-insensitive) image header
_KEY = re.compile(r"[a-z_][a-z0-9_]{0,63}")


def reserved_labels() -> frozenset[str]:
    """Label names a segment key may not take: every label of the catalog, the segment
    labels themselves and those Prometheus uses."""
    return frozenset(label for spec in CATALOG for label in spec.labels) \
        | frozenset(SEGMENT_LABELS) | _PROMETHEUS_LABELS


class SegmentConfig(Frozen):
    """One segment key of a model: where its predictions came from (a camera, a site)."""

    key: str
    """The key in the events' `segments` object and the `segment.<key>` image header: a
    Prometheus label name in lower case (`[a-z_][a-z0-9_]*`, at most 64 characters) that no
    visionmon metric uses as a label."""
    max_values: int | None = Field(None, ge=1, le=1000)
    """Most distinct values kept (the first ones seen); later values fold into `_other`,
    counted in `visionmon_segment_values_folded_total`. Give this or `values`."""
    values: list[str] | None = None
    """The fixed list of values kept; any other value folds into `_other`. Give this or
    `max_values`."""

    @field_validator("key")
    @classmethod
    def _label_name(cls, key: str) -> str:
        if not _KEY.fullmatch(key) or key.startswith("__"):
            raise ValueError(f"segment key {key!r} must be a Prometheus label name in lower "
                             "case: [a-z_][a-z0-9_]*, at most 64 characters, not starting "
                             "with __")
        if key in reserved_labels():
            raise ValueError(f"segment key {key!r} is a label visionmon already uses; "
                             f"reserved: {', '.join(sorted(reserved_labels()))}")
        return key

    @field_validator("values")
    @classmethod
    def _distinct(cls, values: list[str] | None) -> list[str] | None:
        if values is None:
            return None
        if not values:
            raise ValueError("values must list at least one value")
        if len(set(values)) != len(values):
            raise ValueError(f"values repeat {sorted({v for v in values if values.count(v) > 1})}")
        bad = [v for v in values if v in (SEGMENT_OTHER, SEGMENT_NONE) or not 1 <= len(v) <= 128]
        if bad:
            raise ValueError(f"values {bad} are not allowed: each must have 1..128 characters "
                             f"and not be {SEGMENT_OTHER} or {SEGMENT_NONE}")
        return values

    @model_validator(mode="after")
    def _one_bound(self) -> SegmentConfig:
        if (self.max_values is None) == (self.values is None):
            raise ValueError(f"segment {self.key!r}: give exactly one of 'max_values' (keep the "
                             "first N values seen) or 'values' (a fixed list)")
        return self

    @property
    def capacity(self) -> int:
        """Label values this key may take, `_other` and `_none` included: the bound of its
        state and of its series per (model, version)."""
        kept = self.max_values if self.values is None else len(self.values)
        return (kept or 0) + 2
