"""Class-conditional GAN training (``ConditionalGenerator(z, y)`` vs the projection
``ConditionalDiscriminator(x, y)``) on the pix2pix trainer's machinery.

Why a subclass: loop, lr schedule, rank slicing, NaN stop, checkpoints and exact resume come from
``Pix2PixTrainer``; only the step differs. One step, as pix2pix's (D first, then G through the
frozen D), with z ~ N(0, I) and the labels of the real batch for the fakes:

    L_D = L_D(D(x, y), D(G(z, y), y))         hinge by default (× 0.5, GANLoss d_scale)
    L_G = L_G(D(G(z, y), y))

z is drawn from the global CPU generator (then moved to the device), whose state every checkpoint
saves, so a resumed run draws the same latents as an uninterrupted one on any device; under N ranks
each draws the global batch's latents and keeps its slice.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gan.train.cyclegan import Record
from gan.train.pix2pix import Pix2PixTrainer, TrainConfig, _requires_grad


@dataclass
class ConditionalConfig(TrainConfig):
    """``TrainConfig`` with SNGAN/BigGAN-style defaults: hinge loss, Adam β = (0, 0.999)
    (``lambda_l1`` is unused)."""

    gan_loss: str = "hinge"
    betas: tuple[float, float] = (0.0, 0.999)


def split_labelled(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of a ``ClassFolderDataset`` batch ``{"image", "label"}`` or an ``(x, y)`` pair."""
    if isinstance(batch, dict):
        return batch["image"], batch["label"]
    return batch[0], batch[1]


class ConditionalGANTrainer(Pix2PixTrainer):
    """``ConditionalGANTrainer(G, D, cfg)`` with ``G(z, y)`` (``G.z_dim``) and ``D(x, y)``."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module, cfg: ConditionalConfig | None = None,
                 extra_g_loss=None, aux_modules=(), stateful: dict | None = None):
        """``extra_g_loss(batch, fake, trainer)`` is added to the G loss (e.g. PPCD's distillation); the
        step's latents and labels are ``trainer.last_z`` / ``trainer.last_y`` for it."""
        super().__init__(generator, discriminator, cfg or ConditionalConfig(), extra_g_loss=extra_g_loss,
                         aux_modules=aux_modules, stateful=stateful)
        self.z_dim = int(generator.z_dim)
        self.last_z = self.last_y = None

    def sample_z(self, n: int) -> torch.Tensor:
        """This rank's ``n`` latents: every rank draws the global batch's (n · world) from its CPU RNG
        (the same stream on every rank) and keeps its own slice, so N ranks see the latents 1 process would."""
        z = torch.randn(n * self.world_size, self.z_dim)[self.rank * n:(self.rank + 1) * n]
        self.last_z = z.to(self.g.device)
        return self.last_z

    def train_step(self, batch) -> dict[str, float]:
        step = self.step + 1
        x, y = (self._local(t) for t in split_labelled(batch))
        y = self.last_y = y.long()
        lr = self.lr_at(self.step)
        for eng in (self.g, self.d):
            for grp in eng.optimizer.param_groups:
                grp["lr"] = lr
        fake = self.g(self.sample_z(x.shape[0]), y)

        _requires_grad(self.d.module, True)
        real_logits, fake_logits = self.d(x, y), self.d(fake.detach(), y)
        loss_d = self.gan.d_loss(real_logits, fake_logits)
        stats = self._mean({"loss_d": loss_d, "d_real": real_logits.mean(), "d_fake": fake_logits.mean(),
                            "d_acc": self.gan.d_accuracy(real_logits.detach(), fake_logits.detach())})
        self._check(stats, step)
        self.d.backward(loss_d)
        self.d.step()

        _requires_grad(self.d.module, False)  # G step: gradients flow through D into G only
        gan_g = self.gan.g_loss(self.d.module(fake, y))
        loss_g, extra = gan_g, {}
        if self.extra_g_loss is not None:
            term, extra = self.extra_g_loss(batch, fake, self)
            loss_g = loss_g + term
            extra = {"gan_g": gan_g, "loss_extra": term, **extra}
        g_stats = self._mean({"loss_g": loss_g, **{k: torch.as_tensor(v) for k, v in extra.items()}})
        self._check(g_stats, step)
        self._g_step(loss_g, step)
        return Record(step=step, **stats, **g_stats, lr=lr)

    @torch.no_grad()
    def generate(self, labels: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """Eval-mode images for ``labels`` (and ``z``, default fresh N(0, I)); G's mode is restored."""
        g = self.generator
        was = g.training
        g.eval()
        dev = next(g.parameters()).device
        z = self.sample_z(len(labels)) if z is None else z.to(dev)
        out = g(z, labels.to(dev).long())
        g.train(was)
        return out
