"""The detection benchmark reads a real-image workload as its pools: both networks' outputs
on the same bytes, the reference softmax BBSD tests, and the workload's shifts as its
covariate scenarios."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.detection.peers import Peers, Stream, run_delay
from benchmarks.detection.scenarios import (
    CLEAN,
    NO_DRIFT,
    all_scenarios,
    load_pool,
    make_plan,
)
from benchmarks.detection.workload import DATASETS, build_real_workload, real_families
from benchmarks.workloads.workload import Workload, load_workload

pytestmark = pytest.mark.slow  # left out of `make test-fast`

LIMIT = 12
FAMILY = "gaussian_noise"


@pytest.fixture(scope="module")
def built(clipart_small: Workload, workload_cache: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("detection-real")
    log: list[str] = []
    fams = {FAMILY: real_families("clipart")[FAMILY]}
    build_real_workload(folder, log.append, DATASETS["clipart"], pool_limit=LIMIT,
                        size="small", root=workload_cache, families=fams)
    return folder, log


def test_the_pools_hold_both_networks_outputs_for_the_same_bytes(
        built: tuple[Path, list[str]], workload_cache: Path) -> None:
    folder, _ = built
    real = load_workload("clipart", "small", workload_cache, pool_limit=LIMIT)
    for variant, sev in ((CLEAN, 0), (f"{FAMILY}-s5", 5)):
        pool = load_pool(folder / f"pool-{variant}.npz")
        out = real.outputs(CLEAN if sev == 0 else FAMILY, sev)
        assert pool.images == real.images(CLEAN if sev == 0 else FAMILY, sev)
        np.testing.assert_allclose(pool.probs, out.production_probs, rtol=1e-6)
        assert pool.ref_probs is not None
        np.testing.assert_array_equal(pool.ref_pred, out.reference_probs.argmax(axis=1))
        np.testing.assert_allclose(pool.ref_probs.sum(axis=1), 1.0, atol=1e-4)
        assert pool.embeddings.shape == (LIMIT, out.reference_embedding.shape[1])
    # the noise at severity 5 changes the bytes of every image
    clean = load_pool(folder / f"pool-{CLEAN}.npz")
    noisy = load_pool(folder / f"pool-{FAMILY}-s5.npz")
    assert not set(clean.images) & set(noisy.images)


def test_a_second_build_reads_the_pools_back(built: tuple[Path, list[str]],
                                             workload_cache: Path) -> None:
    folder, _ = built
    log: list[str] = []
    fams = {FAMILY: real_families("clipart")[FAMILY]}
    work = build_real_workload(folder, log.append, DATASETS["clipart"], pool_limit=LIMIT,
                               size="small", root=workload_cache, families=fams)
    assert any("loaded from" in line for line in log)
    assert set(work.pools) == {CLEAN, *(f"{FAMILY}-s{s}" for s in range(1, 6))}
    assert work.dataset.classes and work.reference.model == "clipart"


def test_bbsd_reads_the_reference_softmax_of_each_sampled_image(
        built: tuple[Path, list[str]]) -> None:
    folder, _ = built
    pools = {p.name[5:-4]: load_pool(p) for p in folder.glob("pool-*.npz")}
    emb_of, softmax_of = {}, {}
    for pool in pools.values():
        assert pool.ref_probs is not None
        for j, data in enumerate(pool.images):
            emb_of[data], softmax_of[data] = pool.embeddings[j], pool.ref_probs[j]
    fams = {FAMILY: real_families("clipart")[FAMILY]}
    scenario = {sc.name: sc for sc in all_scenarios(covariate=fams)}[f"{FAMILY}-s5"]
    base = Stream(make_plan(pools, NO_DRIFT, 1, 4_000, 4_000, model="clipart"), pools, emb_of,
                  softmax_of=softmax_of)
    plan = make_plan(pools, scenario, 2, 1_000, 3_000, model="clipart")
    stream = Stream(plan, pools, emb_of, softmax_of=softmax_of)
    assert stream.softmax is not None and stream.softmax.shape[0] == plan.sampled.sum()
    rows = np.flatnonzero(plan.sampled)
    post = plan.post[rows]
    src = [pools[f"{FAMILY}-s5" if p else CLEAN] for p in post]
    want = np.stack([s.ref_probs[j] for s, j in zip(src, plan.pool_index[rows], strict=True)])
    np.testing.assert_array_equal(stream.softmax, want)
    none = np.zeros(0, dtype=np.int64)   # no labelled rows: CBPE is not what this tests
    peers = Peers(base, base.embeddings, none, none)
    out = run_delay(peers, stream, plan, 50)
    readings = out["bbsd_p"]
    assert len(readings) == (3_000 - 1_000) // 50
    assert all(0.0 <= p <= 1.0 for _, _, p in readings)
