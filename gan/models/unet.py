"""pix2pix U-Net generator (``unet_256`` at ngf 64 and num_downs 8), docs/methods.md, "Model zoo".

Levels are unrolled into two ModuleLists (``down.i``, ``up.i``; index i is level i+1, level 1 is
outermost) instead of pix2pix's recursive blocks, so every skip concat is explicit and the channel
groups can name the concat offsets.  pix2pix's in-place LeakyReLU rewrites the skip tensor, but the
decoder's ReLU(LReLU(x)) == ReLU(x), so concatenating the raw encoder output gives the same function.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gan.models.base import ZooModel
from gan.models.layers import conv_bias, init_weights, make_norm
from gan.models.registry import register, register_tiny
from gan.models.groups import ChannelGroup, gamma_name, in_refs, out_refs


class _Level(nn.Module):
    """conv (or conv-transpose) 4×4 s2 p1 → norm (Identity where pix2pix has none) → dropout."""

    def __init__(self, cin, cout, norm, has_norm, transposed=False, bias=None, dropout=0.0):
        super().__init__()
        bias = conv_bias(norm) if bias is None else bias
        conv = nn.ConvTranspose2d if transposed else nn.Conv2d
        self.conv = conv(cin, cout, 4, 2, 1, bias=bias)
        self.norm = make_norm(norm, cout) if has_norm else nn.Identity()
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, x):
        return self.drop(self.norm(self.conv(x)))


@register
class UnetGenerator(ZooModel):
    """U-Net generator; groups ``enc1..encN`` (encoder outputs, also read through the skip concat)
    and ``dec1..dec{N-1}`` (transposed-conv outputs, concatenated after the skip of their level)."""

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, num_downs: int = 8,
                 norm: str = "batch", dropout: float = 0.5, widths: dict | None = None):
        super().__init__()
        self._record_arguments(locals())
        if num_downs < 2:
            raise ValueError("UnetGenerator needs num_downs >= 2")
        n = num_downs
        w = {f"enc{i}": ngf * min(2 ** (i - 1), 8) for i in range(1, n + 1)}
        w.update({f"dec{i}": w[f"enc{i}"] for i in range(1, n)})
        w = self._set_widths(w, widths)
        self.in_channels, self.num_downs, self.norm_kind = input_nc, n, norm
        # encoder: no norm after the outermost and the innermost conv
        self.down = nn.ModuleList(
            _Level(input_nc if i == 1 else w[f"enc{i - 1}"], w[f"enc{i}"], norm, 1 < i < n)
            for i in range(1, n + 1))
        # decoder level i reads concat(enc_i, dec_i) (innermost: enc_n alone) and writes dec_{i-1};
        # pix2pix puts dropout in the ngf·8 blocks between level 5 and the innermost
        ups = []
        for i in range(1, n + 1):
            cin = w[f"enc{i}"] + (w[f"dec{i}"] if i < n else 0)
            if i == 1:
                ups.append(_Level(cin, output_nc, norm, False, transposed=True, bias=True))
            else:
                ups.append(_Level(cin, w[f"dec{i - 1}"], norm, True, transposed=True,
                                  dropout=dropout if 5 <= i < n else 0.0))
        self.up = nn.ModuleList(ups)
        init_weights(self)

    def _encode(self, x):
        skips, h = [], x.clamp(-1, 1)  # same input convention as ResnetGenerator
        for i, level in enumerate(self.down):
            h = level(F.leaky_relu(h, 0.2) if i else h)
            skips.append(h)
        return skips

    def _decode(self, skips, taps=()):
        h, out = skips[-1], {}
        for i in reversed(range(self.num_downs)):
            if i < self.num_downs - 1:
                h = torch.cat([skips[i], h], 1)
            h = self.up[i](F.relu(h))
            if i in taps:
                out[f"dec{i}"] = h
        return h, out

    def forward(self, x):
        return torch.tanh(self._decode(self._encode(x))[0])

    def features(self, x) -> dict[str, torch.Tensor]:
        """Distillation points: the bottleneck and the decoder outputs right after it, at the middle
        level and at full-minus-one resolution (``decK`` = output of the transposed conv at level K+1)."""
        skips = self._encode(x)
        n = self.num_downs
        _, dec = self._decode(skips, {n - 1, max(1, n // 2), 1})
        return {"bottleneck": skips[-1], **dec}

    def channel_groups(self) -> list[ChannelGroup]:
        w, n, g = self._widths, self.num_downs, []
        for i in range(1, n + 1):
            has_norm = 1 < i < n
            norm = f"down.{i - 1}.norm" if has_norm else None
            refs = out_refs(self, f"down.{i - 1}.conv", norm) + in_refs(self, f"up.{i - 1}.conv")
            if i < n:
                refs += in_refs(self, f"down.{i}.conv")
            g.append(ChannelGroup(f"enc{i}", w[f"enc{i}"], "enc", refs, gamma_name(self, norm),
                                  meta={"kernel": 4, "stride": 2, "level": i}))
        for i in range(1, n):
            refs = out_refs(self, f"up.{i}.conv", f"up.{i}.norm") + in_refs(
                self, f"up.{i - 1}.conv", offset=w[f"enc{i}"])
            g.append(ChannelGroup(f"dec{i}", w[f"dec{i}"], "dec", refs,
                                  gamma_name(self, f"up.{i}.norm"),
                                  meta={"kernel": 4, "stride": 2, "level": i}))
        return g


register_tiny("unet", lambda: UnetGenerator(ngf=8, num_downs=5))
register_tiny("unet_instance", lambda: UnetGenerator(ngf=4, num_downs=4, norm="instance_affine"))
