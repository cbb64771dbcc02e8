"""Fine-tuning a pruned (G, D) pair from its teacher (METHODS.md §6.3 step 7), on the pix2pix loop.

No second training loop: ``TeacherTargets`` relabels every batch with the teacher's output, so the
trainer's own terms become the distillation terms —

* D step: real = cat(x, G_T(x)), fake = cat(x, G_S(x)) (the teacher's outputs are the "real" data),
* G step: L_adv(D(x, G_S(x))) + λ_l1·||G_S(x) − G_T(x)||_1 with ``TrainConfig.lambda_l1`` = λ_rec,

and ``distill_loss`` is the ``extra_g_loss`` hook that adds the objective-specific part:

* "l1" (baseline): optionally λ_gt·||G_S(x) − y||_1 against the ground truth, nothing else;
* "density": + λ_dens·L_density (``gan.losses.density``, features = a frozen copy of the teacher D)
  + λ_nb·L_adv on the student's jittered neighbours (G side of the neighbourhood adversarial term).
  The D step itself stays on the centres (teacher vs student); the neighbourhood D step of §6.3
  step 6 is not wired into the trainer yet — D trained on centres sees the same (x, y) format.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gan.losses.density import DensityConfig, DensityObjective
from gan.train.pix2pix import split_batch

OBJECTIVES = ("density", "l1")


class TeacherTargets:
    """Wrap a DataLoader of ``{"A", "B"}`` batches: ``B`` ← G_T(A) (no grad), ground truth kept as
    ``GT``. Exposes ``generator``/``dataset`` so the trainer's resume-safe reseeding still works."""

    def __init__(self, loader, teacher, device=None):
        self.loader, self.teacher = loader, teacher.eval().requires_grad_(False)
        self.device = device or next(teacher.parameters()).device
        self.generator = getattr(loader, "generator", None)
        self.dataset = getattr(loader, "dataset", None)

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            x, y = split_batch(batch)
            x = x.to(self.device)
            with torch.no_grad():
                t = self.teacher(x)
            yield {"A": x, "B": t, "GT": y.to(self.device)}


@dataclass
class DistillConfig:
    objective: str = "density"
    lambda_rec: float = 10.0     # λ_rec: L1 to the teacher's output (TrainConfig.lambda_l1)
    lambda_dens: float = 1.0     # λ_dens: density term (objective "density")
    lambda_nb: float = 1.0       # G-side adversarial weight on the neighbours (objective "density")
    lambda_gt: float = 0.0       # optional L1 to the ground truth (paired data)


def distill_loss(cfg: DistillConfig, teacher, teacher_disc, density_cfg: DensityConfig | None = None):
    """The ``extra_g_loss`` hook of ``Pix2PixTrainer`` for ``cfg.objective``. ``teacher`` and
    ``teacher_disc`` are frozen here; the returned loss only has gradients w.r.t. the student."""
    if cfg.objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {cfg.objective!r}; choose one of {', '.join(OBJECTIVES)}")
    teacher.eval().requires_grad_(False)
    teacher_disc.eval().requires_grad_(False)
    dens = DensityObjective(teacher, teacher_disc, density_cfg) if cfg.objective == "density" else None

    def extra(batch, fake, trainer):
        zero = fake.new_zeros(())
        loss, stats = zero, {}
        if cfg.lambda_gt and isinstance(batch, dict) and "GT" in batch:
            gt = F.l1_loss(fake, trainer._local(batch["GT"]))
            loss, stats["l1_gt"] = loss + cfg.lambda_gt * gt, gt.detach()
        if dens is not None:
            x = trainer._local(split_batch(batch)[0])
            r = dens(trainer.generator, x)
            _, fake_nb = r.adversarial_batches()
            adv_nb = trainer.gan.g_loss(trainer.discriminator(fake_nb))
            loss = loss + cfg.lambda_dens * r.loss + cfg.lambda_nb * adv_nb
            stats.update(density=r.loss.detach(), gan_nb=adv_nb.detach(),
                         **{f"density_{k}": torch.tensor(v) for k, v in r.stats.items() if k != "loss"})
        return loss, stats

    return extra
