"""The most memory a config's segment statistics may take: per (model, segment key), at
`limits.max_versions_per_model` versions, from `key_state_floats`. `visionmon check-config`
prints it so that a bound is chosen knowingly (a 1,000-class model's per-value rows are
large)."""

from __future__ import annotations

from monitor.config import LoadedConfig
from monitor.scored import INPUT_FEATURES
from monitor.segments import key_state_floats

#: bytes of one kept count (the windows hold float64)
_FLOAT_BYTES = 8
#: a bin more than the quantiles for an input feature's own bin (`OWN_BIN_AT`), at most
_OWN_BIN = 1


def segment_state_bytes(loaded: LoadedConfig) -> list[tuple[str, str, int]]:
    """(model, key, bytes at most) for every segment key: one class bin per class for the
    predicted-class drift, `baseline.quantile_bins` for each continuous drift feature (a
    baseline file may bin differently; this is the config's figure), with a reference model
    the same for each of the scored images' input features, the label rows, over
    every window at `windows.segment_slices` slices, for every version."""
    cfg = loaded.config
    versions = cfg.limits.max_versions_per_model
    out = []
    for name, m in loaded.models.items():
        c = len(m.classes)
        bins = [c if f == "predicted_class" else cfg.baseline.quantile_bins
                for f in cfg.drift.features] if cfg.baseline.mode != "none" else []
        if bins and cfg.reference is not None:  # scored images' input features
            bins += [cfg.baseline.quantile_bins + _OWN_BIN] * len(INPUT_FEATURES)
        for rule in m.segments:
            floats = key_state_floats(rule.capacity, c, bins, len(cfg.windows.sizes),
                                      cfg.windows.segment_slices)
            out.append((name, rule.key, floats * _FLOAT_BYTES * versions))
    return out


def budget_lines(loaded: LoadedConfig) -> list[str]:
    """One line per segment key for `visionmon check-config`."""
    versions = loaded.config.limits.max_versions_per_model
    lines = []
    for model, key, size in segment_state_bytes(loaded):
        rule = next(r for r in loaded.models[model].segments if r.key == key)
        lines.append(f"  segment {model}.{key}: up to {rule.capacity} values (_other and "
                     f"_none included), state up to {size / 2**20:,.1f} MiB "
                     f"({versions} versions)")
    return lines
