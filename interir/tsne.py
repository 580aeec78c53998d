"""Exact t-SNE (van der Maaten & Hinton, 2008) in PyTorch: O(n²) memory and time, fine for a few hundred
to a few thousand points (the t-SNE figure of `interir explain --tsne`).

    y = tsne(features, perplexity=30, seed=0)      # n×d → n×2 (float64)

Steps: optional standardisation and PCA to `pca_dims`; Gaussian affinities whose bandwidth per point is
found by bisection so that the conditional distribution's perplexity is `perplexity`; symmetrised joint P;
gradient descent on KL(P‖Q) with a Student-t (1 degree of freedom) Q, early exaggeration (×12 for the
first 250 iterations), momentum 0.5 → 0.8 and per-parameter adaptive gains, as in the reference
implementation. Everything runs in float64 on the CPU with a fixed-seed generator, so the same input and
seed give the same output.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["tsne", "joint_probabilities", "conditional_probabilities", "kl_divergence", "pca",
           "neighbour_agreement"]


def _sqdist(x: Tensor) -> Tensor:
    """n×n squared Euclidean distances (≥ 0, exact zeros on the diagonal)."""
    sq = (x * x).sum(1)
    d = (sq[:, None] + sq[None, :] - 2 * x @ x.T).clamp_min_(0)
    d.fill_diagonal_(0)
    return d


def pca(x: Tensor, dims: int) -> Tensor:
    """Project the centred rows of `x` on their first `dims` principal axes (signs fixed: the largest
    loading of every axis is positive, so the result does not depend on the SVD's sign choice)."""
    x = x - x.mean(0, keepdim=True)
    dims = min(dims, *x.shape)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    v = vh[:dims].T
    sign = torch.sign(v.gather(0, v.abs().argmax(0, keepdim=True)))
    sign[sign == 0] = 1
    return x @ (v * sign)


def conditional_probabilities(d2: Tensor, perplexity: float, tol: float = 1e-5, max_iter: int = 200
                              ) -> tuple[Tensor, Tensor]:
    """Rows p_{j|i} ∝ exp(−β_i·d²_ij) (p_{i|i} = 0), each β_i found by bisection so that the row's
    entropy is log(perplexity) (nats). Returns (P n×n, β n)."""
    n = d2.shape[0]
    target = math.log(perplexity)
    eye = torch.eye(n, dtype=torch.bool, device=d2.device)
    off = d2.masked_fill(eye, float("inf"))
    d = off - off.min(1, keepdim=True).values  # shift per row: same distribution, no underflow
    finite = d.masked_fill(eye, 0)
    beta = 1.0 / finite.sum(1).div(n - 1).clamp_min(1e-12)  # scale-free start: 1 / mean distance
    lo = torch.zeros_like(beta)
    hi = torch.full_like(beta, float("inf"))
    for _ in range(max_iter):
        logits = -beta[:, None] * d
        p = torch.softmax(logits, 1)
        entropy = torch.logsumexp(logits, 1) + beta * (p * finite).sum(1)
        diff = entropy - target
        if bool((diff.abs() < tol).all()):
            break
        too_flat = diff > 0  # entropy too high → narrower kernel → larger β
        lo = torch.where(too_flat, beta, lo)
        hi = torch.where(too_flat, hi, beta)
        beta = torch.where(too_flat, torch.where(torch.isinf(hi), beta * 2, (beta + hi) / 2), (beta + lo) / 2)
    return p, beta


def joint_probabilities(x: Tensor, perplexity: float) -> Tensor:
    """Symmetrised t-SNE affinities P = (P_cond + P_condᵀ) / 2n of the rows of x (float64)."""
    p, _ = conditional_probabilities(_sqdist(x.double()), perplexity)
    n = p.shape[0]
    return ((p + p.T) / (2 * n)).clamp_min(1e-12)


def _q(y: Tensor) -> tuple[Tensor, Tensor]:
    num = 1.0 / (1.0 + _sqdist(y))
    num.fill_diagonal_(0)
    return (num / num.sum()).clamp_min(1e-12), num


def kl_divergence(p: Tensor, y: Tensor) -> float:
    """KL(P‖Q) of an embedding y for joint affinities p (the t-SNE objective)."""
    q, _ = _q(y.double())
    mask = ~torch.eye(p.shape[0], dtype=torch.bool)
    return float((p[mask] * (p[mask] / q[mask]).log()).sum())


def tsne(x: Tensor, n_components: int = 2, perplexity: float = 30.0, n_iter: int = 1000,
         early_exaggeration: float = 12.0, exaggeration_iters: int = 250, learning_rate: float | None = None,
         pca_dims: int | None = 50, standardize: bool = False, seed: int = 0) -> Tensor:
    """Embed the n rows of x (n×d) in `n_components` dimensions with exact t-SNE; returns n×n_components
    float64 on the CPU.

    perplexity: effective number of neighbours; lowered to (n − 1)/3 when n is small.
    learning_rate: None = max(n / early_exaggeration / 4, 50) (the 'auto' rule of scikit-learn).
    pca_dims: reduce to this many principal components first (None: no PCA).
    standardize: scale every feature to unit variance first (features of different units).
    seed: seeds the initial layout (N(0, 1e-4²)); the rest is deterministic.
    """
    x = torch.as_tensor(x).detach().to("cpu", torch.float64)
    threads = torch.get_num_threads()
    if x.dim() == 2 and x.shape[0] <= 2000:  # small matrices: threads cost more than they save (10× on a busy CPU)
        torch.set_num_threads(1)
    try:
        return _tsne(x, n_components, perplexity, n_iter, early_exaggeration, exaggeration_iters,
                     learning_rate, pca_dims, standardize, seed)
    finally:
        torch.set_num_threads(threads)


def _tsne(x, n_components, perplexity, n_iter, early_exaggeration, exaggeration_iters, learning_rate,
          pca_dims, standardize, seed) -> Tensor:
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"tsne expects an n×d matrix with n ≥ 2, got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("tsne: the features contain NaN or Inf")
    n = x.shape[0]
    if perplexity <= 0:
        raise ValueError("perplexity must be positive")
    perplexity = min(float(perplexity), max(1.0, (n - 1) / 3))
    if standardize:
        x = (x - x.mean(0)) / x.std(0, unbiased=False).clamp_min(1e-12)
    if pca_dims and x.shape[1] > pca_dims:
        x = pca(x, pca_dims)
    p = joint_probabilities(x, perplexity)
    lr = learning_rate if learning_rate is not None else max(n / early_exaggeration / 4, 50.0)
    g = torch.Generator().manual_seed(int(seed))
    y = torch.randn(n, n_components, generator=g, dtype=torch.float64) * 1e-4
    update = torch.zeros_like(y)
    gains = torch.ones_like(y)
    for it in range(n_iter):
        exaggerate = it < exaggeration_iters
        q, num = _q(y)
        pq = (p * early_exaggeration if exaggerate else p) - q
        w = pq * num
        grad = 4 * (w.sum(1, keepdim=True) * y - w @ y)
        momentum = 0.5 if exaggerate else 0.8
        same = (grad > 0) == (update > 0)
        gains = torch.where(same, gains * 0.8, gains + 0.2).clamp_min(0.01)
        update = momentum * update - lr * gains * grad
        y = y + update
        y = y - y.mean(0, keepdim=True)
    return y


def neighbour_agreement(y: Tensor, labels) -> float:
    """Fraction of points whose nearest neighbour in y carries the same label (a cluster-separation score)."""
    y = torch.as_tensor(y, dtype=torch.float64)
    d = _sqdist(y)
    d.fill_diagonal_(float("inf"))
    nn_idx = d.argmin(1).tolist()
    labels = list(labels)
    return sum(labels[i] == labels[j] for i, j in enumerate(nn_idx)) / len(labels)
