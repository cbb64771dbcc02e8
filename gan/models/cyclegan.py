"""CycleGAN as one zoo model: G_A (A→B), G_B (B→A), D_A (judges B images), D_B (judges A images).

Kept as a single ZooModel so one architecture dict / state dict / spec covers all four nets; each
member's groups and widths appear under its prefix ("G_A.res", "D_B.layer2", ...).
"""
from __future__ import annotations

import copy
from dataclasses import replace

from gan.models.base import ZooModel
from gan.models.registry import register, register_tiny
from gan.models.groups import ChannelGroup
from gan.models.patchgan import PatchGANDiscriminator
from gan.models.resnet import ResnetGenerator

MEMBERS = ("G_A", "G_B", "D_A", "D_B")


@register
class CycleGANPair(ZooModel):
    """``generator`` / ``discriminator`` are architecture dicts; ``widths`` keys are prefixed."""

    def __init__(self, generator: dict, discriminator: dict, widths: dict | None = None):
        super().__init__()
        self._record_arguments(locals())
        from gan.models.registry import build  # lazy: keeps this module import-order independent

        widths = dict(widths or {})
        unknown = [k for k in widths if k.split(".", 1)[0] not in MEMBERS or "." not in k]
        if unknown:
            raise ValueError(f"unknown width keys {sorted(unknown)} for CycleGANPair "
                             f"(expected prefixes {', '.join(p + '.' for p in MEMBERS)})")
        for name in MEMBERS:
            arch = copy.deepcopy(generator if name.startswith("G") else discriminator)
            kwargs = arch.setdefault("kwargs", {})
            own = {k.split(".", 1)[1]: v for k, v in widths.items() if k.startswith(name + ".")}
            kwargs["widths"] = {**(kwargs.get("widths") or {}), **own}
            self.add_module(name, build(arch))
        self.in_channels = self.G_A.in_channels

    def members(self):
        return [(name, getattr(self, name)) for name in MEMBERS]

    def widths(self) -> dict[str, int]:
        return {f"{p}.{k}": v for p, m in self.members() for k, v in m.widths().items()}

    def channel_groups(self) -> list[ChannelGroup]:
        out = []
        for p, m in self.members():
            for g in m.channel_groups():
                out.append(ChannelGroup(
                    f"{p}.{g.name}", g.size, g.kind,
                    [replace(r, tensor=f"{p}.{r.tensor}") for r in g.refs],
                    f"{p}.{g.norm}" if g.norm else None, g.min_keep, {**g.meta, "member": p}))
        return out

    def forward(self, x):
        """Both translations of the same image batch (A→B with G_A, B→A with G_B)."""
        return self.G_A(x), self.G_B(x)


def _tiny_pair():
    return CycleGANPair(ResnetGenerator(ngf=4, n_blocks=2).architecture(),
                        PatchGANDiscriminator(input_nc=3, ndf=4, n_layers=2,
                                              norm="instance").architecture())


register_tiny("cyclegan", _tiny_pair)
