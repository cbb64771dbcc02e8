"""The reference pix2pix / CycleGAN implementation's state-dict layout, mapped onto our zoo.

The reference (junyanz/pytorch-CycleGAN-and-pix2pix, ``models/networks.py``) builds its networks as
one ``nn.Sequential`` called ``model``, so its keys are layer indices: ``model.1.weight`` is the
ResNet stem conv, ``model.10.conv_block.5.weight`` a residual block's second conv (``.6`` when the
block has dropout), the U-Net nests one ``UnetSkipConnectionBlock`` per level
(``model.model.1.model.3.model.1.weight`` is the level-3 encoder conv), the PatchGAN
(``NLayerDiscriminator``) is ``model.0 … model.{3n+2}``.  Here each zoo module is given the
reference prefix it corresponds to (``*_prefixes``), so a file's tensors land in ``ResnetGenerator``
/ ``UnetGenerator`` / ``PatchGANDiscriminator`` by name; widths (ngf, ndf), channel counts and the
PatchGAN's depth are read from the file; every tensor's shape is checked.

Released files still carry ``running_mean``/``running_var``/``num_batches_tracked`` on their
InstanceNorm layers (an old torch default); the reference drops them when loading and so do we.

``reference_forward`` computes the reference network's function straight from the file's tensors in
the reference's layer order (reflection pads, in-place LeakyReLU on the U-Net skips, final Tanh),
independently of our modules: ``ganprune import-teacher`` checks the imported model against it.
Where our zoo differs: it clamps inputs to [-1, 1] (the image range), so the two agree on images;
the check feeds images.  docs/import_teacher.md has the full mapping.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from gan.models.patchgan import PatchGANDiscriminator
from gan.models.resnet import ResnetGenerator
from gan.models.unet import UnetGenerator

#: --arch → (family, residual blocks or U-Net downsamplings), as the reference's ``define_G``
ARCHS = {"resnet_9blocks": ("resnet", 9), "resnet_6blocks": ("resnet", 6),
         "unet_256": ("unet", 8), "unet_128": ("unet", 7)}
NORMS = ("instance", "batch")
LEGACY_STATS = ("running_mean", "running_var", "num_batches_tracked")
DROPOUT = 0.5  # the reference's nn.Dropout(0.5)


class ReferenceLayoutError(ValueError):
    """A state dict that does not fit the requested reference network (one line: key, both shapes, fix)."""


@dataclass
class Imported:
    """A zoo model holding a reference file's weights, and what the import found."""

    model: nn.Module
    info: dict
    dropped: list[str] = field(default_factory=list)  # legacy InstanceNorm statistics left out


def _flags(arch: str | None, norm: str, dropout: bool) -> str:
    return " ".join(x for x in (f"--arch {arch}" if arch else "", f"--norm {norm}",
                                "--dropout" if dropout else "") if x)


def _shape(t) -> str:
    return "no such key" if t is None else f"shape {list(t.shape)}"


# ------------------------------------------------------------------------------- prefixes

def resnet_prefixes(n_blocks: int, dropout: bool) -> dict[str, str]:
    """Our ``ResnetGenerator`` module → the reference ``ResnetGenerator`` module (``model.N``)."""
    d, n = int(bool(dropout)), n_blocks
    p = {"stem.conv": "model.1", "stem.norm": "model.2", "down1.conv": "model.4", "down1.norm": "model.5",
         "down2.conv": "model.7", "down2.norm": "model.8", "up1.conv": f"model.{10 + n}",
         "up1.norm": f"model.{11 + n}", "up2.conv": f"model.{13 + n}", "up2.norm": f"model.{14 + n}",
         "head.1": f"model.{17 + n}"}
    for i in range(n):  # conv_block: pad, conv, norm, ReLU, [Dropout], pad, conv, norm
        b = f"model.{10 + i}.conv_block"
        p.update({f"blocks.{i}.conv1": f"{b}.1", f"blocks.{i}.norm1": f"{b}.2",
                  f"blocks.{i}.conv2": f"{b}.{5 + d}", f"blocks.{i}.norm2": f"{b}.{6 + d}"})
    return p


def unet_level_prefix(level: int) -> str:
    """The reference prefix of U-Net level ``level`` (1 = outermost): each level's block sits at index
    1 (outermost: [downconv, block, ReLU, upconv, Tanh]) or 3 ([LReLU, downconv, norm, block, …]) of
    its parent's ``model``."""
    p = "model.model"
    for i in range(1, level):
        p += ".1.model" if i == 1 else ".3.model"
    return p


def unet_prefixes(num_downs: int) -> dict[str, str]:
    """Our ``UnetGenerator`` (``down.i``/``up.i`` = level i+1) → the reference's nested blocks.

    outermost [downconv, sub, ReLU, upconv, Tanh]; innermost [LReLU, downconv, ReLU, upconv, upnorm];
    the others [LReLU, downconv, downnorm, sub, ReLU, upconv, upnorm, (Dropout)]."""
    p, n = {}, num_downs
    for i in range(1, n + 1):
        b, j = unet_level_prefix(i), i - 1
        if i == 1:
            p.update({f"down.{j}.conv": f"{b}.0", f"up.{j}.conv": f"{b}.3"})
        elif i == n:
            p.update({f"down.{j}.conv": f"{b}.1", f"up.{j}.conv": f"{b}.3", f"up.{j}.norm": f"{b}.4"})
        else:
            p.update({f"down.{j}.conv": f"{b}.1", f"down.{j}.norm": f"{b}.2", f"up.{j}.conv": f"{b}.5",
                      f"up.{j}.norm": f"{b}.6"})
    return p


def patchgan_prefixes(n_layers: int) -> dict[str, str]:
    """Our ``PatchGANDiscriminator`` → ``NLayerDiscriminator``: [conv, LReLU] then per layer
    [conv, norm, LReLU], then the 1-channel conv."""
    p = {"convs.0": "model.0", "head": f"model.{3 * n_layers + 2}"}
    for k in range(1, n_layers + 1):
        p.update({f"convs.{k}": f"model.{3 * k - 1}", f"norms.{k}": f"model.{3 * k}"})
    return p


# ------------------------------------------------------------------------------- building

class _Misfit(ReferenceLayoutError):
    """A misfit found while reading the widths; the caller appends the fix."""


def _need(state: dict, key: str, what: str, flags: str, source: str, dims: int) -> torch.Size:
    t = state.get(key)
    if t is None or t.dim() != dims:
        raise _Misfit(f"{source} does not fit {flags}: key {key}: the file has {_shape(t)}, {what} "
                      f"expects a {dims}-d conv weight")
    return t.shape


def _dim(state: dict, key: str, axis: int, default: int) -> int:
    """``state[key].shape[axis]``, or ``default`` when the file has no such 4-d tensor (the shape check
    then names the first key that does not fit)."""
    t = state.get(key)
    return int(t.shape[axis]) if t is not None and t.dim() == 4 else default


def _build_generator(state: dict, arch: str, norm: str, dropout: bool, source: str, meta: bool = False):
    family, depth = ARCHS[arch]
    flags = _flags(arch, norm, dropout)
    if family == "resnet":
        stem = _need(state, "model.1.weight", arch, flags, source, 4)
        out_nc = _dim(state, f"model.{17 + depth}.weight", 0, int(stem[1]))
        kw = dict(input_nc=int(stem[1]), output_nc=out_nc, ngf=int(stem[0]), n_blocks=depth, norm=norm,
                  dropout=DROPOUT if dropout else 0.0)
        cls, prefixes, info = ResnetGenerator, resnet_prefixes(depth, dropout), {"n_blocks": depth}
    else:
        outer = unet_level_prefix(1)
        down = _need(state, f"{outer}.0.weight", arch, flags, source, 4)
        out_nc = _dim(state, f"{outer}.3.weight", 1, int(down[1]))  # ConvTranspose: [in, out, k, k]
        kw = dict(input_nc=int(down[1]), output_nc=out_nc, ngf=int(down[0]), num_downs=depth, norm=norm,
                  dropout=DROPOUT if dropout else 0.0)
        cls, prefixes, info = UnetGenerator, unet_prefixes(depth), {"num_downs": depth}
    with torch.device("meta") if meta else torch.device("cpu"):
        model = cls(**kw)
    info = {"arch": arch, "class": cls.__name__, "norm": norm, "dropout": bool(dropout),
            "input_nc": kw["input_nc"], "output_nc": kw["output_nc"], "ngf": kw["ngf"], **info}
    return model, prefixes, info


def _build_discriminator(state: dict, norm: str, source: str, meta: bool = False):
    flags = f"an NLayerDiscriminator with --norm {norm}"
    first = _need(state, "model.0.weight", "an NLayerDiscriminator", flags, source, 4)
    idx = sorted({int(k.split(".")[1]) for k in state if k.startswith("model.") and k.split(".")[1].isdigit()})
    last = idx[-1] if idx else 0
    if (last - 2) % 3 or last < 5:
        raise _Misfit(f"{source} does not fit {flags}: its last layer is model.{last}, an "
                                   "NLayerDiscriminator ends at model.<3·n_layers + 2> (n_layers ≥ 1)")
    n_layers = (last - 2) // 3
    with torch.device("meta") if meta else torch.device("cpu"):
        model = PatchGANDiscriminator(input_nc=int(first[1]), ndf=int(first[0]), n_layers=n_layers, norm=norm)
    info = {"class": "PatchGANDiscriminator", "norm": norm, "input_nc": int(first[1]), "ndf": int(first[0]),
            "n_layers": n_layers}
    return model, patchgan_prefixes(n_layers), info


def _expected(model: nn.Module, prefixes: dict[str, str]) -> tuple[dict, list[str]]:
    """Reference key → our key for every tensor of ``model``, and the reference prefixes of its
    InstanceNorm layers (whose legacy statistics are dropped)."""
    mods = dict(model.named_modules())
    ours = {}
    for k in model.state_dict():
        mod, _, leaf = k.rpartition(".")
        if mod not in prefixes:
            raise AssertionError(f"no reference prefix for {mod}")  # a zoo change the mapping missed
        ours[f"{prefixes[mod]}.{leaf}"] = k
    inorm = [prefixes[m] for m, mod in mods.items() if m in prefixes and isinstance(mod, nn.InstanceNorm2d)]
    return ours, inorm


def _problem(state: dict, model: nn.Module, prefixes: dict[str, str]) -> tuple[str | None, dict, list[str]]:
    """(the first problem or None, reference key → our key, dropped legacy keys)."""
    ours, inorm = _expected(model, prefixes)
    own = model.state_dict()
    for ref, k in ours.items():
        t = state.get(ref)
        if t is None and ref.endswith(".num_batches_tracked"):
            continue  # files from before torch 0.4.1 have none; it does not enter the eval forward
        if t is None or tuple(t.shape) != tuple(own[k].shape):
            return f"key {ref}: the file has {_shape(t)}, {{what}} expects {_shape(own[k])}", ours, []
    legacy = {f"{p}.{s}" for p in inorm for s in LEGACY_STATS}
    dropped = sorted(k for k in state if k in legacy)
    unknown = [k for k in state if k not in ours and k not in legacy]
    if unknown:
        return (f"{len(unknown)} key(s) {{what}} does not have, first {unknown[0]} ({_shape(state[unknown[0]])})",
                ours, dropped)
    return None, ours, dropped


def _fix_hint(state: dict, source: str) -> str:
    """'the file fits …; pass those' when another --arch/--norm/--dropout fits (tried on the meta
    device, no weights made), else the generic fix."""
    for arch in ARCHS:
        for norm in NORMS:
            for dropout in (False, True):
                if dropout and ARCHS[arch][0] == "unet":
                    continue  # the U-Net's dropout holds no tensors: it cannot be told from the file
                try:
                    model, prefixes, _ = _build_generator(state, arch, norm, dropout, source, meta=True)
                except (ReferenceLayoutError, ValueError, RuntimeError):
                    continue
                if _problem(state, model, prefixes)[0] is None:
                    return f"the file fits {_flags(arch, norm, dropout)}; pass those"
    return "pass the --arch, --norm and --dropout the network was trained with"


def _load(state: dict, model: nn.Module, ours: dict) -> None:
    own = model.state_dict()
    mapped = {k: state[ref].to(own[k].dtype) for ref, k in ours.items() if ref in state}
    for k, v in own.items():
        mapped.setdefault(k, v)  # only num_batches_tracked can be absent (see _problem)
    model.load_state_dict(mapped, strict=True)


def import_generator(state: dict, arch: str, norm: str, dropout: bool = False,
                     source: str = "the file") -> Imported:
    """``state`` (a reference ``define_G(netG=arch, norm=norm, use_dropout=dropout)`` state dict) as
    our zoo generator, in eval mode.  Raises ``ReferenceLayoutError`` naming the first key that does
    not fit (and the flags that would fit, when some do), or the first unknown key."""
    if arch not in ARCHS:
        raise ReferenceLayoutError(f"unknown --arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if norm not in NORMS:
        raise ReferenceLayoutError(f"unknown --norm {norm!r}; choose one of {', '.join(NORMS)}")
    try:
        model, prefixes, info = _build_generator(state, arch, norm, dropout, source)
    except _Misfit as e:
        raise ReferenceLayoutError(f"{e}; {_fix_hint(state, source)}") from None
    problem, ours, dropped = _problem(state, model, prefixes)
    if problem:
        flags = _flags(arch, norm, dropout)
        raise ReferenceLayoutError(f"{source} does not fit {flags}: {problem.format(what=arch)}; "
                                   f"{_fix_hint(state, source)}")
    _load(state, model, ours)
    return Imported(model.eval(), {**info, "dropped_legacy_keys": len(dropped)}, dropped)


def import_discriminator(state: dict, norm: str, source: str = "the file") -> Imported:
    """``state`` (a reference ``NLayerDiscriminator`` with ``norm``) as our ``PatchGANDiscriminator``."""
    fix = "pass the --norm it was trained with or drop --discriminator to warm one up"
    try:
        model, prefixes, info = _build_discriminator(state, norm, source)
    except _Misfit as e:
        raise ReferenceLayoutError(f"{e}; {fix}") from None
    problem, ours, dropped = _problem(state, model, prefixes)
    if problem:
        raise ReferenceLayoutError(f"{source} does not fit an NLayerDiscriminator with --norm {norm}: "
                                   f"{problem.format(what='it')}; {fix}")
    _load(state, model, ours)
    return Imported(model.eval(), {**info, "dropped_legacy_keys": len(dropped)}, dropped)


# ------------------------------------------------------------------------------- the reference function

class _Ops:
    """The reference layers as functions over the file's tensors (eval mode: BatchNorm uses its
    running statistics, InstanceNorm the input's, dropout is the identity)."""

    def __init__(self, state: dict, norm: str):
        self.s, self.norm = {k: v.float() for k, v in state.items()}, norm

    def conv(self, h, p, stride=1, padding=0):
        return F.conv2d(h, self.s[f"{p}.weight"], self.s.get(f"{p}.bias"), stride, padding)

    def up(self, h, p, k_pad=1, out_pad=0):
        return F.conv_transpose2d(h, self.s[f"{p}.weight"], self.s.get(f"{p}.bias"), 2, k_pad, out_pad)

    def nrm(self, h, p):
        if self.norm == "batch":
            s = self.s
            return F.batch_norm(h, s[f"{p}.running_mean"], s[f"{p}.running_var"], s[f"{p}.weight"],
                                s[f"{p}.bias"], False, 0.0, 1e-5)
        return F.instance_norm(h, eps=1e-5)


def _reflect(h, n):
    return F.pad(h, (n, n, n, n), mode="reflect")


def _resnet_forward(o: _Ops, n_blocks: int, dropout: bool, x):
    d = int(bool(dropout))
    h = F.relu(o.nrm(o.conv(_reflect(x, 3), "model.1"), "model.2"))
    h = F.relu(o.nrm(o.conv(h, "model.4", 2, 1), "model.5"))
    h = F.relu(o.nrm(o.conv(h, "model.7", 2, 1), "model.8"))
    for i in range(n_blocks):
        b = f"model.{10 + i}.conv_block"
        r = F.relu(o.nrm(o.conv(_reflect(h, 1), f"{b}.1"), f"{b}.2"))
        h = h + o.nrm(o.conv(_reflect(r, 1), f"{b}.{5 + d}"), f"{b}.{6 + d}")
    for c, nm in ((10, 11), (13, 14)):
        h = F.relu(o.nrm(o.up(h, f"model.{c + n_blocks}", 1, 1), f"model.{nm + n_blocks}"))
    return torch.tanh(o.conv(_reflect(h, 3), f"model.{17 + n_blocks}"))


def _unet_forward(o: _Ops, num_downs: int, x):
    def block(level: int, h):
        p = unet_level_prefix(level)
        if level == 1:
            return torch.tanh(o.up(F.relu(block(2, o.conv(h, f"{p}.0", 2, 1))), f"{p}.3"))
        h = F.leaky_relu(h, 0.2)  # in place in the reference: the skip below is LReLU(x), not x
        if level == num_downs:
            y = o.nrm(o.up(F.relu(o.conv(h, f"{p}.1", 2, 1)), f"{p}.3"), f"{p}.4")
        else:
            y = block(level + 1, o.nrm(o.conv(h, f"{p}.1", 2, 1), f"{p}.2"))
            y = o.nrm(o.up(F.relu(y), f"{p}.5"), f"{p}.6")
        return torch.cat([h, y], 1)

    return block(1, x)


def _patchgan_forward(o: _Ops, n_layers: int, x):
    h = F.leaky_relu(o.conv(x, "model.0", 2, 1), 0.2)
    for k in range(1, n_layers + 1):
        h = F.leaky_relu(o.nrm(o.conv(h, f"model.{3 * k - 1}", 2 if k < n_layers else 1, 1), f"model.{3 * k}"), 0.2)
    return o.conv(h, f"model.{3 * n_layers + 2}", 1, 1)


@torch.no_grad()
def reference_forward(state: dict, info: dict, x: torch.Tensor) -> torch.Tensor:
    """The reference network's eval-mode output on ``x``, computed from ``state`` in the reference's
    own layer order (``info``: an ``Imported.info``)."""
    o = _Ops(state, info["norm"])
    if info["class"] == "ResnetGenerator":
        return _resnet_forward(o, info["n_blocks"], info["dropout"], x)
    if info["class"] == "UnetGenerator":
        return _unet_forward(o, info["num_downs"], x)
    return _patchgan_forward(o, info["n_layers"], x)


@torch.no_grad()
def max_abs_difference(imported: Imported, state: dict, x: torch.Tensor) -> float:
    """max |our model(x) − the reference function(x)| (eval mode)."""
    was = imported.model.training
    imported.model.eval()
    ours = imported.model(x)
    imported.model.train(was)
    return float((ours - reference_forward(state, imported.info, x)).abs().max())
