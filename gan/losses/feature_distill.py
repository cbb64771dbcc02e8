"""GAN Compression's intermediate-feature distillation (docs/methods.md, "GAN Compression").

L_distill = Σ_t MSE(f_t(a_t^S), a_t^T) over the four taps of ``ResidualTrunk.features`` (residual
input, blocks n/3, 2n/3, n), with f_t a learnable 1×1 conv (with bias) from the student's width to
the teacher's, and the teacher's activations detached.  The mappings are ``aux_modules`` of
``Pix2PixTrainer`` (their own Adam, stepped with G).

Why the mappings are sliced on their input side: a supernet sub-net has fewer residual channels
than the full net; as GAN Compression does, the mapping reads the first ``C_in`` of its input
columns, ``C_in`` taken from the incoming tensor.  The supernet keeps its most salient channels
first, so those columns are the ones that sub-net has.  A plain pruned student has a fixed width,
equal to the mapping's full input width.

The student's taps are recorded during the trainer's own G forward (the supernet stores them, a
plain student gets forward hooks), so distillation costs no second student forward.

Generators without these taps (the U-Net: no residual trunk): ``has_distill_taps`` is False and the
callers leave the term out — the supernet trains with λ_distill = 0 and the "distill" fine-tune keeps
its L1-to-teacher + GAN terms — and say so (``no_taps_notice``; docs/methods.md, "GAN Compression").
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gan.losses.attention import FeatureTaps, tap_modules
from gan.models.layers import init_weights
from gan.pruning.slicing import skeleton


#: what the taps (``res_in``, ``block{i}``) and the tap forward read: the ``ResidualTrunk`` layout
TRUNK = ("features", "down2", "blocks", "up1", "up2", "head")


def has_distill_taps(model: nn.Module) -> bool:
    """Whether GAN Compression's feature distillation can tap ``model`` (a generator or a supernet):
    a residual trunk (ResNet, CAT's inception G).  A U-Net has no residual blocks to tap, and its
    ``features()`` (bottleneck and decoder outputs) are not the taps GAN Compression distils
    (docs/methods.md, "GAN Compression")."""
    net = getattr(model, "net", model)  # a supernet's full-width generator
    return all(hasattr(net, a) for a in TRUNK)


def no_taps_notice(model: nn.Module, where: str) -> str:
    """The one-line notice a run prints when ``where`` (the supernet, the fine-tune) goes without the
    feature term because ``model`` has no distillation taps."""
    name = type(getattr(model, "net", model)).__name__
    return (f"feature distillation off: {name} has no residual-trunk taps, so {where} uses L1 to the teacher + "
            "GAN loss only (lambda_distill = 0; docs/methods.md, \"GAN Compression\")")


def forward_with_taps(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(output, taps) of a ``ResidualTrunk`` model in one pass: ``features`` then up1 → up2 → head."""
    feats = model.features(x)
    last = f"block{len(model.blocks)}"
    if last not in feats:
        raise ValueError(f"{type(model).__name__}.features gives no {last!r}; distillation needs a residual trunk")
    return model.head(model.up2(model.up1(feats[last]))), feats


def tap_channels(model: nn.Module, size: int = 64) -> dict[str, int]:
    """Channels of each distillation tap, from a forward of ``features`` on the meta device."""
    if not hasattr(model, "features") or not hasattr(model, "architecture"):
        raise ValueError(f"{type(model).__name__} has no features(); feature distillation needs a ResNet-style "
                         "generator (ResnetGenerator, InceptionGenerator)")
    meta = skeleton(model.architecture()).eval()
    with torch.device("meta"), torch.no_grad():
        feats = meta.features(*meta.example_inputs(1, size))
    return {k: int(v.shape[1]) for k, v in feats.items()}


class TapRecorder(FeatureTaps):
    """Taps of a plain student's last training forward (grad enabled), matched to its output: the
    trainer's own G forward serves the distillation, no second ``features`` pass."""

    def __init__(self, model: nn.Module, taps: list[str]):
        known = tap_modules(model)
        unknown = sorted(set(taps) - set(known))
        if unknown:
            raise ValueError(f"{type(model).__name__} has no taps {unknown}; it has {', '.join(known)}")
        super().__init__(model, {t: known[t] for t in taps})
        self.taps, self.out = list(taps), None
        self.handles.append(model.get_submodule("head").register_forward_hook(self._done))

    def _keep(self) -> bool:
        return torch.is_grad_enabled()

    def _done(self, _m, _inp, y):
        self.out = y if torch.is_grad_enabled() else None

    def pop(self, fake: torch.Tensor) -> dict[str, torch.Tensor] | None:
        """The taps of the forward that returned ``fake``; None when another forward ran since."""
        feats, ok = self.store, self.out is fake and set(self.store) == set(self.taps)
        self.store, self.out = {}, None
        return feats if ok else None


def local_input(batch, trainer) -> torch.Tensor:
    """This rank's slice of the batch's input, as ``gan.train.pix2pix.split_batch`` reads it (not
    imported: gan.train imports gan.losses, and a loss importing the trainer back would make a cycle)."""
    return trainer._local(batch["A"] if isinstance(batch, dict) else batch[0])


def student_taps(student, recorder, fake, x):
    """The taps of the forward that made ``fake``; a fresh ``features`` pass when none was recorded."""
    feats = student.pop_taps(fake) if hasattr(student, "pop_taps") else recorder.pop(fake)
    return feats if feats is not None else student.features(x)


def feature_distill(teacher: nn.Module, student: nn.Module, lambda_distill: float = 1.0, size: int = 64):
    """``(extra_g_loss, aux_modules)`` for ``Pix2PixTrainer``: λ_distill·Σ_t MSE(f_t(a_t^S), a_t^T).

    ``student`` is a plain generator of fixed widths or a ``gan.train.supernet.Supernet`` (mappings
    sized for its full width, sliced to the active one).  ``teacher`` is frozen here.
    """
    if not has_distill_taps(teacher):  # callers check first and leave the term out (the module docstring)
        raise ValueError(f"{type(teacher).__name__} has no residual-trunk taps to distil; check has_distill_taps "
                         "first and train without the feature term")
    teacher.eval().requires_grad_(False)
    t_ch = tap_channels(teacher, size)
    full = getattr(student, "net", student)  # a supernet's full-width generator
    s_ch = tap_channels(full, size)
    if set(t_ch) != set(s_ch):
        raise ValueError(f"teacher taps {sorted(t_ch)} != student taps {sorted(s_ch)}; distill a student with "
                         "the teacher's number of residual blocks")

    mappings = nn.ModuleDict({t: nn.Conv2d(s_ch[t], t_ch[t], 1, bias=True) for t in t_ch})
    init_weights(mappings)  # N(0, 0.02), zero bias: the pix2pix / gan-compression init
    recorder = None
    if hasattr(student, "pop_taps"):
        student.record_taps = True
    else:
        recorder = TapRecorder(student, list(t_ch))

    def extra_g(batch, fake, trainer):
        x = local_input(batch, trainer)
        if next(teacher.parameters()).device != x.device:
            teacher.to(x.device)
        with torch.no_grad():
            t_feats = teacher.features(x)
        s_feats = student_taps(trainer.generator, recorder, fake, x)
        loss = fake.new_zeros(())
        for tap, m in mappings.items():
            s = s_feats[tap]
            mapped = F.conv2d(s, m.weight[:, : s.shape[1]], m.bias)
            loss = loss + F.mse_loss(mapped, t_feats[tap])
        return lambda_distill * loss, {"distill": loss.detach()}

    return extra_g, [mappings]
