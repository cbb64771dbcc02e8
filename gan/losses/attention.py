"""Class-aware attention distillation (PPCD-GAN; docs/methods.md, "PPCD" — UNVERIFIED design).

A feature map F (B, C, H, W) becomes a spatial attention map

    A(F) = vec(Σ_c w_c F_c²) / ||vec(Σ_c w_c F_c²)||₂            (B, H·W), unit L2 norm per sample

with channel weights w = softmax_c(|γ_c(y)|) read from the *teacher's* conditional BN gain for each
sample's class y (uniform weights = plain attention transfer, the fallback for non-conditional
teachers).  The same teacher weights weigh both sides: the masked student keeps the teacher's channel
layout while it trains, so channel c means the same channel in both.  L_CAD = Σ_l mean_b
||A_l(F_S) − A_l(F_T)||₂ over the feature taps.  Teacher features and weights are detached, so the
loss only trains the student.

``FeatureTaps`` records a model's tap outputs with forward hooks while the trainer runs its usual
forward, so the student is not run a second time for its features.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-12


def attention_map(f: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """(B, C, H, W) → (B, H·W) unit-norm attention; ``weights`` (B, C) or (C,), None = uniform."""
    if f.dim() != 4:
        raise ValueError(f"attention_map takes (B, C, H, W) features, got shape {tuple(f.shape)}")
    sq = f.float().pow(2)
    if weights is None:
        a = sq.mean(1)
    else:
        w = weights.to(sq)
        w = w if w.dim() == 2 else w[None]
        if w.dim() != 2 or w.shape[1] != f.shape[1] or w.shape[0] not in (1, f.shape[0]):
            raise ValueError(f"attention weights of shape {tuple(weights.shape)} do not fit features "
                             f"{tuple(f.shape)}; give (B, C) or (C,) weights for the same channels")
        a = (sq * w[:, :, None, None]).sum(1)
    a = a.flatten(1)
    return a / a.norm(dim=1, keepdim=True).clamp_min(EPS)


def class_weights(gamma: torch.Tensor) -> torch.Tensor:
    """w = softmax over channels of |γ| (rows = samples), detached: PPCD's class-aware channel weights."""
    return torch.softmax(gamma.detach().abs().float(), dim=-1)


def conditional_tap_weights(teacher: nn.Module, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-tap (B, C) weights of a class-conditional teacher (``ConditionalGenerator`` layout): a tap
    is weighted by the γ(y) of the conditional BN that reads it — ``fc`` and ``block{i}`` (i < n) by
    block i+1's CBN1; the last block's output is read by the unconditional final BN, so its weights
    are softmax(|γ|) of that BN, the same for every class."""
    n = len(teacher.blocks)
    with torch.no_grad():
        w = {("fc" if i == 0 else f"block{i}"): class_weights(teacher.blocks[i].cbn1.gamma(y))
             for i in range(n)}
        w[f"block{n}"] = class_weights(teacher.bn.weight).expand(y.shape[0], -1)
    return w


def cad_loss(student: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor],
             weights: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L_CAD = Σ_taps mean_b ||A(F_S) − A(F_T)||₂ and the per-tap terms (detached, for logging).
    Taps are the keys both sides have; ``weights`` maps a tap to its (B, C) / (C,) weights."""
    taps = [k for k in teacher if k in student]
    if not taps:
        raise ValueError(f"no common feature taps between student {sorted(student)} and teacher "
                         f"{sorted(teacher)}; tap the same layers on both")
    total, parts = 0.0, {}
    for k in taps:
        s, t = student[k], teacher[k].detach()
        if s.shape[2:] != t.shape[2:] or s.shape[0] != t.shape[0]:
            raise ValueError(f"tap {k!r}: student {tuple(s.shape)} and teacher {tuple(t.shape)} differ in "
                             "batch or spatial size; tap layers at the same resolution")
        w = None if weights is None else weights.get(k)
        w = None if w is None else w.detach()
        d = (attention_map(s, w) - attention_map(t, w)).norm(dim=1).mean()
        total = total + d
        parts[k] = d.detach()
    return total, parts


def output_l1(fake: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """||G_S − G_T||_1 (mean absolute difference) against the detached teacher output."""
    return F.l1_loss(fake, target.detach())


# ------------------------------------------------------------------------------------ feature taps

def tap_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Tap name → the module whose output is the tap, for the layouts ``features()`` defines:
    ResNet-style trunks (``res_in`` = down2, the blocks at n/3, 2n/3, n) and the class-conditional
    generator (``fc`` = the z projection — after its mask in the PPCD student — and every block)."""
    blocks = getattr(model, "blocks", None)
    if hasattr(model, "down2") and blocks is not None:
        n = len(blocks)
        taps = {max(1, round(n * f)) for f in (1 / 3, 2 / 3, 1)}
        out = {"res_in": model.down2}
        out.update({f"block{i}": blocks[i - 1] for i in sorted(taps)})
        return out
    if hasattr(model, "fc") and blocks is not None:
        out = {"fc": getattr(model, "fc_mask", model.fc)}
        out.update({f"block{i}": b for i, b in enumerate(blocks, 1)})
        return out
    raise ValueError(f"no feature taps known for {type(model).__name__}; attention distillation takes a "
                     "ResNet-style generator or the class-conditional generator")


class FeatureTaps:
    """Forward hooks that keep the latest output of each tap module (a linear tap — the conditional
    G's z projection — is viewed as its C×4×4 map).  ``pop()`` returns and forgets them."""

    def __init__(self, model: nn.Module, modules: dict[str, nn.Module] | None = None):
        self.store: dict[str, torch.Tensor] = {}
        self.handles = [m.register_forward_hook(self._hook(k))
                        for k, m in (modules or tap_modules(model)).items()]

    def _keep(self) -> bool:
        """Whether this forward's outputs are recorded (every forward here)."""
        return True

    def _hook(self, name):
        def fn(_m, _inp, out):
            if self._keep():
                self.store[name] = out.view(out.shape[0], -1, 4, 4) if out.dim() == 2 else out
        return fn

    def pop(self) -> dict[str, torch.Tensor]:
        if not self.store:
            raise RuntimeError("no features recorded: the tapped model has not run forward since the last pop")
        out, self.store = self.store, {}
        return out

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles, self.store = [], {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
