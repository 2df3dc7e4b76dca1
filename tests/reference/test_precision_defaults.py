"""The card's `auto` settings: batches of 4 on the CPU and 64 on CUDA, bf16 on the CPU only
where it has bf16 instructions; and the precision that runs is on /metrics."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from monitor.reference_config import AUTO_BATCH_SIZE, ImagesConfig, ReferenceConfig
from monitor.snapshot import SnapshotBuilder
from reference_model.artifact import load_reference
from reference_model.cpu_features import cpu_flags, cpu_has_bf16
from reference_model.digits import digits_reference_config
from reference_model.scorer import Scorer
from reference_model.shadow import ShadowScorer
from tests.reference.conftest import DigitsArtifact


def _card(**kw: object) -> ReferenceConfig:
    return ReferenceConfig(model="m", path="m.pt2", sha256="0" * 64, **kw)  # type: ignore[arg-type]


# (device, batch_size, cpu_bf16, the CPU has bf16) -> (batch, bf16)
RESOLVED = [
    ("cpu", "auto", "auto", True, 4, True),
    ("cpu", "auto", "auto", False, 4, False),
    ("cuda", "auto", "auto", True, 64, True),   # cpu_bf16 is read on the CPU only
    ("cuda:1", "auto", False, True, 64, False),
    ("cpu", 32, True, False, 32, True),         # forced: a check-config warning, not a refusal
    ("cpu", 8, False, True, 8, False),
]


@pytest.mark.parametrize(("device", "batch", "bf16", "has", "want_batch", "want_bf16"),
                         RESOLVED)
def test_auto_settings_resolve_per_device_and_cpu(device: str, batch: object, bf16: object,
                                                  has: bool, want_batch: int,
                                                  want_bf16: bool) -> None:
    card = _card(batch_size=batch, cpu_bf16=bf16)
    got = card.resolved(device, has)
    assert (got.batch, got.cpu_bf16) == (want_batch, want_bf16)
    assert got.resolved(device, not has) == got  # resolving twice changes nothing


def test_an_unresolved_card_has_no_batch_and_auto_is_the_default() -> None:
    card = _card()
    assert (card.batch_size, card.cpu_bf16) == ("auto", "auto")
    assert AUTO_BATCH_SIZE == {"cuda": 64, "cpu": 4}
    with pytest.raises(RuntimeError, match="still 'auto'"):
        _ = card.batch


@pytest.mark.parametrize(("text", "flags", "bf16"), [
    ("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\nprocessor\t: 1\n"
     "flags\t\t: fpu\n", {"fpu", "avx2", "avx512f", "avx512_bf16"}, True),
    ("processor\t: 0\nflags\t\t: fpu amx_tile amx_bf16\n", {"fpu", "amx_tile", "amx_bf16"}, True),
    ("processor\t: 0\nflags\t\t: fpu avx2 avx512f\n", {"fpu", "avx2", "avx512f"}, False),
    ("processor\t: 0\nFeatures\t: fp asimd bf16\n", {"fp", "asimd", "bf16"}, False),
    ("", set(), False),
])
def test_cpu_flags_are_the_first_processors(tmp_path: Path, text: str, flags: set[str],
                                             bf16: bool) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text(text)
    assert cpu_flags(info) == flags
    assert cpu_has_bf16(info) is bf16


def test_no_cpuinfo_means_no_bf16(tmp_path: Path) -> None:
    assert cpu_flags(tmp_path / "absent") == frozenset()
    assert not cpu_has_bf16(tmp_path / "absent")


@pytest.mark.parametrize("setting", [True, False, "auto"])
def test_the_scorer_and_metrics_say_which_precision_runs(digits: DigitsArtifact,
                                                         setting: object) -> None:
    cfg = digits_reference_config(digits.path, digits.sha256, batch_size="auto",
                                  cpu_bf16=setting)
    scorer = Scorer(load_reference(cfg), cfg)
    bf16 = setting is True or (setting == "auto" and cpu_has_bf16())
    assert scorer.info.precision == ("bf16" if bf16 else "float32")
    assert scorer.info.batch_size == 4
    shadow = ShadowScorer(cfg, ImagesConfig(), [str(i) for i in range(10)], lambda _: None,
                          scorer=scorer, gpu=None)
    try:
        b = SnapshotBuilder()
        shadow.snapshot(b)
        info = b.build()["visionmon_reference_model_info"]
        assert info == {("digits", digits.sha256, "cpu", "4", scorer.info.precision): 1.0}
    finally:
        shadow.close()


def test_a_model_that_refuses_bf16_runs_and_says_float32(digits: DigitsArtifact) -> None:
    cfg = digits_reference_config(digits.path, digits.sha256, cpu_bf16=True)
    loaded = load_reference(cfg)
    real = loaded.module

    class Refuses:
        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        def to(self, *args: object, **kwargs: object) -> Refuses:
            return self

        def __call__(self, x: object) -> object:
            import torch

            if torch.is_autocast_enabled("cpu"):
                raise RuntimeError("no bf16 kernel for this op")
            return real(x)

    scorer = Scorer(replace(loaded, module=Refuses()), cfg)
    assert scorer.info.precision == "float32"
