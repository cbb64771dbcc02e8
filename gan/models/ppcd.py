"""PPCD-style prunable nets (docs/methods.md, "PPCD", UNVERIFIED design): every conv of the
ResNet-style generator and of the PatchGAN-like discriminator is followed by a learnable ``ChannelMask``.

The mask params are "out" refs of their channel group, so ``prune`` slices them like any other
channel-local tensor.  ``gan.pruning.masked.export_dense`` removes the masks: channels whose masks
are all exactly 0 are physically dropped, surviving mask values are folded into the preceding conv
(weight·m, bias·m) and the model is rebuilt with ``use_masks=False`` (no mask modules, no mask params).

Placement (``mask_after``): "conv" (default: conv → mask → norm) or "norm" (conv → norm → mask →
act; folded into the norm's γ, β).  Caveat of "conv": a norm right after the mask is scale-invariant, so
the mask's magnitude barely changes the output (only 0 vs non-0 matters) and a zeroed channel emits
act(Norm(0)) — 0 for affine-free IN (the default here) but β-like constants for affine norms/BN, so
the export drops a zero-mask channel only where Norm(0) is exactly 0 there (eval mode) and keeps the
others (their folded weights are 0): it stays exact either way.  "norm" has neither issue
but needs an affine norm (or none) to fold into.

Naming convention used by the fold: a mask ``P.mask{s}`` follows conv ``P.conv{s}`` / norm ``P.norm{s}``.

``PPCDConditionalGenerator``: the class-conditional generator (PPCD-GAN's setting) with masks after its
conditional BNs and after the convs feeding each residual sum; it exports to a plain
``ConditionalGenerator``.  ``from_teacher`` turns a ResNet / conditional teacher into its masked copy
(all masks 1, same forward); ``gan.pruning.masked.export_plain`` exports back to the teacher's class.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from gan.models.base import ZooModel
from gan.models.conditional import ConditionalGenerator, GBlock
from gan.models.layers import conv_bias, init_weights, make_norm
from gan.models.registry import register, register_tiny
from gan.models.patchgan import patchgan_groups
from gan.models.resnet import ConvNormAct, ResidualTrunk, ResnetGenerator
from gan.models.groups import ChannelGroup, ChannelRef, gamma_name, in_refs, out_refs

MASK_AFTER = ("conv", "norm")


class ChannelMask(nn.Module):
    """Learnable per-channel gate m_c (init 1): x ↦ x·m."""

    def __init__(self, channels: int):
        super().__init__()
        self.mask = nn.Parameter(torch.ones(channels))

    def forward(self, x):
        return x * self.mask.view(1, -1, 1, 1)


def _check_mask_after(mask_after: str, norm: str) -> None:
    if mask_after not in MASK_AFTER:
        raise ValueError(f"unknown mask_after {mask_after!r}; choose one of {', '.join(MASK_AFTER)}")
    if mask_after == "norm" and norm == "instance":
        raise ValueError('mask_after="norm" needs an affine norm to fold into; use instance_affine/batch')


def _gate(h, mask, norm, mask_after):
    return norm(mask(h)) if mask_after == "conv" else mask(norm(h))


class MaskedConvNormAct(ConvNormAct):
    """[pad] → conv → mask → norm → act (or conv → norm → mask → act with ``mask_after="norm"``)."""

    def __init__(self, *args, use_masks=True, mask_after="conv", **kwargs):
        super().__init__(*args, **kwargs)
        self.mask = ChannelMask(self.conv.out_channels) if use_masks else nn.Identity()
        self.mask_after = mask_after

    def forward(self, x):
        return self.act(_gate(self.conv(self.pad(x)), self.mask, self.norm, self.mask_after))


class PPResBlock(nn.Module):
    """PP-Res: ResNet block whose two convs are each followed by a mask."""

    def __init__(self, res, inner, norm, use_masks=True, mask_after="conv"):
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv1 = nn.Conv2d(res, inner, 3, bias=conv_bias(norm))
        self.mask1 = ChannelMask(inner) if use_masks else nn.Identity()
        self.norm1 = make_norm(norm, inner)
        self.conv2 = nn.Conv2d(inner, res, 3, bias=conv_bias(norm))
        self.mask2 = ChannelMask(res) if use_masks else nn.Identity()
        self.norm2 = make_norm(norm, res)
        self.mask_after = mask_after

    def forward(self, x):
        h = torch.relu(_gate(self.conv1(self.pad(x)), self.mask1, self.norm1, self.mask_after))
        return x + _gate(self.conv2(self.pad(h)), self.mask2, self.norm2, self.mask_after)


class _Masked(ZooModel):
    """Mask bookkeeping shared by the PPCD generator and discriminator."""

    def _mask_refs(self, *masks: str) -> list[ChannelRef]:
        return [ChannelRef(f"{m}.mask", 0) for m in masks] if self.use_masks else []

    def mask_parameters(self) -> dict[str, nn.Parameter]:
        """State name → mask parameter, for the progressive-pruning schedule and its L1 penalty."""
        return {f"{n}.mask": m.mask for n, m in self.named_modules() if isinstance(m, ChannelMask)}

    def _neighbours(self, mask_param: str) -> tuple[nn.Module, nn.Module]:
        """The conv before and the norm after mask ``P.mask{s}.mask`` (naming convention above)."""
        prefix, _, last = mask_param.removesuffix(".mask").rpartition(".")
        suffix = last.removeprefix("mask")
        p = prefix + "." if prefix else ""
        return self.get_submodule(f"{p}conv{suffix}"), self.get_submodule(f"{p}norm{suffix}")

    def _zero_kept_by_norm(self, mask_param: str) -> torch.Tensor:
        """Channels whose output is exactly 0 when the mask is 0 (eval mode), so they may be dropped."""
        _, norm = self._neighbours(mask_param)
        c = self.state_dict()[mask_param].numel()
        if self.mask_after == "norm":
            return torch.ones(c, dtype=torch.bool)
        with torch.no_grad():
            z = copy.deepcopy(norm).eval()(torch.zeros(1, c, 2, 2))
        return (z == 0).flatten(1).all(1)

    def dead_channel_spec(self) -> dict[str, list[int]]:
        """Per group, the channels to keep: all but those whose every mask is 0 and droppable exactly."""
        state, names, spec = self.state_dict(), self.mask_parameters(), {}
        for g in self.channel_groups():
            masks = [r.tensor for r in g.refs if r.tensor in names]
            dead = torch.ones(g.size, dtype=torch.bool)
            for m in masks:
                dead &= (state[m] == 0) & self._zero_kept_by_norm(m)
            keep = (~dead).nonzero().flatten().tolist()
            spec[g.name] = keep if len(keep) >= g.min_keep else list(range(g.min_keep))
        return spec



@register
class PPCDGenerator(ResidualTrunk, _Masked):
    """``ResnetGenerator`` layout with a mask after the stem/down/block/up convs; head unmasked."""

    def __init__(self, input_nc: int = 3, output_nc: int = 3, ngf: int = 64, n_blocks: int = 9,
                 norm: str = "instance", mask_after: str = "conv", use_masks: bool = True,
                 widths: dict | None = None):
        super().__init__()
        self._record_arguments(locals())
        _check_mask_after(mask_after, norm)
        w = {"stem": ngf, "down1": 2 * ngf, "res": 4 * ngf, "up1": 2 * ngf, "up2": ngf}
        w.update({f"inner_{i + 1}": 4 * ngf for i in range(n_blocks)})
        w = self._set_widths(w, widths)
        self.in_channels, self.n_blocks, self.norm_kind = input_nc, n_blocks, norm
        self.use_masks, self.mask_after = use_masks, mask_after
        mk = {"norm": norm, "use_masks": use_masks, "mask_after": mask_after}
        self.stem = MaskedConvNormAct(input_nc, w["stem"], 7, reflect_pad=3, **mk)
        self.down1 = MaskedConvNormAct(w["stem"], w["down1"], 3, 2, 1, **mk)
        self.down2 = MaskedConvNormAct(w["down1"], w["res"], 3, 2, 1, **mk)
        self.blocks = nn.ModuleList(PPResBlock(w["res"], w[f"inner_{i + 1}"], norm, use_masks,
                                               mask_after) for i in range(n_blocks))
        self.up1 = MaskedConvNormAct(w["res"], w["up1"], 3, 2, 1, transposed=True, output_padding=1,
                                     **mk)
        self.up2 = MaskedConvNormAct(w["up1"], w["up2"], 3, 2, 1, transposed=True, output_padding=1,
                                     **mk)
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(w["up2"], output_nc, 7),
                                  nn.Tanh())
        init_weights(self)

    def _producer_refs(self, layer: str) -> list:
        return super()._producer_refs(layer) + self._mask_refs(f"{layer}.mask")

    def channel_groups(self) -> list[ChannelGroup]:
        w, (g, ups) = self._widths, self._layer_groups()
        res = self._producer_refs("down2") + in_refs(self, "up1.conv")
        for i in range(self.n_blocks):
            b = f"blocks.{i}"
            res += (in_refs(self, f"{b}.conv1") + out_refs(self, f"{b}.conv2", f"{b}.norm2")
                    + self._mask_refs(f"{b}.mask2"))
        g.append(ChannelGroup("res", w["res"], "res", res, gamma_name(self, "down2.norm"),
                              meta={"kernel": 3, "stride": 2}))
        for i in range(self.n_blocks):
            b = f"blocks.{i}"
            refs = (out_refs(self, f"{b}.conv1", f"{b}.norm1") + self._mask_refs(f"{b}.mask1")
                    + in_refs(self, f"{b}.conv2"))
            g.append(ChannelGroup(f"inner_{i + 1}", w[f"inner_{i + 1}"], "inner", refs,
                                  gamma_name(self, f"{b}.norm1"), meta={"kernel": 3, "stride": 1}))
        return g + ups


@register
class PPCDDiscriminator(_Masked):
    """PatchGAN layout with a mask after each hidden conv; the logit conv ``head`` is fixed."""

    def __init__(self, input_nc: int = 6, ndf: int = 64, n_layers: int = 3, norm: str = "instance",
                 mask_after: str = "conv", use_masks: bool = True, widths: dict | None = None):
        super().__init__()
        self._record_arguments(locals())
        _check_mask_after(mask_after, norm)
        k = n_layers + 1
        w = {f"layer{i}": ndf * min(2 ** (i - 1), 8) for i in range(1, k + 1)}
        w = self._set_widths(w, widths)
        self.in_channels, self.n_layers, self.norm_kind = input_nc, n_layers, norm
        self.use_masks, self.mask_after = use_masks, mask_after
        cins = [input_nc] + [w[f"layer{i}"] for i in range(1, k)]
        # pix2pix: the first conv has a bias and no norm
        self.layers = nn.ModuleList(
            MaskedConvNormAct(cins[i], w[f"layer{i + 1}"], 4, 2 if i < k - 1 else 1, 1,
                              norm="none" if i == 0 else norm, act="lrelu", use_masks=use_masks,
                              mask_after=mask_after) for i in range(k))
        self.head = nn.Conv2d(w[f"layer{k}"], 1, 4, 1, 1)
        init_weights(self)

    def features(self, x) -> torch.Tensor:
        """Penultimate activation (input of the logit conv)."""
        for layer in self.layers:
            x = layer(x)
        return x

    def forward(self, x):
        return self.head(self.features(x))

    def channel_groups(self) -> list[ChannelGroup]:
        return patchgan_groups(self, lambda i: f"layers.{i}.conv", lambda i: f"layers.{i}.norm",
                               lambda i: self._mask_refs(f"layers.{i}.mask"))


register_tiny("ppcd_generator", lambda: PPCDGenerator(ngf=8, n_blocks=2))
register_tiny("ppcd_generator_bn_postnorm",
              lambda: PPCDGenerator(ngf=8, n_blocks=2, norm="batch", mask_after="norm"))
register_tiny("ppcd_discriminator", lambda: PPCDDiscriminator(input_nc=3, ndf=8, n_layers=2))


# ------------------------------------------------------------------------------ class-conditional

class PPGBlock(GBlock):
    """GBlock with PP-Res masks, placed where a zero mask silences the channel exactly:

    ``mask_in`` after CBN1 (the block's *input* channels: it belongs to the group that wrote them, so
    that conv1 reads relu(0) = 0 from a dropped channel instead of BN(0) ≠ 0), ``mask1`` after CBN2
    (group ``block{i}.inner``), ``mask2`` after conv2 and ``mask_skip`` after the skip conv (group
    ``block{i}.out``: the two are summed).  After-norm masks fold into the CBN embeddings γ(y), β(y)."""

    def __init__(self, cin: int, inner: int, cout: int, num_classes: int):
        super().__init__(cin, inner, cout, num_classes)
        self.mask_in, self.mask1 = ChannelMask(cin), ChannelMask(inner)
        self.mask2, self.mask_skip = ChannelMask(cout), ChannelMask(cout)

    def forward(self, x, y):
        h = F.interpolate(torch.relu(self.mask_in(self.cbn1(x, y))), scale_factor=2, mode="nearest")
        h = self.mask2(self.conv2(torch.relu(self.mask1(self.cbn2(self.conv1(h), y)))))
        return h + self.mask_skip(self.skip(F.interpolate(x, scale_factor=2, mode="nearest")))


@register
class PPCDConditionalGenerator(ConditionalGenerator, _Masked):
    """``ConditionalGenerator`` with learnable channel masks (``PPGBlock`` + ``fc_mask`` after the z
    projection + ``mask_out`` after the final BN); every mask is an "out" ref of its group, all masks
    of a group zero at channel c ⇒ channel c is exactly dead.  ``gan.pruning.masked.export_dense``
    returns a plain ``ConditionalGenerator`` (the teacher's class), masks dropped or folded."""

    block_cls = PPGBlock
    use_masks = True
    mask_after = "norm"

    def __init__(self, z_dim: int = 64, num_classes: int = 10, ngf: int = 32, img_size: int = 32,
                 out_channels: int = 3, widths: dict | None = None):
        super().__init__(z_dim, num_classes, ngf, img_size, out_channels, widths)  # records our kwargs
        self.fc_mask = ChannelMask(self._widths["fc"])
        self.mask_out = ChannelMask(self._widths[f"block{self.n_blocks}.out"])

    def _stem(self, z):
        return self.fc_mask(super()._stem(z))

    def _head(self, h):
        return torch.tanh(self.conv_out(torch.relu(self.mask_out(self.bn(h)))))

    def _group_masks(self) -> dict[str, list[str]]:
        """Group → the modules of its masks (producer side and reader side)."""
        n, masks = self.n_blocks, {"fc": ["fc_mask", "blocks.0.mask_in"]}
        for i in range(1, n + 1):
            b = f"blocks.{i - 1}"
            masks[f"block{i}.inner"] = [f"{b}.mask1"]
            masks[f"block{i}.out"] = [f"{b}.mask2", f"{b}.mask_skip",
                                      f"blocks.{i}.mask_in" if i < n else "mask_out"]
        return masks

    def channel_groups(self) -> list[ChannelGroup]:
        groups, masks = super().channel_groups(), self._group_masks()
        for g in groups:
            g.refs = g.refs + self._mask_refs(*masks[g.name])
        return groups

    def dead_channel_spec(self) -> dict[str, list[int]]:
        """Per group, every channel but those whose masks are all exactly 0 (always exact to drop here)."""
        state, spec = self.state_dict(), {}
        for g in self.channel_groups():
            dead = torch.stack([state[r.tensor] == 0 for r in g.refs if r.tensor.endswith(".mask")]).all(0)
            keep = (~dead).nonzero().flatten().tolist()
            spec[g.name] = keep if len(keep) >= g.min_keep else list(range(g.min_keep))
        return spec



# ------------------------------------------------------------------------------ teacher → student

def from_teacher(teacher: ZooModel, convert_norm: bool = True) -> ZooModel:
    """Masked PPCD copy of ``teacher`` (its widths and weights, every mask 1): same forward.

    ``ResnetGenerator`` → ``PPCDGenerator``: with an affine norm (instance_affine, batch) or none the
    masks go after the norm (``mask_after="norm"``: the mask scales the channel's output and gets a
    real gradient).  With the affine-free "instance" norm, ``convert_norm`` (default) turns it into
    instance_affine with γ = 1, β = 0 — the same function — so the masks can sit after the norm too;
    ``convert_norm=False`` keeps "instance" with the masks after the conv (the "conv" placement; the IN
    right after undoes the mask's scale, so only 0 vs non-0 matters and the L1 penalty alone orders
    the channels).  The student trains without the teacher's dropout (eval forward equal).
    ``ConditionalGenerator`` → ``PPCDConditionalGenerator``."""
    kw = teacher.architecture()["kwargs"]
    if type(teacher) is ConditionalGenerator:
        student = PPCDConditionalGenerator(**kw)
    elif isinstance(teacher, ResnetGenerator):
        norm = kw["norm"]
        if norm == "instance" and convert_norm:
            norm = "instance_affine"
        mask_after = "conv" if norm == "instance" else "norm"
        student = PPCDGenerator(input_nc=kw["input_nc"], output_nc=kw["output_nc"], ngf=kw["ngf"],
                                n_blocks=kw["n_blocks"], norm=norm, mask_after=mask_after,
                                widths=kw["widths"])
    else:
        raise ValueError(f"PPCD starts from a ResnetGenerator or ConditionalGenerator teacher, got "
                         f"{type(teacher).__name__}; train the teacher with one of those")
    state, source = student.state_dict(), teacher.state_dict()
    extra = set(state) - set(source)
    with torch.no_grad():
        for k in extra:  # masks = 1; converted IN: γ = 1, β = 0 reproduce the affine-free norm
            if k.endswith(".mask") or (".norm" in k and k.endswith(".weight")):
                state[k].fill_(1.0)
            elif ".norm" in k and k.endswith(".bias") and kw.get("norm") == "instance":
                state[k].zero_()
            else:
                raise ValueError(f"{type(teacher).__name__} → {type(student).__name__}: the teacher has no "
                                 f"{k!r}; its layout is not one PPCD knows")
    unknown = set(source) - set(state)
    if unknown:
        raise ValueError(f"{type(student).__name__} has no place for the teacher's {sorted(unknown)[:3]}; "
                         "its layout is not one PPCD knows")
    student.load_state_dict({**state, **{k: v.clone() for k, v in source.items()}})
    return student.train(teacher.training)


register_tiny("ppcd_conditional_generator",
              lambda: PPCDConditionalGenerator(z_dim=16, num_classes=4, ngf=8, img_size=32))
