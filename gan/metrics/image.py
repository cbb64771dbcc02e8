"""Paired image metrics for images in [-1, 1]: PSNR and SSIM (against ground truth or the teacher)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

DATA_RANGE = 2.0  # images live in [-1, 1]


def _pair(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = torch.as_tensor(x).detach().double().cpu(), torch.as_tensor(y).detach().double().cpu()
    x, y = (x[None] if x.ndim == 3 else x), (y[None] if y.ndim == 3 else y)
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"need two (N, C, H, W) batches of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    return x, y


def psnr(x, y, max_db: float | None = 100.0, reduce: bool = True):
    """PSNR in dB, computed per image (data range 2) then averaged.

    Identical images have infinite PSNR; each image is capped at ``max_db`` (default 100 dB, far
    above any real difference) so that means stay finite and JSON-safe; ``max_db=None`` keeps inf.
    """
    x, y = _pair(x, y)
    mse = (x - y).pow(2).flatten(1).mean(1)
    db = 10 * torch.log10(DATA_RANGE ** 2 / mse)  # mse 0 → inf
    if max_db is not None:
        db = db.clamp(max=max_db)
    return float(db.mean()) if reduce else db


def _gaussian(win: int, sigma: float) -> torch.Tensor:
    t = torch.arange(win, dtype=torch.float64) - (win - 1) / 2
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def ssim(x, y, win: int = 11, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03, reduce: bool = True):
    """SSIM of Wang et al. 2004: Gaussian window 11 / σ 1.5, K1 0.01, K2 0.03, L = 2; 'valid' filtering
    (as the reference MATLAB code and pytorch-msssim), mean over channels and pixels, then over images."""
    x, y = _pair(x, y)
    n, c, h, w = x.shape
    if min(h, w) < win:
        raise ValueError(f"SSIM needs images of at least {win}×{win}, got {h}×{w}")
    g = _gaussian(win, sigma)
    kh, kw = g.view(1, 1, win, 1).repeat(c, 1, 1, 1), g.view(1, 1, 1, win).repeat(c, 1, 1, 1)
    blur = lambda t: F.conv2d(F.conv2d(t, kh, groups=c), kw, groups=c)  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
    c1, c2 = (k1 * DATA_RANGE) ** 2, (k2 * DATA_RANGE) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    s = s.flatten(1).mean(1)
    return float(s.mean()) if reduce else s
