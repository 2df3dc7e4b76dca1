"""`visionmon baseline build --images`: the reference model scores a folder of images, which
join their predictions by file name, and the baseline gets an embedding profile and the
shadow agreement profile (how often the reference agreed, per production class)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
import torch
import yaml

from monitor import baseline as baseline_mod
from reference_model.digits import DIGIT_CLASSES, DigitsArtifact, model_inputs, render_digit
from visionmon.cli import main

IMAGES = 200


def _setup(tmp_path, digits: DigitsArtifact, joined: bool) -> tuple[list[str], int]:  # type: ignore[no-untyped-def]
    idx = digits.data.test[:IMAGES]
    with torch.inference_mode():
        logits = torch.jit.load(str(digits.path))(model_inputs(digits.data.images[idx]))[0]
    probs = torch.softmax(logits.double(), 1).numpy()
    # production: the reference's own answers, except that every "seven" is served as "one"
    pred = probs.argmax(1)
    served = np.where(pred == 7, 1, pred)
    lines = []
    for k, i in enumerate(idx.tolist()):
        p = np.zeros(10)
        p[served[k]] = 1.0
        lines.append(orjson.dumps({"request_id": f"img-{i}", "ts": 1_700_000_000.0 + k,
                                   "model": "digits", "version": "v1", "probs": p.tolist()}))
    (tmp_path / "preds.jsonl").write_bytes(b"\n".join(lines))
    folder = tmp_path / "images"
    folder.mkdir()
    for i in idx.tolist():
        name = f"img-{i}" if joined else f"other-{i}"
        (folder / f"{name}.png").write_bytes(render_digit(digits.data.images[i]))
    cfg = {"version": 1, "models": [{"name": "digits", "classes": list(DIGIT_CLASSES)}],
           "reference": digits.config.model_dump(mode="json")}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    args = ["baseline", "build", "--config", str(tmp_path / "cfg.yaml"), "--model", "digits",
            "--from-jsonl", str(tmp_path / "preds.jsonl"), "--images", str(folder),
            "--out", str(tmp_path / "b.json")]
    return args, int((pred == 7).sum())


def test_images_joined_by_file_name_give_the_agreement_profile(tmp_path, digits, capsys) -> None:  # type: ignore[no-untyped-def]
    args, sevens = _setup(tmp_path, digits, joined=True)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"shadow agreement profile from {IMAGES} joined images" in out
    b = baseline_mod.load(tmp_path / "b.json")
    assert b.embedding is not None and b.agreement is not None
    assert b.agreement.n.sum() == IMAGES
    # production serves the reference's answer except for sevens, served as ones
    assert b.agreement.n[7] == 0
    assert b.agreement.n[1] - b.agreement.agree[1] == pytest.approx(sevens)
    others = [c for c in range(10) if c != 1]
    assert np.array_equal(b.agreement.agree[others], b.agreement.n[others])


def test_images_that_join_nothing_leave_the_test_off_and_say_so(tmp_path, digits, capsys) -> None:  # type: ignore[no-untyped-def]
    args, _ = _setup(tmp_path, digits, joined=False)
    assert main(args) == 0
    assert "no shadow agreement profile" in capsys.readouterr().out
    b = baseline_mod.load(tmp_path / "b.json")
    assert b.embedding is not None and b.agreement is None
