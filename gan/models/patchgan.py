"""pix2pix / CycleGAN PatchGAN discriminator (``n_layers``; 70×70 at n_layers 3), docs/methods.md,
"Model zoo".

Hidden convs ``convs.i`` (4×4, padding 1, stride 2 except the last, which has stride 1) are the D
agent's channel groups ``layer1..layer{n_layers+1}``; the 1-channel logit conv ``head`` is fixed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gan.models.base import ZooModel
from gan.models.layers import conv_bias, init_weights, make_norm
from gan.models.registry import register, register_tiny
from gan.models.groups import ChannelGroup, gamma_name, in_refs, out_refs


@register
class PatchGANDiscriminator(ZooModel):
    """PatchGAN; ``forward`` returns the logit map, ``features`` the penultimate activation."""

    def __init__(self, input_nc: int = 6, ndf: int = 64, n_layers: int = 3, norm: str = "batch",
                 widths: dict | None = None):
        super().__init__()
        self._record_arguments(locals())
        k = n_layers + 1
        w = {f"layer{i}": ndf * min(2 ** (i - 1), 8) for i in range(1, k + 1)}
        w = self._set_widths(w, widths)
        self.in_channels, self.n_layers, self.norm_kind = input_nc, n_layers, norm
        cins = [input_nc] + [w[f"layer{i}"] for i in range(1, k)]
        # pix2pix: the first conv has a bias and no norm; the others follow the conv_bias rule
        self.convs = nn.ModuleList(
            nn.Conv2d(cins[i], w[f"layer{i + 1}"], 4, 2 if i < k - 1 else 1, 1,
                      bias=True if i == 0 else conv_bias(norm)) for i in range(k))
        self.norms = nn.ModuleList(
            nn.Identity() if i == 0 else make_norm(norm, w[f"layer{i + 1}"]) for i in range(k))
        self.head = nn.Conv2d(w[f"layer{k}"], 1, 4, 1, 1)
        init_weights(self)

    def features(self, x) -> torch.Tensor:
        """Penultimate activation (input of the logit conv), for feature-space losses."""
        for conv, norm in zip(self.convs, self.norms):
            x = F.leaky_relu(norm(conv(x)), 0.2)
        return x

    def forward(self, x):
        return self.head(self.features(x))

    def channel_groups(self) -> list[ChannelGroup]:
        return patchgan_groups(self, lambda i: f"convs.{i}", lambda i: f"norms.{i}")


def patchgan_groups(model, conv, norm, extra_refs=lambda i: []) -> list[ChannelGroup]:
    """Groups layer1..layerK of a PatchGAN-shaped D (the first hidden conv has no norm; the 1-channel
    ``head`` reads the last); ``conv``/``norm`` map a layer index to module names."""
    k, g = model.n_layers + 1, []
    for i in range(k):
        n = norm(i) if i else None
        reader = conv(i + 1) if i + 1 < k else "head"
        refs = out_refs(model, conv(i), n) + extra_refs(i) + in_refs(model, reader)
        g.append(ChannelGroup(f"layer{i + 1}", model._widths[f"layer{i + 1}"], "disc", refs,
                              gamma_name(model, n), meta={"kernel": 4, "stride": 2 if i < k - 1 else 1}))
    return g


register_tiny("patchgan", lambda: PatchGANDiscriminator(ndf=8, n_layers=3))
register_tiny("patchgan_instance",
              lambda: PatchGANDiscriminator(input_nc=3, ndf=8, n_layers=2, norm="instance"))
