"""Small class-conditional GAN for PPCD's setting (docs/methods.md, "Model zoo"): SNGAN/BigGAN-style generator
with conditional BatchNorm and a projection discriminator (spectral norm left out: its u/v buffers
would be extra per-channel state for every group).

Generator: z → Linear → C0×4×4 → n_up up-blocks [CBN → ReLU → 2× nearest → 3×3 conv → CBN → ReLU →
3×3 conv] + [2× nearest → 1×1 conv] skip → BN → ReLU → 3×3 conv → tanh, with n_up = log2(img_size/4).
Conditional BN = affine-free BN (running stats) then per-class γ(y), β(y) from ``nn.Embedding`` tables,
so every CBN tensor is channel-local ("out" refs; the embeddings on dim 1).  Linear row c·16 + j is
channel c at spatial position j of the 4×4 map, hence ``block=16`` refs for the linear.

Groups (G): ``fc`` (C0), ``block{i}.inner`` (first conv of block i), ``block{i}.out`` (block i's output:
its second conv and skip conv are summed, so they share the group).  D: ``block{i}.inner``,
``block{i}.out``; the last ``out`` is read by the linear head and the class projection.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gan.models.base import ZooModel
from gan.models.layers import init_weights
from gan.models.registry import register, register_tiny
from gan.models.groups import ChannelGroup, ChannelRef, gamma_name, in_refs, norm_refs, out_refs


def _n_levels(img_size: int) -> int:
    n = int(math.log2(img_size // 4)) if img_size >= 8 else 0
    if n < 1 or 4 * 2 ** n != img_size:
        raise ValueError(f"img_size must be 4·2^n with n ≥ 1 (8, 16, 32, 64, ...), got {img_size}")
    return n


class ConditionalBatchNorm2d(nn.Module):
    """BN without affine (running stats) followed by class-indexed γ(y), β(y)."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gamma = nn.Embedding(num_classes, channels)
        self.beta = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x, y):
        return self.bn(x) * self.gamma(y)[:, :, None, None] + self.beta(y)[:, :, None, None]


def cbn_refs(model: nn.Module, name: str) -> list[ChannelRef]:
    """Channel-local refs of a conditional BN: running stats (dim 0) and both embedding tables (dim 1)."""
    return norm_refs(model, f"{name}.bn") + [ChannelRef(f"{name}.gamma.weight", 1),
                                              ChannelRef(f"{name}.beta.weight", 1)]


class GBlock(nn.Module):
    """Up-sampling residual block with conditional BN; the 1×1 skip conv makes the widths free."""

    def __init__(self, cin: int, inner: int, cout: int, num_classes: int):
        super().__init__()
        self.cbn1 = ConditionalBatchNorm2d(cin, num_classes)
        self.conv1 = nn.Conv2d(cin, inner, 3, 1, 1)
        self.cbn2 = ConditionalBatchNorm2d(inner, num_classes)
        self.conv2 = nn.Conv2d(inner, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1)

    def forward(self, x, y):
        h = F.interpolate(torch.relu(self.cbn1(x, y)), scale_factor=2, mode="nearest")
        h = self.conv2(torch.relu(self.cbn2(self.conv1(h), y)))
        return h + self.skip(F.interpolate(x, scale_factor=2, mode="nearest"))


@register
class ConditionalGenerator(ZooModel):
    """Class-conditional generator: ``forward(z, y)`` → image in [-1, 1] of ``img_size``²."""

    input_kind = "latent"
    block_cls = GBlock  # PPCD's masked subclass swaps in a block with mask layers

    def __init__(self, z_dim: int = 64, num_classes: int = 10, ngf: int = 32, img_size: int = 32,
                 out_channels: int = 3, widths: dict | None = None):
        super().__init__()
        self._record_arguments(locals())
        n = self.n_blocks = _n_levels(img_size)
        w = {"fc": ngf * 2 ** n}
        for i in range(1, n + 1):
            w[f"block{i}.inner"] = w[f"block{i}.out"] = ngf * 2 ** (n - i)
        w = self._set_widths(w, widths)
        self.in_channels, self.z_dim, self.num_classes = z_dim, z_dim, num_classes
        self.fc = nn.Linear(z_dim, w["fc"] * 16)
        cins = [w["fc"]] + [w[f"block{i}.out"] for i in range(1, n)]
        self.blocks = nn.ModuleList(self.block_cls(cins[i - 1], w[f"block{i}.inner"], w[f"block{i}.out"],
                                                   num_classes) for i in range(1, n + 1))
        self.bn = nn.BatchNorm2d(w[f"block{n}.out"])
        self.conv_out = nn.Conv2d(w[f"block{n}.out"], out_channels, 3, 1, 1)
        init_weights(self)

    def features(self, z, y) -> dict[str, torch.Tensor]:
        """Input of the first block and every block output (for attention distillation)."""
        h = self._stem(z)
        out = {"fc": h}
        for i, block in enumerate(self.blocks, 1):
            h = out[f"block{i}"] = block(h, y)
        return out

    def forward(self, z, y):
        return self._head(self.features(z, y)[f"block{self.n_blocks}"])

    def _stem(self, z):
        """z → the C×4×4 map the blocks start from (a masked subclass gates it)."""
        return self.fc(z).view(z.shape[0], -1, 4, 4)

    def _head(self, h):
        return torch.tanh(self.conv_out(torch.relu(self.bn(h))))

    def example_inputs(self, batch: int = 1, size: int = 64) -> tuple[torch.Tensor, ...]:
        """(z, y); ``size`` is ignored: the output size is fixed by ``img_size``."""
        return (torch.randn(batch, self.z_dim),
                torch.randint(0, self.num_classes, (batch,), dtype=torch.long))

    def channel_groups(self) -> list[ChannelGroup]:
        w, n, g = self._widths, self.n_blocks, []

        def readers(i):  # who reads the output of block i (block 0 = the linear)
            if i == n:
                return norm_refs(self, "bn") + in_refs(self, "conv_out")
            b = f"blocks.{i}"
            return cbn_refs(self, f"{b}.cbn1") + in_refs(self, f"{b}.conv1") + in_refs(self, f"{b}.skip")

        fc = [ChannelRef("fc.weight", 0, block=16), ChannelRef("fc.bias", 0, block=16)] + readers(0)
        g.append(ChannelGroup("fc", w["fc"], "fc", fc, meta={"block": 0}))
        for i in range(1, n + 1):
            b = f"blocks.{i - 1}"
            inner = out_refs(self, f"{b}.conv1") + cbn_refs(self, f"{b}.cbn2") + in_refs(
                self, f"{b}.conv2")
            g.append(ChannelGroup(f"block{i}.inner", w[f"block{i}.inner"], "inner", inner,
                                  meta={"kernel": 3, "stride": 1, "block": i}))
            outs = out_refs(self, f"{b}.conv2") + out_refs(self, f"{b}.skip") + readers(i)
            g.append(ChannelGroup(f"block{i}.out", w[f"block{i}.out"], "out", outs,
                                  gamma_name(self, "bn") if i == n else None,
                                  meta={"kernel": 3, "stride": 1, "block": i}))
        return g


class DBlock(nn.Module):
    """Down-sampling residual block: [ReLU] → 3×3 → ReLU → 3×3 → avgpool, + 1×1 skip (pooled)."""

    def __init__(self, cin: int, inner: int, cout: int, first: bool):
        super().__init__()
        self.first = first
        self.conv1 = nn.Conv2d(cin, inner, 3, 1, 1)
        self.conv2 = nn.Conv2d(inner, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        h = x if self.first else torch.relu(x)
        h = F.avg_pool2d(self.conv2(torch.relu(self.conv1(h))), 2)
        return h + F.avg_pool2d(self.skip(x), 2)


@register
class ConditionalDiscriminator(ZooModel):
    """Projection discriminator: ``forward(x, y)`` = linear(Σ_hw h) + ⟨embed(y), Σ_hw h⟩, shape (B, 1)."""

    def __init__(self, num_classes: int = 10, ndf: int = 32, img_size: int = 32,
                 in_channels: int = 3, widths: dict | None = None):
        super().__init__()
        self._record_arguments(locals())
        n = self.n_blocks = _n_levels(img_size)
        w = {}
        for i in range(1, n + 1):
            w[f"block{i}.inner"] = w[f"block{i}.out"] = ndf * 2 ** (i - 1)
        w = self._set_widths(w, widths)
        self.in_channels, self.num_classes = in_channels, num_classes
        cins = [in_channels] + [w[f"block{i}.out"] for i in range(1, n)]
        self.blocks = nn.ModuleList(DBlock(cins[i - 1], w[f"block{i}.inner"], w[f"block{i}.out"],
                                           i == 1) for i in range(1, n + 1))
        self.linear = nn.Linear(w[f"block{n}.out"], 1)
        self.embed = nn.Embedding(num_classes, w[f"block{n}.out"])
        init_weights(self)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def features(self, x) -> torch.Tensor:
        """Globally sum-pooled ReLU features (B, C) that both heads read."""
        for block in self.blocks:
            x = block(x)
        return torch.relu(x).sum(dim=(2, 3))

    def forward(self, x, y):
        h = self.features(x)
        return self.linear(h) + (self.embed(y) * h).sum(1, keepdim=True)

    def example_inputs(self, batch: int = 1, size: int = 64) -> tuple[torch.Tensor, ...]:
        """(image, y): any ``size`` works (global pooling); the generator makes ``img_size``²."""
        return (torch.randn(batch, self.in_channels, size, size),
                torch.randint(0, self.num_classes, (batch,), dtype=torch.long))

    def channel_groups(self) -> list[ChannelGroup]:
        w, n, g = self._widths, self.n_blocks, []
        for i in range(1, n + 1):
            b = f"blocks.{i - 1}"
            inner = out_refs(self, f"{b}.conv1") + in_refs(self, f"{b}.conv2")
            g.append(ChannelGroup(f"block{i}.inner", w[f"block{i}.inner"], "inner", inner,
                                  meta={"kernel": 3, "stride": 1, "block": i}))
            if i < n:
                readers = in_refs(self, f"blocks.{i}.conv1") + in_refs(self, f"blocks.{i}.skip")
            else:
                readers = in_refs(self, "linear") + in_refs(self, "embed")
            outs = out_refs(self, f"{b}.conv2") + out_refs(self, f"{b}.skip") + readers
            g.append(ChannelGroup(f"block{i}.out", w[f"block{i}.out"], "out", outs,
                                  meta={"kernel": 3, "stride": 2, "block": i}))
        return g


register_tiny("conditional_generator",
              lambda: ConditionalGenerator(z_dim=16, num_classes=4, ngf=8, img_size=32))
register_tiny("conditional_discriminator",
              lambda: ConditionalDiscriminator(num_classes=4, ndf=8, img_size=32))
