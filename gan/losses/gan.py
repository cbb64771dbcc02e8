"""Adversarial losses of pix2pix / CycleGAN / gan-compression (docs/methods.md, "GAN losses").

Every term is a mean over the patch map (and batch), so the loss does not depend on D's output size.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

GAN_KINDS = ("lsgan", "vanilla", "hinge")


class GANLoss:
    """``GANLoss(kind)``: ``d_loss(real_logits, fake_logits)`` and ``g_loss(fake_logits)``.

    ``d_scale`` multiplies the D loss (0.5 as gan-compression does, so D and G steps have similar
    magnitudes); the formulas themselves are the plain pix2pix ones.
    """

    def __init__(self, kind: str = "lsgan", d_scale: float = 0.5):
        if kind not in GAN_KINDS:
            raise ValueError(f"unknown GAN loss {kind!r}; choose one of {', '.join(GAN_KINDS)}")
        self.kind, self.d_scale = kind, d_scale

    def _target(self, logits: torch.Tensor, real: bool) -> torch.Tensor:
        """MSE (lsgan) or BCE-with-logits (vanilla) against an all-1 or all-0 target map."""
        target = torch.ones_like(logits) if real else torch.zeros_like(logits)
        if self.kind == "lsgan":
            return F.mse_loss(logits, target)
        return F.binary_cross_entropy_with_logits(logits, target)

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        if self.kind == "hinge":
            loss = F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
        else:
            loss = self._target(real_logits, True) + self._target(fake_logits, False)
        return self.d_scale * loss

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        if self.kind == "hinge":
            return -fake_logits.mean()
        return self._target(fake_logits, True)

    def d_accuracy(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """Mean of the fraction of real patches D puts on the real side of its decision threshold and
        of fake patches on the fake side (0.5 for lsgan's 0/1 targets, 0 for logits): 1 = D separates
        every patch (``gan.metrics.stability``)."""
        t = 0.5 if self.kind == "lsgan" else 0.0
        return ((real_logits > t).float().mean() + (fake_logits < t).float().mean()) / 2

    def __repr__(self) -> str:
        return f"GANLoss({self.kind!r}, d_scale={self.d_scale})"
