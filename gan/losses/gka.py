"""Global Kernel Alignment distillation (CAT; docs/methods.md, "CAT").

KA compares the two networks' *batch Gram matrices* instead of the features themselves: it is
invariant to orthogonal transforms and isotropic scaling of either side, so a pruned student's
narrower features are compared with the teacher's without the learnable 1×1 mappings that GAN
Compression needs.  ``gka_hook`` turns it into a ``Pix2PixTrainer`` ``extra_g_loss`` that can be the
whole distillation term (CAT) or be added to another fine-tune objective.
"""
from __future__ import annotations

from typing import Callable

import torch
from gan.losses.feature_distill import TapRecorder, local_input, student_taps


def _gram(x: torch.Tensor, center: bool) -> torch.Tensor:
    """B×B Gram matrix of the per-sample flattened features (X Xᵀ, cheaper than XᵀX for big maps);
    scaled by ||X||_F² first so large activations cannot overflow (KA is scale-invariant)."""
    f = x.reshape(x.shape[0], -1).float()
    f = f / f.norm().clamp_min(1e-12)
    k = f @ f.t()
    if center:  # H K H with H = I − 11ᵀ/B: subtract row and column means, add back the grand mean
        k = k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()
    return k


def kernel_alignment(x: torch.Tensor, y: torch.Tensor, center: bool = False) -> torch.Tensor:
    """KA(X, Y) = ⟨K_X, K_Y⟩_F / (||K_X||_F ||K_Y||_F) ∈ [0, 1] over the batch (dim 0); feature
    shapes may differ.  ``center`` uses the centred Gram matrices (CKA).  Needs batch > 1: with one
    sample KA ≡ 1 and carries no gradient, which would silently switch distillation off."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"kernel_alignment needs the same batch on both sides, got {x.shape[0]} and {y.shape[0]}")
    if x.shape[0] < 2:
        raise ValueError("kernel alignment needs a batch of at least 2 samples per device (with one sample "
                         "KA ≡ 1 and its gradient is 0); raise the batch size")
    kx, ky = _gram(x, center), _gram(y, center)
    return (kx * ky).sum() / (kx.norm() * ky.norm()).clamp_min(1e-12)


def _taps(model, x: torch.Tensor) -> dict[str, torch.Tensor]:
    if not hasattr(model, "features"):
        raise TypeError(f"{type(model).__name__} has no features(x): GKA needs a ResidualTrunk generator "
                        "(ResNet, CAT inception, PPCD)")
    return model.features(x)


def gka_hook(teacher, lambda_distill: float = 1.0, center: bool = False,
             points: list[str] | None = None) -> Callable:
    """``extra_g_loss(batch, fake, trainer) → (−λ·Σ_taps KA(S_tap, T_tap), stats)``.

    Student taps are recorded during the trainer's own G forward (``feature_distill.TapRecorder``,
    attached on the first call; a fresh ``features(x)`` pass only when none was recorded), the
    teacher's from the same x under no_grad (the teacher is frozen here).  ``points`` picks taps of
    ``features()`` ("res_in", "block{i}"); None = all four.  Stats log each KA ∈ [0, 1] as
    ``ka_<tap>`` plus ``ka_mean`` — not only the summed loss, which is hard to read (CAT issue #27).
    """
    teacher.eval().requires_grad_(False)
    lam = float(lambda_distill)
    recorders: dict = {}  # id(student) → its TapRecorder (one student per trainer)

    def extra_g(batch, fake, trainer):
        x = local_input(batch, trainer)
        dev = next(teacher.parameters()).device
        if dev != x.device:
            teacher.to(x.device)
        with torch.no_grad():
            t = _taps(teacher, x)
        student = trainer.generator
        if not hasattr(student, "features"):
            _taps(student, x)  # raises the one-line TypeError
        if not hasattr(student, "pop_taps") and id(student) not in recorders:
            recorders[id(student)] = TapRecorder(student, list(t))
        s = student_taps(student, recorders.get(id(student)), fake, x)
        names = list(s) if points is None else list(points)
        missing = [n for n in names if n not in s or n not in t]
        if missing:
            raise ValueError(f"GKA tap {missing[0]!r} is not in both generators' features(): student has "
                             f"{', '.join(s)}, teacher has {', '.join(t)}")
        ka = {n: kernel_alignment(s[n], t[n], center) for n in names}
        total = torch.stack(list(ka.values())).sum()
        stats = {f"ka_{n}": v.detach() for n, v in ka.items()}
        stats["ka_mean"] = total.detach() / len(ka)
        return -lam * total, stats

    return extra_g
