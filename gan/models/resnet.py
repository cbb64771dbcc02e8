"""pix2pix / CycleGAN ResNet generator (``resnet_9blocks`` at ngf 64 and n_blocks 9).

Named sub-modules (stem, down1, down2, blocks.i, up1, up2, head) instead of one Sequential so the
channel groups read like METHODS.md §1.9.
"""
from __future__ import annotations

import torch
from torch import nn

from gan.models.base import ZooModel
from gan.models.layers import conv_bias, init_weights, make_norm
from gan.models.registry import register, register_tiny
from gan.pruning.groups import ChannelGroup, gamma_name, in_refs, out_refs


class ConvNormAct(nn.Module):
    """[pad] → conv → norm → activation; the unit every stem/down/up layer is made of."""

    def __init__(self, cin, cout, k, stride=1, padding=0, norm="instance", act="relu",
                 reflect_pad=0, transposed=False, output_padding=0):
        super().__init__()
        self.pad = nn.ReflectionPad2d(reflect_pad) if reflect_pad else nn.Identity()
        if transposed:
            self.conv = nn.ConvTranspose2d(cin, cout, k, stride, padding, output_padding,
                                           bias=conv_bias(norm))
        else:
            self.conv = nn.Conv2d(cin, cout, k, stride, padding, bias=conv_bias(norm))
        self.norm = make_norm(norm, cout)
        self.act = {"relu": nn.ReLU(True), "lrelu": nn.LeakyReLU(0.2, True),
                    "none": nn.Identity()}[act]

    def forward(self, x):
        return self.act(self.norm(self.conv(self.pad(x))))


class ResnetBlock(nn.Module):
    """pad1 → 3×3 conv (res→inner) → norm → ReLU → pad1 → 3×3 conv (inner→res) → norm, + skip."""

    def __init__(self, res: int, inner: int, norm: str, dropout: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(res, inner, 3, bias=conv_bias(norm))
        self.norm1 = make_norm(norm, inner)
        self.conv2 = nn.Conv2d(inner, res, 3, bias=conv_bias(norm))
        self.norm2 = make_norm(norm, res)
        self.pad = nn.ReflectionPad2d(1)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, x):
        h = torch.relu(self.norm1(self.conv1(self.pad(x))))
        return x + self.norm2(self.conv2(self.pad(self.drop(h))))


@register
class ResnetGenerator(ZooModel):
    """ResNet generator; ``widths`` (group → channels) overrides the ngf-derived widths."""

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, n_blocks: int = 9,
                 norm: str = "instance", dropout: float = 0.0, widths: dict | None = None):
        super().__init__()
        self._record_arguments(locals())
        w = {"stem": ngf, "down1": 2 * ngf, "res": 4 * ngf, "up1": 2 * ngf, "up2": ngf}
        w.update({f"inner_{i + 1}": 4 * ngf for i in range(n_blocks)})
        if widths:
            unknown = set(widths) - set(w)
            if unknown:
                raise ValueError(f"unknown width keys {sorted(unknown)} for ResnetGenerator")
            w.update({k: int(v) for k, v in widths.items()})
        self._widths = w
        self.in_channels, self.n_blocks, self.norm_kind = input_nc, n_blocks, norm
        self.stem = ConvNormAct(input_nc, w["stem"], 7, norm=norm, reflect_pad=3)
        self.down1 = ConvNormAct(w["stem"], w["down1"], 3, 2, 1, norm=norm)
        self.down2 = ConvNormAct(w["down1"], w["res"], 3, 2, 1, norm=norm)
        self.blocks = nn.ModuleList(
            ResnetBlock(w["res"], w[f"inner_{i + 1}"], norm, dropout) for i in range(n_blocks))
        self.up1 = ConvNormAct(w["res"], w["up1"], 3, 2, 1, norm=norm, transposed=True,
                               output_padding=1)
        self.up2 = ConvNormAct(w["up1"], w["up2"], 3, 2, 1, norm=norm, transposed=True,
                               output_padding=1)
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(w["up2"], output_nc, 7),
                                  nn.Tanh())
        init_weights(self)

    def forward(self, x):
        x = x.clamp(-1, 1)
        h = self.down2(self.down1(self.stem(x)))
        for block in self.blocks:
            h = block(h)
        return self.head(self.up2(self.up1(h)))

    def features(self, x) -> dict[str, torch.Tensor]:
        """The four distillation points of GAN Compression / CAT: residual input, blocks n/3, 2n/3, n."""
        x = x.clamp(-1, 1)
        h = self.down2(self.down1(self.stem(x)))
        taps = {max(1, round(self.n_blocks * f)) for f in (1 / 3, 2 / 3, 1)}
        out = {"res_in": h}
        for i, block in enumerate(self.blocks, 1):
            h = block(h)
            if i in taps:
                out[f"block{i}"] = h
        return out

    def channel_groups(self) -> list[ChannelGroup]:
        w, g = self._widths, []

        def layer_group(name, kind, producer, consumer, **meta):
            refs = out_refs(self, f"{producer}.conv", f"{producer}.norm") + in_refs(self, consumer)
            g.append(ChannelGroup(name, w[name], kind, refs, gamma_name(self, f"{producer}.norm"),
                                  meta=meta))

        layer_group("stem", "stem", "stem", "down1.conv", kernel=7, stride=1)
        layer_group("down1", "down", "down1", "down2.conv", kernel=3, stride=2)
        res = out_refs(self, "down2.conv", "down2.norm") + in_refs(self, "up1.conv")
        for i in range(self.n_blocks):
            res += in_refs(self, f"blocks.{i}.conv1") + out_refs(self, f"blocks.{i}.conv2",
                                                                  f"blocks.{i}.norm2")
        g.append(ChannelGroup("res", w["res"], "res", res, gamma_name(self, "down2.norm"),
                              meta={"kernel": 3, "stride": 2}))
        for i in range(self.n_blocks):
            refs = out_refs(self, f"blocks.{i}.conv1", f"blocks.{i}.norm1") + in_refs(
                self, f"blocks.{i}.conv2")
            g.append(ChannelGroup(f"inner_{i + 1}", w[f"inner_{i + 1}"], "inner", refs,
                                  gamma_name(self, f"blocks.{i}.norm1"), meta={"kernel": 3, "stride": 1}))
        layer_group("up1", "up", "up1", "up2.conv", kernel=3, stride=2)
        layer_group("up2", "up", "up2", "head.1", kernel=3, stride=2)
        return g


register_tiny("resnet", lambda: ResnetGenerator(ngf=8, n_blocks=3))
register_tiny("resnet_batchnorm", lambda: ResnetGenerator(ngf=8, n_blocks=2, norm="batch"))
