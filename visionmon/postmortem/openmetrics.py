"""A replay's output: every snapshot of the range as one OpenMetrics exposition with
timestamps, which `promtool tsdb create-blocks-from openmetrics` turns into Prometheus
blocks."""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from collectors.exporter import family
from monitor.catalog import CATALOG, Catalog
from monitor.snapshot import Series


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(v: float) -> str:
    """A sample value as OpenMetrics writes it: integers without a fraction, NaN, ±Inf."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v.is_integer() and abs(v) < 2**53:
        return str(int(v))
    return repr(v)


@dataclass(slots=True)
class _Family:
    name: str
    kind: str
    help: str
    #: metric (label set without `le`) -> its sample columns, in exposition order
    metrics: dict[tuple[tuple[str, str], ...], list[int]] = field(default_factory=dict)


class OpenMetricsSpool:
    """Collects one snapshot per step and writes them as one OpenMetrics exposition.

    OpenMetrics wants each family contiguous and each series' points in time order, so
    the file cannot be written step by step. Each step's values go to a temporary file
    as one row of float64 (NaN: series absent at that step), so memory stays at one row
    whatever the length of the range; `write` then reads them back column by column.
    """

    def __init__(self, catalog: Catalog = CATALOG, tmp_dir: str | None = None) -> None:
        self._catalog = catalog
        self._order = {spec.name: i for i, spec in enumerate(catalog)}
        self._families: dict[str, _Family] = {}
        self._family_order: dict[str, int] = {}
        self._columns: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        self._prefixes: list[str] = []
        self._times: list[float] = []
        self._lengths: list[int] = []
        fd, self._path = tempfile.mkstemp(prefix="visionmon-replay-", suffix=".f64",
                                          dir=tmp_dir)
        self._fh: IO[bytes] | None = os.fdopen(fd, "wb")

    @property
    def steps(self) -> int:
        return len(self._times)

    @property
    def series(self) -> int:
        return len(self._columns)

    @property
    def last_time(self) -> float | None:
        return self._times[-1] if self._times else None

    def add(self, t: float, snapshot: dict[str, Series]) -> None:
        if self._times and t <= self._times[-1]:
            raise ValueError(f"snapshot at {t} is not after the previous one ({self._times[-1]})")
        assert self._fh is not None, "spool already written"
        cols: list[int] = []
        vals: list[float] = []
        for spec in self._catalog:
            series = snapshot.get(spec.name)
            if not series:
                continue
            fam = family(spec, series)
            meta = self._families.get(fam.name)
            if meta is None:
                meta = self._families[fam.name] = _Family(fam.name, fam.type, fam.documentation)
                self._family_order[fam.name] = self._order[spec.name]
            for s in fam.samples:
                labels = tuple(s.labels.items())
                key = (s.name, labels)
                col = self._columns.get(key)
                if col is None:
                    col = self._columns[key] = len(self._prefixes)
                    self._prefixes.append(_sample_prefix(s.name, labels))
                    metric = tuple(kv for kv in labels if kv[0] != "le")
                    meta.metrics.setdefault(metric, []).append(col)
                cols.append(col)
                vals.append(float(s.value))
        row = np.full(len(self._prefixes), np.nan)
        if cols:
            row[np.asarray(cols)] = vals
        row.tofile(self._fh)
        self._times.append(t)
        self._lengths.append(row.size)

    def write(self, out: IO[str]) -> int:
        """Write the exposition (ending in `# EOF`); returns the number of samples."""
        assert self._fh is not None, "spool already written"
        self._fh.close()
        self._fh = None
        lengths = np.asarray(self._lengths, dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if lengths.size else lengths
        flat = np.memmap(self._path, dtype=np.float64, mode="r") if lengths.sum() else None
        stamps = [f"{t:.3f}" for t in self._times]
        samples = 0
        for fam in sorted(self._families.values(), key=lambda f: self._family_order[f.name]):
            out.write(f"# TYPE {fam.name} {fam.kind}\n")
            out.write(f"# HELP {fam.name} {_escape(fam.help)}\n")
            for cols_list in fam.metrics.values():
                cols = np.asarray(cols_list, dtype=np.int64)
                assert flat is not None
                valid = cols[None, :] < lengths[:, None]
                idx = np.where(valid, offsets[:, None] + cols[None, :], 0)
                block = np.where(valid, flat[idx], np.nan)
                prefixes = [self._prefixes[c] for c in cols_list]
                for step, values in enumerate(block.tolist()):
                    if all(math.isnan(v) for v in values):
                        continue
                    stamp = stamps[step]
                    for prefix, v in zip(prefixes, values, strict=True):
                        if not math.isnan(v):
                            out.write(f"{prefix} {format_value(v)} {stamp}\n")
                            samples += 1
        out.write("# EOF\n")
        return samples

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        Path(self._path).unlink(missing_ok=True)


def _sample_prefix(name: str, labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return name
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return f"{name}{{{inner}}}"

