"""CycleGAN training (docs/methods.md, "Teacher training") on the pix2pix trainer's machinery.

Why a subclass: the loop, lr schedule, rank slicing, NaN stop, checkpoints and exact resume of
``Pix2PixTrainer`` work for any (G, D) engine pair, so CycleGAN only replaces ``train_step``.
G_A (A→B) and G_B (B→A) live in one engine (``GeneratorPair``), D_A (judges B images) and D_B
(judges A images) in another (``DiscriminatorPair``); a checkpoint holds the four nets under the
member prefixes ``G_A.``, ``G_B.``, ``D_A.``, ``D_B.`` as ``CycleGANPair`` names them.

One step, as the original CycleGAN: G step first (D frozen), then the D step on the same fakes:

    L_G = L_GAN(D_A(G_A(a))) + L_GAN(D_B(G_B(b)))
          + λ·(||G_B(G_A(a)) − a||₁ + ||G_A(G_B(b)) − b||₁)          cycle, λ = 10
          + λ·λ_idt·(||G_A(b) − b||₁ + ||G_B(a) − a||₁)              identity, λ_idt = 0.5
    L_D = L_D(D_A(b), D_A(G_A(a))) + L_D(D_B(a), D_B(G_B(b)))        each × 0.5 (GANLoss d_scale)

LSGAN by default. No image-history pool (the original keeps 50 old fakes for D): a pool would be
extra trainer state every checkpoint must carry for exact resume; D sees the current fakes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gan.train.pix2pix import Pix2PixTrainer, TrainConfig, _requires_grad


@dataclass
class CycleGANConfig(TrainConfig):
    """``TrainConfig`` with the CycleGAN defaults (docs/methods.md, "Teacher training"; ``lambda_l1``
    is unused)."""

    gan_loss: str = "lsgan"
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5  # × lambda_cycle: identity weight 5


class _Members(nn.Module):
    """Named sub-networks trained by one engine; ``architecture()`` lists the members' own."""

    names: tuple[str, ...] = ()

    def __init__(self, *nets: nn.Module):
        super().__init__()
        for name, net in zip(self.names, nets, strict=True):
            self.add_module(name, net)

    def architecture(self) -> dict:
        return {"members": {n: getattr(self, n).architecture() for n in self.names
                            if hasattr(getattr(self, n), "architecture")}}


class GeneratorPair(_Members):
    """G_A (A→B) and G_B (B→A)."""

    names = ("G_A", "G_B")

    def forward(self, a: torch.Tensor, b: torch.Tensor, identity: bool = True):
        """(fake_b, rec_a, fake_a, rec_b, idt_b, idt_a): translations, cycles, identity maps
        (``idt_b = G_A(b)``, ``idt_a = G_B(a)``; None when ``identity`` is off)."""
        fake_b, fake_a = self.G_A(a), self.G_B(b)
        rec_a, rec_b = self.G_B(fake_b), self.G_A(fake_a)
        idt_b, idt_a = (self.G_A(b), self.G_B(a)) if identity else (None, None)
        return fake_b, rec_a, fake_a, rec_b, idt_b, idt_a


class DiscriminatorPair(_Members):
    """D_A judges domain-B images (real b vs G_A(a)), D_B judges domain-A images."""

    names = ("D_A", "D_B")

    def forward(self, b_images: torch.Tensor, a_images: torch.Tensor):
        return self.D_A(b_images), self.D_B(a_images)


class Record(dict):
    """A history entry; missing keys read as NaN.

    ``Pix2PixTrainer.fit`` shows ``rec["l1"]`` in its progress bar, a pix2pix term the CycleGAN and
    conditional steps do not have: without this the shared loop would raise KeyError there.
    """

    def __missing__(self, key):
        return float("nan")


class CycleGANTrainer(Pix2PixTrainer):
    """``CycleGANTrainer(G_A, G_B, D_A, D_B, cfg)``; batches are ``{"A", "B"}`` dicts (unpaired)."""

    def __init__(self, g_a: nn.Module, g_b: nn.Module, d_a: nn.Module, d_b: nn.Module,
                 cfg: CycleGANConfig | None = None):
        super().__init__(GeneratorPair(g_a, g_b), DiscriminatorPair(d_a, d_b), cfg or CycleGANConfig())
        c = self.cfg
        self.lambda_cycle = float(getattr(c, "lambda_cycle", 10.0))
        self.lambda_identity = float(getattr(c, "lambda_identity", 0.5))

    # the four members (on the engines' device, in their current mode)
    @property
    def g_a(self) -> nn.Module:
        return self.generator.G_A

    @property
    def g_b(self) -> nn.Module:
        return self.generator.G_B

    @property
    def d_a(self) -> nn.Module:
        return self.discriminator.D_A

    @property
    def d_b(self) -> nn.Module:
        return self.discriminator.D_B

    def train_step(self, batch) -> dict[str, float]:
        step = self.step + 1
        a, b = self._local(batch["A"]), self._local(batch["B"])
        lr = self.lr_at(self.step)
        for eng in (self.g, self.d):
            for grp in eng.optimizer.param_groups:
                grp["lr"] = lr
        lam, lam_idt = self.lambda_cycle, self.lambda_cycle * self.lambda_identity

        # G step: adversarial + cycle + identity, gradients through the frozen D pair into G only
        fake_b, rec_a, fake_a, rec_b, idt_b, idt_a = self.g(a, b, lam_idt > 0)
        _requires_grad(self.d.module, False)
        logit_b, logit_a = self.d.module(fake_b, fake_a)
        gan_a, gan_b = self.gan.g_loss(logit_b), self.gan.g_loss(logit_a)
        cycle_a, cycle_b = F.l1_loss(rec_a, a), F.l1_loss(rec_b, b)
        zero = a.new_zeros(())
        idt = F.l1_loss(idt_b, b) + F.l1_loss(idt_a, a) if lam_idt > 0 else zero
        loss_g = gan_a + gan_b + lam * (cycle_a + cycle_b) + lam_idt * idt
        g_stats = self._mean({"loss_g": loss_g, "gan_g": gan_a + gan_b, "gan_g_A": gan_a, "gan_g_B": gan_b,
                              "cycle": cycle_a + cycle_b, "cycle_A": cycle_a, "cycle_B": cycle_b, "idt": idt})
        self._check(g_stats, step)
        self.g.backward(loss_g)
        self.g.step()

        # D step on the fakes of this step (detached): D_A real b vs G_A(a), D_B real a vs G_B(b)
        _requires_grad(self.d.module, True)
        real_logit_b, real_logit_a = self.d(b, a)
        fake_logit_b, fake_logit_a = self.d(fake_b.detach(), fake_a.detach())
        loss_d_a = self.gan.d_loss(real_logit_b, fake_logit_b)
        loss_d_b = self.gan.d_loss(real_logit_a, fake_logit_a)
        loss_d = loss_d_a + loss_d_b
        d_stats = self._mean({"loss_d": loss_d, "loss_d_A": loss_d_a, "loss_d_B": loss_d_b})
        self._check(d_stats, step)
        self.d.backward(loss_d)
        self.d.step()
        self.step = step
        return Record(step=step, **d_stats, **g_stats, lr=lr)
