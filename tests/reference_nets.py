"""Test networks in the reference pix2pix / CycleGAN ``nn.Sequential`` index layout.

The reference implementation (junyanz/pytorch-CycleGAN-and-pix2pix, ``models/networks.py``) names
its parameters by position in one ``nn.Sequential`` per network; a released ``latest_net_G.pth`` is
the ``state_dict()`` of these modules.  The classes below are written for the tests, layer for layer
in the same order and with the same settings as the reference's ``ResnetGenerator`` (+
``ResnetBlock``), ``UnetGenerator`` (+ ``UnetSkipConnectionBlock``) and ``NLayerDiscriminator``
(reflection padding, conv bias only with InstanceNorm, ConvTranspose output_padding 1 in the ResNet,
in-place activations, final Tanh), so their state dicts carry exactly the reference's keys and
their forwards compute the reference's function.  ``legacy=True`` builds InstanceNorms with
``track_running_stats=True``, the old default that left running statistics in released files.
"""
from __future__ import annotations

import torch
from torch import nn


def norm_layer(norm: str, channels: int, legacy: bool = False) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels, affine=True)
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=legacy)


class RefResnetBlock(nn.Module):
    """conv_block = [pad, conv, norm, ReLU, (Dropout 0.5), pad, conv, norm]; out = x + conv_block(x)."""

    def __init__(self, dim: int, norm: str, dropout: bool, legacy: bool = False):
        super().__init__()
        bias = norm == "instance"
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(norm, dim, legacy),
                  nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(norm, dim, legacy)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv_block(x)


class RefResnetGenerator(nn.Module):
    def __init__(self, input_nc=3, output_nc=3, ngf=64, norm="instance", dropout=False, n_blocks=9,
                 legacy=False):
        super().__init__()
        bias = norm == "instance"
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, padding=0, bias=bias),
                  norm_layer(norm, ngf, legacy), nn.ReLU(True)]
        for i in range(2):  # two stride-2 downsamplings
            m = 2 ** i
            layers += [nn.Conv2d(ngf * m, ngf * m * 2, 3, stride=2, padding=1, bias=bias),
                       norm_layer(norm, ngf * m * 2, legacy), nn.ReLU(True)]
        layers += [RefResnetBlock(ngf * 4, norm, dropout, legacy) for _ in range(n_blocks)]
        for i in range(2):
            m = 2 ** (2 - i)
            layers += [nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, stride=2, padding=1, output_padding=1,
                                          bias=bias),
                       norm_layer(norm, ngf * m // 2, legacy), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class RefUnetBlock(nn.Module):
    """One U-Net level: X → [down → submodule → up] concatenated with X (the outermost: no concat)."""

    def __init__(self, outer_nc, inner_nc, input_nc=None, submodule=None, outermost=False, innermost=False,
                 norm="batch", dropout=False, legacy=False):
        super().__init__()
        self.outermost = outermost
        bias = norm == "instance"
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=bias)
        downrelu, uprelu = nn.LeakyReLU(0.2, True), nn.ReLU(True)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1)
            layers = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, 4, stride=2, padding=1, bias=bias)
            layers = [downrelu, downconv, uprelu, upconv, norm_layer(norm, outer_nc, legacy)]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1, bias=bias)
            layers = [downrelu, downconv, norm_layer(norm, inner_nc, legacy), submodule, uprelu, upconv,
                      norm_layer(norm, outer_nc, legacy)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class RefUnetGenerator(nn.Module):
    def __init__(self, input_nc=3, output_nc=3, num_downs=8, ngf=64, norm="batch", dropout=False, legacy=False):
        super().__init__()
        kw = dict(norm=norm, legacy=legacy)
        block = RefUnetBlock(ngf * 8, ngf * 8, innermost=True, **kw)
        for _ in range(num_downs - 5):
            block = RefUnetBlock(ngf * 8, ngf * 8, submodule=block, dropout=dropout, **kw)
        for m in (4, 2, 1):
            block = RefUnetBlock(ngf * m, ngf * m * 2, submodule=block, **kw)
        self.model = RefUnetBlock(output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, **kw)

    def forward(self, x):
        return self.model(x)


class RefNLayerDiscriminator(nn.Module):
    def __init__(self, input_nc=6, ndf=64, n_layers=3, norm="batch", legacy=False):
        super().__init__()
        bias = norm == "instance"
        layers = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2 if n < n_layers else 1, padding=1, bias=bias),
                       norm_layer(norm, ndf * mult, legacy), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


def randomize(net: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial weights and BatchNorm statistics (a trained net's are not 1 and 0), in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if t.is_floating_point():
                if name.endswith("running_var"):
                    t.copy_(0.5 + torch.rand(t.shape, generator=g))
                elif name.endswith("weight") and t.dim() == 1:
                    t.copy_(1 + 0.2 * torch.randn(t.shape, generator=g))
                else:
                    t.copy_(0.1 * torch.randn(t.shape, generator=g))
    return net.eval()


class Payload:
    """A pickle code payload for the refusal tests: unpickling it would create ``marker`` (its
    ``__reduce__`` names ``open``); ``torch.save`` only records the call."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def images(n: int, channels: int, size: int, seed: int = 1) -> torch.Tensor:
    """Inputs in the image range [-1, 1]."""
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1
