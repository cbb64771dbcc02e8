"""Fréchet distance and KID between two feature sets (pytorch-fid / clean-fid conventions)."""
from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg


def feature_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """(μ, Σ) of an (N, D) feature matrix, float64; Σ unbiased (N−1), as pytorch-fid."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be (N>=2, D), got shape {f.shape}")
    return f.mean(0), np.atleast_2d(np.cov(f, rowvar=False))


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """||μ1−μ2||² + Tr(Σ1 + Σ2 − 2(Σ1Σ2)^½).

    As pytorch-fid: if sqrtm is not finite (singular Σ, e.g. N < D) retry with eps·I added to both;
    tiny imaginary parts from numerical error are dropped, large ones raise.  NaN when a statistic is
    not finite.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs {s2.shape}")
    diff = mu1 - mu2
    if not all(np.isfinite(a).all() for a in (mu1, mu2, s1, s2)):
        return float("nan")  # features of a diverged model: scipy's sqrtm never returns on NaN/inf
    with warnings.catch_warnings():  # singular Σ is expected for small sets; handled below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"sqrtm has imaginary component {np.max(np.abs(covmean.imag)):.3g}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def kid(features1, features2, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> float:
    """Kernel Inception Distance: unbiased MMD² with k(x,y) = (x·y/d + 1)³, averaged over random subsets.

    Same estimator as clean-fid's ``kernel_distance`` (and CAT's); subset_size is clipped to the
    smaller set, so small evaluation sets still work (at higher variance).
    """
    x, y = np.asarray(features1, np.float64), np.asarray(features2, np.float64)
    d = x.shape[1]
    m = min(x.shape[0], y.shape[0], subset_size)
    if m < 2:
        raise ValueError("KID needs at least 2 samples per set")
    rng = np.random.default_rng(seed)
    t = 0.0
    for _ in range(subsets):
        a = x[rng.choice(x.shape[0], m, replace=False)]
        b = y[rng.choice(y.shape[0], m, replace=False)]
        kaa, kbb, kab = (a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3
        t += ((kaa.sum() - np.trace(kaa)) + (kbb.sum() - np.trace(kbb))) / (m - 1) - 2 * kab.sum() / m
    return float(t / subsets / m)
