"""Channel groups: the sets of tensor slices that must be kept or removed together.

A group is described only by *where its channels live* in the state dict (tensor, dim, offset,
block).  That one description drives physical pruning, masking, saliency and the RL envs, so a
new model only has to list its groups correctly.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn


@dataclass(frozen=True)
class ChannelRef:
    """Channel ``c`` of a group occupies ``tensor[..., offset + c*block + j, ...]`` (j < block) on ``dim``.

    role "out": the tensor produces the channel or acts on it channel-locally (conv filters, biases,
    norm parameters, depthwise filters, masks).  role "in": the tensor reads the channel (the input
    side of the next conv/linear); zeroing those slices removes the channel's influence (masking).
    """

    tensor: str
    dim: int
    role: str = "out"
    offset: int = 0
    block: int = 1


@dataclass
class ChannelGroup:
    """Coupled channels pruned together.  ``norm`` names the γ tensor used by |γ| saliency."""

    name: str
    size: int
    kind: str
    refs: list[ChannelRef]
    norm: str | None = None
    min_keep: int = 1
    meta: dict = field(default_factory=dict)


def _module(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


def out_refs(model: nn.Module, layer: str, norm: str | None = None) -> list[ChannelRef]:
    """Refs for a layer that *writes* the group (conv, conv-transpose, linear) and its norm."""
    refs: list[ChannelRef] = []
    m = _module(model, layer)
    if isinstance(m, nn.ConvTranspose2d):
        if m.groups != 1:
            raise ValueError(f"{layer}: grouped ConvTranspose2d is not supported")
        refs.append(ChannelRef(f"{layer}.weight", 1))
    elif isinstance(m, (nn.Conv2d, nn.Linear)):
        refs.append(ChannelRef(f"{layer}.weight", 0))
    else:
        raise TypeError(f"{layer}: cannot produce channels from {type(m).__name__}")
    if getattr(m, "bias", None) is not None:
        refs.append(ChannelRef(f"{layer}.bias", 0))
    if norm is not None:
        refs += norm_refs(model, norm)
    return refs


def norm_refs(model: nn.Module, norm: str) -> list[ChannelRef]:
    """Channel-local tensors of a norm layer (affine params and running statistics)."""
    n = _module(model, norm)
    refs = []
    for attr in ("weight", "bias", "running_mean", "running_var"):
        if getattr(n, attr, None) is not None:
            refs.append(ChannelRef(f"{norm}.{attr}", 0))
    return refs


def in_refs(model: nn.Module, layer: str, offset: int = 0, block: int = 1) -> list[ChannelRef]:
    """Refs for a layer that *reads* the group (its input side)."""
    m = _module(model, layer)
    if isinstance(m, nn.ConvTranspose2d):
        return [ChannelRef(f"{layer}.weight", 0, "in", offset, block)]
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        if isinstance(m, nn.Conv2d) and m.groups != 1:
            raise ValueError(f"{layer}: a depthwise conv is channel-local, list it with depthwise_refs")
        return [ChannelRef(f"{layer}.weight", 1, "in", offset, block)]
    if isinstance(m, nn.Embedding):
        return [ChannelRef(f"{layer}.weight", 1, "in", offset, block)]
    raise TypeError(f"{layer}: cannot consume channels with {type(m).__name__}")


def depthwise_refs(model: nn.Module, layer: str, norm: str | None = None) -> list[ChannelRef]:
    """A depthwise conv (groups == channels) maps channel c to channel c: it is channel-local."""
    m = _module(model, layer)
    refs = [ChannelRef(f"{layer}.weight", 0)]
    if m.bias is not None:
        refs.append(ChannelRef(f"{layer}.bias", 0))
    if norm is not None:
        refs += norm_refs(model, norm)
    return refs


def gamma_name(model: nn.Module, norm: str | None) -> str | None:
    """State key of a norm's γ, or None when the norm is affine-free (|γ| saliency unavailable)."""
    if norm is None:
        return None
    return f"{norm}.weight" if getattr(_module(model, norm), "weight", None) is not None else None
