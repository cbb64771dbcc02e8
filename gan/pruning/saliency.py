"""Saliency: which channels of a group to keep.  The agents choose how many; saliency picks which."""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from gan.models.base import ZooModel
from gan.models.groups import ChannelGroup

CRITERIA = ("gamma", "l1")


def l1_saliency(model: ZooModel, group: ChannelGroup) -> torch.Tensor:
    """Sum over the group's producing weights of each channel's filter L1 norm."""
    state = model.state_dict()
    score = torch.zeros(group.size)
    for ref in group.refs:
        t = state[ref.tensor]
        if ref.role != "out" or t.dim() < 2:
            continue
        per_pos = t.detach().abs().transpose(0, ref.dim).reshape(t.shape[ref.dim], -1).sum(1)
        score += per_pos[ref.offset: ref.offset + group.size * ref.block].view(
            group.size, ref.block).sum(1).float()
    return score


def gamma_saliency(model: ZooModel, group: ChannelGroup) -> torch.Tensor:
    """|γ| of the norm after the group's producer; filter L1 where the norm has no γ."""
    if group.norm is None:
        return l1_saliency(model, group)
    return model.state_dict()[group.norm].detach().abs().float().clone()


def saliency(model: ZooModel, group: ChannelGroup, criterion: str = "gamma") -> torch.Tensor:
    if criterion == "gamma":
        return gamma_saliency(model, group)
    if criterion == "l1":
        return l1_saliency(model, group)
    raise ValueError(f"unknown saliency {criterion!r}; choose one of {', '.join(CRITERIA)}")


def keep_count(group: ChannelGroup, ratio: float, multiple: int = 1) -> int:
    """Channels kept for a keep ratio: rounded up to ``multiple``, within [min_keep, size]."""
    k = math.ceil(round(ratio * group.size, 6) / multiple) * multiple
    return int(min(group.size, max(group.min_keep, k)))


def spec_from_ratios(model: ZooModel, ratios: Mapping[str, float], criterion: str = "gamma",
                     multiple: int = 1) -> dict[str, list[int]]:
    """Top-k channels by saliency per group, k from the keep ratio (groups not named keep 1.0)."""
    spec = {}
    for g in model.channel_groups():
        k = keep_count(g, float(ratios.get(g.name, 1.0)), multiple)
        order = torch.argsort(saliency(model, g, criterion), descending=True, stable=True)
        spec[g.name] = sorted(order[:k].tolist())
    return spec
