"""pix2pix / CycleGAN ResNet generator (``resnet_9blocks`` at ngf 64 and n_blocks 9).

Named sub-modules (stem, down1, down2, blocks.i, up1, up2, head) instead of one Sequential so the
channel groups read as listed in docs/methods.md, "Model zoo".
"""
from __future__ import annotations

import torch
from torch import nn

from gan.models.base import ZooModel
from gan.models.layers import conv_bias, init_weights, make_norm
from gan.models.registry import register, register_tiny
from gan.models.groups import ChannelGroup, gamma_name, in_refs, out_refs


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


class ResidualTrunk:
    """stem → down1 → down2 → residual blocks → up1 → up2 → head, shared by the ResNet, CAT and
    PPCD generators: one forward, one set of distillation taps, one set of layer groups."""

    def _build_trunk(self, input_nc: int, output_nc: int, norm: str, blocks: list[nn.Module]) -> None:
        """Create the layers around the residual blocks from ``self._widths``, then init weights."""
        w = self._widths
        self.stem = ConvNormAct(input_nc, w["stem"], 7, norm=norm, reflect_pad=3)
        self.down1 = ConvNormAct(w["stem"], w["down1"], 3, 2, 1, norm=norm)
        self.down2 = ConvNormAct(w["down1"], w["res"], 3, 2, 1, norm=norm)
        self.blocks = nn.ModuleList(blocks)
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

    def _producer_refs(self, layer: str) -> list:
        """Refs of a ConvNormAct-like layer that writes a group (subclasses add e.g. masks)."""
        return out_refs(self, f"{layer}.conv", f"{layer}.norm")

    def _layer_groups(self) -> tuple[list[ChannelGroup], list[ChannelGroup]]:
        """(stem, down1) and (up1, up2) groups; the residual groups are each model's own."""
        def group(name, kind, consumer, kernel, stride):
            return ChannelGroup(name, self._widths[name], kind,
                                self._producer_refs(name) + in_refs(self, consumer),
                                gamma_name(self, f"{name}.norm"), meta={"kernel": kernel, "stride": stride})

        return ([group("stem", "stem", "down1.conv", 7, 1), group("down1", "down", "down2.conv", 3, 2)],
                [group("up1", "up", "up2.conv", 3, 2), group("up2", "up", "head.1", 3, 2)])


@register
class ResnetGenerator(ResidualTrunk, ZooModel):
    """ResNet generator; ``widths`` (group → channels) overrides the ngf-derived widths."""

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, n_blocks: int = 9,
                 norm: str = "instance", dropout: float = 0.0, widths: dict | None = None):
        super().__init__()
        self._record_arguments(locals())
        w = {"stem": ngf, "down1": 2 * ngf, "res": 4 * ngf, "up1": 2 * ngf, "up2": ngf}
        w.update({f"inner_{i + 1}": 4 * ngf for i in range(n_blocks)})
        w = self._set_widths(w, widths)
        self.in_channels, self.n_blocks, self.norm_kind = input_nc, n_blocks, norm
        blocks = [ResnetBlock(w["res"], w[f"inner_{i + 1}"], norm, dropout) for i in range(n_blocks)]
        self._build_trunk(input_nc, output_nc, norm, blocks)

    def channel_groups(self) -> list[ChannelGroup]:
        w, (g, ups) = self._widths, self._layer_groups()
        res = self._producer_refs("down2") + in_refs(self, "up1.conv")
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
        return g + ups


register_tiny("resnet", lambda: ResnetGenerator(ngf=8, n_blocks=3))
register_tiny("resnet_batchnorm", lambda: ResnetGenerator(ngf=8, n_blocks=2, norm="batch"))
