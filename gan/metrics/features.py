"""Feature extractors for distribution metrics: a seeded random-conv *proxy* (default) and InceptionV3.

The real FID protocol (docs/methods.md, "Fidelity metrics") needs pytorch-fid's InceptionV3 with the
TF-FID weights ``pt_inception-2015-12-05-*.pth``; neither ships offline here.  The default backend is
therefore a fixed random conv net (seed 0): it gives a consistent, deterministic embedding so numbers are
comparable *within this project*, but they are NOT FID and are always named ``fid_proxy``/``kid_proxy``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PROXY_SIZE = 64  # every image is resized to PROXY_SIZE² before the proxy net
ENV_WEIGHTS = "GANPRUNE_INCEPTION_WEIGHTS"


class MetricUnavailable(RuntimeError):
    """A metric whose model or package is not available offline."""


class ProxyFeatureNet(nn.Module):
    """4 stride-2 3×3 convs (3→32→64→128→256), ReLU, global average pool → 256-d; He-init from seed 0.

    Weights come from a private torch.Generator, so they do not depend on (or disturb) the global RNG.
    """

    WIDTHS = (3, 32, 64, 128, 256)

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.convs = nn.ModuleList()
        for cin, cout in zip(self.WIDTHS[:-1], self.WIDTHS[1:]):
            conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (2 / (cin * 9)) ** 0.5)
                conv.bias.zero_()
            self.convs.append(conv)
        self.requires_grad_(False).eval()

    def forward(self, x):
        x = F.interpolate(x, size=(PROXY_SIZE, PROXY_SIZE), mode="bilinear", align_corners=False, antialias=True)
        for conv in self.convs:
            x = F.relu(conv(x))
        return x.mean((2, 3))


_PROXY: dict[int, ProxyFeatureNet] = {}


def _as_batch(images) -> torch.Tensor:
    """(N,C,H,W) or (C,H,W) float in [-1,1]; 1-channel images are repeated to RGB."""
    x = torch.as_tensor(images).detach().float().cpu()
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 3 or 1, H, W) in [-1, 1], got shape {tuple(x.shape)}")
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def _inception(weights) -> nn.Module:
    path = weights or os.environ.get(ENV_WEIGHTS)
    msg = ("FID needs `pip install pytorch-fid` (with torchvision) and the TF-FID weights file "
           f"pt_inception-2015-12-05-*.pth given as inception_weights= or ${ENV_WEIGHTS}; "
           "use backend='proxy' (fid_proxy) otherwise")
    if not path or not Path(path).is_file():
        raise MetricUnavailable(f"{msg} (weights file: {path or 'not given'})")
    try:
        from pytorch_fid import inception as pfi
    except ImportError:
        raise MetricUnavailable(f"{msg} (pytorch_fid is not installed)") from None
    # pytorch-fid fetches its weights by URL; serve them from the local file instead (no pickle).
    orig = pfi.load_state_dict_from_url
    pfi.load_state_dict_from_url = lambda *a, **k: torch.load(path, map_location="cpu", weights_only=True)
    try:
        return pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=True,
                               normalize_input=True).eval()
    finally:
        pfi.load_state_dict_from_url = orig


@torch.no_grad()
def fidelity_features(images, backend: str = "proxy", batch_size: int = 64,
                      inception_weights=None) -> np.ndarray:
    """(N, D) float64 features of images in [-1, 1]: D=256 for "proxy", 2048 (pool3) for "inception".

    Inception follows pytorch-fid: quantise to uint8 as the saved PNGs would be, scale to [0, 1];
    the network resizes to 299 and normalises itself.
    """
    x = _as_batch(images)
    if backend == "proxy":
        net = _PROXY.setdefault(0, ProxyFeatureNet(0))
        prep = lambda b: b  # noqa: E731
    elif backend == "inception":
        net = _inception(inception_weights)
        prep = lambda b: ((b.clamp(-1, 1) + 1) * 127.5).round() / 255  # noqa: E731
    else:
        raise ValueError(f"backend must be 'proxy' or 'inception', got {backend!r}")
    out = []
    for i in range(0, x.shape[0], batch_size):
        f = net(prep(x[i:i + batch_size]))
        f = f[0] if isinstance(f, (list, tuple)) else f
        out.append(f.reshape(f.shape[0], -1).double().numpy())
    return np.concatenate(out)
