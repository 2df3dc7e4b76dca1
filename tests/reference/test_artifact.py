"""Artifact loading: bad files are refused with a message that says what to do."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from monitor.snapshot import SnapshotBuilder
from reference_model.artifact import ArtifactError, load_reference, sha256_file
from reference_model.digits import (
    DigitsArtifact,
    DigitsNet,
    LogitsOnly,
    digits_reference_config,
    model_inputs,
    save_export,
)
from reference_model.scorer import Scorer
from reference_model.shadow import ShadowScorer

pytestmark = pytest.mark.slow  # left out of `make test-fast`


def _config_for(path: Path, sha: str | None = None, **kw: object):
    return digits_reference_config(path, sha or sha256_file(path), **kw)


def test_missing_file_is_refused_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.ts"
    with pytest.raises(ArtifactError, match=r"nope\.ts does not exist; check reference\.path"):
        load_reference(digits_reference_config(path, "0" * 64))


def test_wrong_hash_names_expected_and_actual(digits: DigitsArtifact) -> None:
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(ArtifactError) as err:
        load_reference(digits_reference_config(digits.path, wrong))
    msg = str(err.value)
    assert str(digits.path) in msg
    assert wrong in msg and digits.sha256 in msg
    assert "copy the right artifact" in msg and "sha256sum" in msg


def test_truncated_file_is_refused_before_loading(digits: DigitsArtifact, tmp_path: Path) -> None:
    cut = tmp_path / "cut.ts"
    data = digits.path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="truncated, corrupt or a different version") as err:
        load_reference(digits_reference_config(cut, digits.sha256))
    assert sha256_file(cut) in str(err.value)


def test_empty_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.ts"
    empty.write_bytes(b"")
    with pytest.raises(ArtifactError, match="is empty"):
        load_reference(_config_for(empty))


def test_corrupt_file_with_matching_hash_cannot_be_deserialised(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.ts"
    bad.write_bytes(os.urandom(4096))
    with pytest.raises(ArtifactError, match="matches its SHA-256 but cannot be loaded as "
                                            "TorchScript"):
        load_reference(_config_for(bad))
    bad_pt2 = tmp_path / "garbage.pt2"
    shutil.copy(bad, bad_pt2)
    with pytest.raises(ArtifactError, match=r"torch\.export program \(\.pt2\)"):
        load_reference(_config_for(bad_pt2))


def test_good_torchscript_loads_and_exposes_its_info(digits: DigitsArtifact) -> None:
    loaded = load_reference(digits.config)
    assert (loaded.sha256, loaded.device, loaded.format) == (digits.sha256, "cpu", "torchscript")
    assert (loaded.num_classes, loaded.embedding_dim) == (10, 32)
    assert loaded.load_seconds > 0

    shadow = ShadowScorer(digits.config, _images(), [str(i) for i in range(10)],
                          lambda _: None, scorer=Scorer(loaded, digits.config))
    try:
        b = SnapshotBuilder()
        shadow.snapshot(b)
        snap = b.build()
        info = snap["visionmon_reference_model_info"]
        assert info == {("digits", digits.sha256, "cpu", "64", "float32"): 1.0}
        assert snap["visionmon_reference_model_up"] == {("digits",): 1.0}
        assert snap["visionmon_reference_model_load_seconds"][("digits",)] == loaded.load_seconds
    finally:
        shadow.close()


def _images():
    from monitor.reference_config import ImagesConfig

    return ImagesConfig()


def _trained_net(digits: DigitsArtifact) -> DigitsNet:
    net = torch.jit.load(str(digits.path))
    fresh = DigitsNet()
    fresh.load_state_dict(net.state_dict())
    return fresh.eval()


def test_good_pt2_loads_with_second_output_and_any_batch_size(digits: DigitsArtifact,
                                                               tmp_path: Path) -> None:
    net = _trained_net(digits)
    path = tmp_path / "digits.pt2"
    sha = save_export(net, path)
    loaded = load_reference(digits_reference_config(path, sha))
    assert loaded.format == "export" and loaded.embedding_dim == 32
    x = model_inputs(digits.data.images[:1])  # batch of one
    with torch.inference_mode():
        got_logits, got_emb = loaded.module(x)
        want_logits, want_emb = net(x)
    np.testing.assert_allclose(got_logits.numpy(), want_logits.numpy(), atol=1e-5)
    np.testing.assert_allclose(got_emb.numpy(), want_emb.numpy(), atol=1e-5)


def test_pt2_embedding_from_a_named_submodule(digits: DigitsArtifact, tmp_path: Path) -> None:
    net = _trained_net(digits)
    path = tmp_path / "logits_only.pt2"
    sha = save_export(LogitsOnly(net), path)
    loaded = load_reference(digits_reference_config(path, sha, embedding="net.features"))
    x = model_inputs(digits.data.images[:5])
    with torch.inference_mode():
        logits, emb = loaded.module(x)
        want_logits, want_emb = net(x)
    np.testing.assert_allclose(emb.numpy(), want_emb.numpy(), atol=1e-5)
    np.testing.assert_allclose(logits.numpy(), want_logits.numpy(), atol=1e-5)

    with pytest.raises(ArtifactError, match=r"no submodule named 'avgpool'.*net\.features"):
        load_reference(digits_reference_config(path, sha, embedding="avgpool"))


def test_torchscript_cannot_use_a_submodule_embedding(digits: DigitsArtifact) -> None:
    cfg = digits_reference_config(digits.path, digits.sha256, embedding="features")
    with pytest.raises(ArtifactError, match="cannot be hooked after scripting"):
        load_reference(cfg)


def test_model_without_embedding_output_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.ts"
    torch.jit.save(torch.jit.script(LogitsOnly(DigitsNet())), str(path))
    with pytest.raises(ArtifactError, match=r"expected a tuple \(logits, embedding\)"):
        load_reference(_config_for(path))


def test_wrong_input_size_is_refused(digits: DigitsArtifact, tmp_path: Path) -> None:
    path = tmp_path / "fixed.pt2"
    sha = save_export(_trained_net(digits), path)
    with pytest.raises(ArtifactError, match="failed on a"):
        load_reference(digits_reference_config(path, sha, input_size=64))
