"""Small building blocks shared by the zoo (norm factory, weight init)."""
from __future__ import annotations

from torch import nn

NORMS = ("instance", "instance_affine", "batch", "none")


def make_norm(kind: str, channels: int) -> nn.Module:
    """pix2pix conventions: ``instance`` = IN without affine, ``batch`` = BN with affine + stats."""
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "instance_affine":
        return nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose one of {', '.join(NORMS)}")


def conv_bias(norm: str) -> bool:
    """Convs carry a bias iff the following norm is an InstanceNorm (pix2pix / gan-compression rule)."""
    return norm.startswith("instance") or norm == "none"


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """N(0, 0.02) init of pix2pix for conv/linear weights; norm γ ~ N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
