"""Dense exports of PPCD's masked models (``gan.models.ppcd``): the masks go, and so do the channels
whose masks are exactly 0 — a physical prune by the model's ``dead_channel_spec()``.

Kept here, beside ``gan.pruning.physical``, not as methods of the models: removing channels is the
pruning package's job, and the models package does not import it.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from gan.models.base import ZooModel
from gan.models.conditional import ConditionalGenerator
from gan.models.ppcd import PPCDConditionalGenerator, PPCDGenerator
from gan.models.registry import build
from gan.models.resnet import ResnetGenerator
from gan.pruning.physical import prune


def export_dense(model: ZooModel) -> ZooModel:
    """The mask-free dense model equal to ``model``'s forward: ``PPCDGenerator``/``PPCDDiscriminator``
    → the same class with ``use_masks=False`` (eval forward), ``PPCDConditionalGenerator`` → a plain
    ``ConditionalGenerator`` (train and eval mode)."""
    if isinstance(model, PPCDConditionalGenerator):
        return _dense_conditional(model)
    return _dense_masked(model)


def _dense_masked(model) -> ZooModel:
    if not model.use_masks:
        return copy.deepcopy(model)
    pruned = prune(model, model.dead_channel_spec())
    with torch.no_grad():
        for name, m in pruned.mask_parameters().items():
            conv, norm = pruned._neighbours(name)
            if model.mask_after == "norm" and getattr(norm, "weight", None) is not None:
                targets = [(norm.weight, 0), (norm.bias, 0)]
            else:
                dim = 1 if isinstance(conv, nn.ConvTranspose2d) else 0
                targets = [(conv.weight, dim), (conv.bias, 0)]
            for t, dim in targets:
                if t is not None:
                    shape = [1] * t.dim()
                    shape[dim] = -1
                    t.mul_(m.view(shape))
    arch = pruned.architecture()
    arch["kwargs"]["use_masks"] = False
    dense = build(arch)
    dense.load_state_dict({k: v for k, v in pruned.state_dict().items() if k not in pruned.mask_parameters()})
    return dense.train(model.training)


def _dense_conditional(model: PPCDConditionalGenerator) -> ConditionalGenerator:
    p = prune(model, model.dead_channel_spec())
    with torch.no_grad():
        m = p.fc_mask.mask
        p.fc.weight.mul_(m.repeat_interleave(16)[:, None])
        p.fc.bias.mul_(m.repeat_interleave(16))
        for blk in p.blocks:
            for mask, cbn in ((blk.mask_in, blk.cbn1), (blk.mask1, blk.cbn2)):
                cbn.gamma.weight.mul_(mask.mask[None])
                cbn.beta.weight.mul_(mask.mask[None])
            for mask, conv in ((blk.mask2, blk.conv2), (blk.mask_skip, blk.skip)):
                conv.weight.mul_(mask.mask[:, None, None, None])
                conv.bias.mul_(mask.mask)
        p.bn.weight.mul_(p.mask_out.mask)
        p.bn.bias.mul_(p.mask_out.mask)
    arch = p.architecture()
    dense = ConditionalGenerator(**arch["kwargs"])
    dense.load_state_dict({k: v for k, v in p.state_dict().items() if k not in p.mask_parameters()})
    return dense.train(model.training)


def export_plain(model: ZooModel) -> ZooModel:
    """The dense export in the teacher's class: ``PPCDGenerator`` → ``ResnetGenerator`` (same state
    names once the masks are gone), ``PPCDConditionalGenerator`` → ``ConditionalGenerator``."""
    dense = export_dense(model)
    if isinstance(dense, PPCDGenerator):
        kw = dense.architecture()["kwargs"]
        plain = ResnetGenerator(input_nc=kw["input_nc"], output_nc=kw["output_nc"], ngf=kw["ngf"],
                                n_blocks=kw["n_blocks"], norm=kw["norm"], widths=kw["widths"])
        plain.load_state_dict(dense.state_dict())
        return plain.train(dense.training)
    return dense
