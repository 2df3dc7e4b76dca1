"""Embedding statistics in torch, on the GPU when there is one.

These mirror the numpy reference implementations in `monitor.stats` (PCA projection and
MMD²); use them when the embedding reservoir is large enough that the O(n²) kernel
matrix matters. Inputs and outputs are numpy; float64 on CPU, float32 on CUDA.

Kernel: k(a, b) = exp(-||a - b||² / (2 σ²)); σ from the median heuristic (the median of
the pairwise Euclidean distances of the baseline sample).
"""

from __future__ import annotations

import numpy as np
import torch


def pick_device(device: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _t(x: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    dtype = torch.float32 if device.type == "cuda" else torch.float64
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x,
                           device=device).to(dtype)


def pca_project(x: np.ndarray, mean: np.ndarray, basis: np.ndarray,
                device: str = "auto") -> np.ndarray:
    """(N, D) embeddings -> (N, k) scores: (x - mean) @ basis, basis (D, k) orthonormal."""
    dev = pick_device(device)
    out = (_t(x, dev) - _t(mean, dev)) @ _t(basis, dev)
    return out.cpu().numpy().astype(np.float64)


def pca_fit(x: np.ndarray, k: int, device: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """-> (mean (D,), basis (D, k)): top-k right singular vectors of the centred data,
    signs fixed so the largest-magnitude loading of each component is positive."""
    dev = pick_device(device)
    t = _t(x, dev)
    mean = t.mean(0)
    _, _, vh = torch.linalg.svd(t - mean, full_matrices=False)
    basis = vh[:k].T
    idx = basis.abs().argmax(0)
    signs = torch.sign(basis[idx, torch.arange(basis.shape[1], device=dev)])
    basis = basis * torch.where(signs == 0, torch.ones_like(signs), signs)
    return mean.cpu().numpy().astype(np.float64), basis.cpu().numpy().astype(np.float64)


def _sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a, b).square()


def median_heuristic_sigma(x: np.ndarray, max_rows: int = 1000, device: str = "auto") -> float:
    """Median pairwise Euclidean distance among the first `max_rows` rows (i < j); 1.0 when
    there are fewer than two rows or all rows are equal."""
    dev = pick_device(device)
    t = _t(x[:max_rows], dev)
    d = torch.cdist(t, t)
    iu = torch.triu_indices(len(t), len(t), offset=1, device=dev)
    if len(t) < 2:
        return 1.0
    vals = d[iu[0], iu[1]].sort().values
    k = len(vals)
    med = float((vals[(k - 1) // 2] + vals[k // 2]) / 2)  # numpy's median for even k
    return med if med > 0 else 1.0


def mmd2_rbf(x: np.ndarray, y: np.ndarray, sigma: float, device: str = "auto") -> float:
    """Unbiased MMD² (Gretton et al. 2012, eq. 3) between samples x (n, D) and y (m, D),
    n, m >= 2. Can be slightly negative when the distributions are equal."""
    dev = pick_device(device)
    a, b = _t(x, dev), _t(y, dev)
    gamma = 1.0 / (2.0 * sigma * sigma)
    kxx = torch.exp(-gamma * _sq_dists(a, a))
    kyy = torch.exp(-gamma * _sq_dists(b, b))
    kxy = torch.exp(-gamma * _sq_dists(a, b))
    n, m = len(a), len(b)
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def mmd2_permutation_test(x: np.ndarray, y: np.ndarray, sigma: float,
                          permutations: int = 200, seed: int = 0,
                          device: str = "auto") -> tuple[float, float]:
    """-> (unbiased MMD², permutation p-value = (1 + #{perm >= observed}) / (1 + P)).

    All permutations are evaluated at once from one (n + m)² kernel matrix:
    memory O((n + m)² + P (n + m)).
    """
    dev = pick_device(device)
    z = torch.cat([_t(x, dev), _t(y, dev)])
    n, m = len(x), len(y)
    total = n + m
    kern = torch.exp(-_sq_dists(z, z) / (2.0 * sigma * sigma))
    kern.fill_diagonal_(0.0)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    perms = torch.stack([torch.randperm(total, generator=gen) for _ in range(permutations)])
    ident = torch.arange(total).unsqueeze(0)
    order = torch.cat([ident, perms]).to(dev)  # row 0 = the observed split
    u = torch.zeros((permutations + 1, total), dtype=kern.dtype, device=dev)
    u.scatter_(1, order[:, :n], 1.0)
    v = 1.0 - u
    ku = u @ kern
    sxx = (ku * u).sum(1) / (n * (n - 1))
    sxy = (ku * v).sum(1) / (n * m)
    syy = ((v @ kern) * v).sum(1) / (m * (m - 1))
    stats = sxx + syy - 2.0 * sxy
    observed = stats[0]
    p = (1.0 + float((stats[1:] >= observed).sum())) / (1.0 + permutations)
    return float(observed), p
