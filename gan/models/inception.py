"""CAT's inception-residual generator (docs/methods.md, "Model zoo" and "CAT"): ResNet-9
stem/down/up/head around ``n_blocks`` IncResBlocks.

Each block holds 3 conventional branches (``conv{k}``) and 3 depthwise branches (``dw{k}``), one per
kernel size, summed, normalised and added to the input.  Every branch is its own channel group
(``block{i}.conv{k}``, ``block{i}.dw{k}``, min_keep 0): a branch pruned to width 0 is simply not built.
A branch's last conv (m→C) has no bias, so a branch whose readers are all zeroed outputs exactly 0 —
that is what makes masked == pruned; the summing norm follows, so the bias would be redundant anyway.
A block whose branches are all gone still applies its summing norm to zeros (x + Norm(0)), again so
masked == pruned; with an affine-free IN that is the identity.

Size at ngf 64, 256² (MACs as docs/methods.md, "MACs and parameters"), checked in
tests/unit/test_models_cat_ppcd_conditional.py:
one block = 4096·(Σ_k 2·256·42·k² + Σ_k (2·256·42 + 42·k²)) = 3.353 G MACs, so 9 blocks 30.178 G plus
13.313 G of ResNet-9 stem/down/up/head = 43.490 G MACs; 8,140,431 parameters with ``instance_affine``.
"""
from __future__ import annotations

import torch
from torch import nn

from gan.models.base import ZooModel
from gan.models.layers import conv_bias, make_norm
from gan.models.registry import register, register_tiny
from gan.models.resnet import ResidualTrunk
from gan.models.groups import ChannelGroup, depthwise_refs, gamma_name, in_refs, norm_refs, out_refs


def _kernel(branch: str) -> int:
    return int(branch.removeprefix("conv").removeprefix("dw"))


def _pad(k: int) -> nn.Module:
    return nn.ReflectionPad2d(k // 2) if k > 1 else nn.Identity()


class ConvBranch(nn.Module):
    """pad → k×k conv C→m → norm → ReLU → dropout → pad → k×k conv m→C (bias-free)."""

    def __init__(self, c: int, m: int, k: int, norm: str, dropout: float = 0.0):
        super().__init__()
        self.pad = _pad(k)
        self.conv1 = nn.Conv2d(c, m, k, bias=conv_bias(norm))
        self.norm1 = make_norm(norm, m)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.conv2 = nn.Conv2d(m, c, k, bias=False)

    def forward(self, x):
        h = self.drop(torch.relu(self.norm1(self.conv1(self.pad(x)))))
        return self.conv2(self.pad(h))


class DepthwiseBranch(nn.Module):
    """1×1 C→m → norm → ReLU → pad → depthwise k×k → norm → ReLU → dropout → 1×1 m→C (bias-free)."""

    def __init__(self, c: int, m: int, k: int, norm: str, dropout: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(c, m, 1, bias=conv_bias(norm))
        self.norm1 = make_norm(norm, m)
        self.pad = _pad(k)
        self.dw = nn.Conv2d(m, m, k, groups=m, bias=conv_bias(norm))
        self.norm2 = make_norm(norm, m)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.conv2 = nn.Conv2d(m, c, 1, bias=False)

    def forward(self, x):
        h = torch.relu(self.norm1(self.conv1(x)))
        h = self.drop(torch.relu(self.norm2(self.dw(self.pad(h)))))
        return self.conv2(h)


class IncResBlock(nn.Module):
    """x + Norm(Σ branches); ``branch_widths`` maps ``conv{k}``/``dw{k}`` → m (0 = branch absent)."""

    def __init__(self, c: int, branch_widths: dict[str, int], norm: str, dropout: float = 0.0):
        super().__init__()
        self.branches = nn.ModuleDict()
        for name, m in branch_widths.items():
            if m > 0:
                cls = ConvBranch if name.startswith("conv") else DepthwiseBranch
                self.branches[name] = cls(c, m, _kernel(name), norm, dropout)
        self.norm = make_norm(norm, c)

    def forward(self, x):
        s = None
        for branch in self.branches.values():
            s = branch(x) if s is None else s + branch(x)
        return x + self.norm(torch.zeros_like(x) if s is None else s)


@register
class InceptionGenerator(ResidualTrunk, ZooModel):
    """CAT teacher/student generator; ``widths`` overrides stem/down1/res/up1/up2 and every branch."""

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, n_blocks: int = 9,
                 norm: str = "instance_affine", channels_reduction_factor: int = 6,
                 kernel_sizes=(1, 3, 5), dropout: float = 0.0, widths: dict | None = None):
        super().__init__()
        self._record_arguments(locals())
        ks = [int(k) for k in kernel_sizes]
        if len(set(ks)) != len(ks) or any(k < 1 or k % 2 == 0 for k in ks):
            raise ValueError(f"kernel_sizes must be distinct odd positive ints, got {kernel_sizes}")
        m = 4 * ngf // channels_reduction_factor
        self.branch_names = [f"conv{k}" for k in ks] + [f"dw{k}" for k in ks]
        w = {"stem": ngf, "down1": 2 * ngf, "res": 4 * ngf, "up1": 2 * ngf, "up2": ngf}
        w.update({f"block{i}.{b}": m for i in range(1, n_blocks + 1) for b in self.branch_names})
        w = self._set_widths(w, widths)
        if any(v < 0 for v in w.values()):
            raise ValueError(f"negative widths in {w}")
        self.in_channels, self.n_blocks, self.norm_kind = input_nc, n_blocks, norm
        blocks = [IncResBlock(w["res"], {b: w[f"block{i}.{b}"] for b in self.branch_names}, norm, dropout)
                  for i in range(1, n_blocks + 1)]
        self._build_trunk(input_nc, output_nc, norm, blocks)

    def channel_groups(self) -> list[ChannelGroup]:
        w, (g, ups) = self._widths, self._layer_groups()
        # residual width: down2 output, every branch's input and output, summing norms, up1 input
        res = self._producer_refs("down2") + in_refs(self, "up1.conv")
        for i, block in enumerate(self.blocks):
            for b in block.branches:
                p = f"blocks.{i}.branches.{b}"
                res += in_refs(self, f"{p}.conv1") + out_refs(self, f"{p}.conv2")
            res += norm_refs(self, f"blocks.{i}.norm")
        g.append(ChannelGroup("res", w["res"], "res", res, gamma_name(self, "down2.norm"),
                              meta={"kernel": 3, "stride": 2}))
        for i, block in enumerate(self.blocks):
            for b in block.branches:  # width-0 branches are not built, so they have no group
                p, k = f"blocks.{i}.branches.{b}", _kernel(b)
                refs = out_refs(self, f"{p}.conv1", f"{p}.norm1")
                if b.startswith("dw"):
                    refs += depthwise_refs(self, f"{p}.dw", f"{p}.norm2")
                refs += in_refs(self, f"{p}.conv2")
                name = f"block{i + 1}.{b}"
                g.append(ChannelGroup(name, w[name], "branch", refs, gamma_name(self, f"{p}.norm1"),
                                      min_keep=0, meta={"kernel": k, "stride": 1, "block": i + 1,
                                                        "branch": b.rstrip("0123456789")}))
        return g + ups


register_tiny("inception", lambda: InceptionGenerator(ngf=8, n_blocks=2,
                                                       channels_reduction_factor=4))
register_tiny("inception_batchnorm", lambda: InceptionGenerator(
    ngf=8, n_blocks=2, norm="batch", channels_reduction_factor=4, kernel_sizes=(1, 3)))
