"""Fine-tuning a pruned (G, D) pair from its teacher (docs/methods.md, "Fine-tuning from the teacher"),
on the pix2pix loop.

No second training loop: ``TeacherTargets`` relabels every batch with the teacher's output, so the
trainer's own terms become the distillation terms —

* D step: real = cat(x, G_T(x)), fake = cat(x, G_S(x)) (the teacher's outputs are the "real" data),
* G step: L_adv(D(x, G_S(x))) + λ_l1·||G_S(x) − G_T(x)||_1 with ``TrainConfig.lambda_l1`` = λ_rec,

and ``distill_loss`` is the ``extra_g_loss`` hook that adds the objective-specific part:

* "l1" (baseline): optionally λ_gt·||G_S(x) − y||_1 against the ground truth, nothing else;
* "distill" (GAN Compression; docs/methods.md, "GAN Compression"): + λ_distill·Σ MSE(f_t(student
  tap), teacher tap) with learnable 1×1 mappings f_t (trainer ``aux_modules``, stepped with G);
  a teacher without the taps (``gan.losses.feature_distill.has_distill_taps``: a U-Net) keeps only
  the L1-to-teacher + GAN terms;
* "gka" (CAT; docs/methods.md, "CAT"): − λ_distill·Σ KA(student tap, teacher tap) over the four taps;
* "density": + λ_dens·L_density (``gan.losses.density``, features = a frozen copy of the teacher D)
  + λ_nb·L_adv on the student's jittered neighbours (G side of the neighbourhood adversarial term);
  and the ``extra_d_loss`` hook adds the D side of that term to the D step (docs/methods.md,
  "MGGC density objective"):
  λ_nb_d·L_D(real = cat(x_ik, G_T(x_ik)), fake = cat(x_ik, G_S(x_ik)).detach()).

Add-on terms (``DistillConfig.add``) are summed onto the objective's G hook: "gka" (CAT's term on
top of any objective) and "vem" (VEM's energy-based mutual-information bound, ``gan.losses.vem``,
with its EBM updated inside the hook and checkpointed through the trainer's ``stateful``).

``distill_hooks`` returns both hooks. They share one neighbourhood per step: the D step runs first,
so the D hook evaluates the density objective (teacher under no_grad, student with grad) and caches
the ``DensityResult``; the G hook of the same step and batch takes it from the cache instead of
running teacher and student over the B·K neighbours again (same jitter for both sides, as one
neighbourhood should be). Without a D hook the G hook evaluates its own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F

from gan.losses.density import DensityConfig, DensityObjective
from gan.losses.hooks import combine
from gan.train.pix2pix import split_batch
from gan.losses.feature_distill import feature_distill, has_distill_taps
from gan.losses.gka import gka_hook
from gan.losses.vem import VEMConfig, VEMTerm

OBJECTIVES = ("density", "l1", "gka", "distill")
#: the objective a fine-tune (and the local backend's K steps) uses unless one is named: L1 distillation,
#: because the density term did not earn its cost (docs/methods.md, "Default fine-tune objective")
DEFAULT_OBJECTIVE = "l1"
ADD_ONS = ("gka", "vem")


def data_key(paired: bool) -> str:
    """Where a distillation batch keeps the dataset's own target: "GT" (paired ground truth, metrics only) or
    "real" (unpaired domain-B images: what D learns as real, ``pix2pix.real_target``)."""
    return "GT" if paired else "real"


class TeacherTargets:
    """Wrap a DataLoader of ``{"A", "B"}`` batches: ``B`` ← G_T(A) (no grad), ground truth kept as
    ``GT``. Exposes ``generator``/``dataset`` so the trainer's resume-safe reseeding still works.

    ``paired=False`` (a CycleGAN teacher's unpaired data; docs/methods.md, "Unpaired (CycleGAN)
    teachers"): the loader's ``B`` is an unrelated real domain-B image, kept as ``real`` — what the
    trainer's D learns as real (``gan.train.pix2pix.real_images``) — and there is no ``GT``: the
    pseudo pair (x, G_T(x)) is GAN Compression's unpaired distillation target."""

    def __init__(self, loader, teacher, device=None, paired: bool = True):
        self.loader, self.teacher = loader, teacher.eval().requires_grad_(False)
        self.device = device or next(teacher.parameters()).device
        self.paired = paired
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
            yield {"A": x, "B": t, data_key(self.paired): y.to(self.device)}


@dataclass
class DistillConfig:
    objective: str = DEFAULT_OBJECTIVE
    lambda_rec: float = 10.0     # λ_rec: L1 to the teacher's output (TrainConfig.lambda_l1)
    lambda_dens: float = 1.0     # λ_dens: density term (objective "density")
    lambda_nb: float = 1.0       # G-side adversarial weight on the neighbours (objective "density")
    lambda_nb_d: float = 1.0     # D-side weight of the neighbourhood D loss (0: D step on centres only)
    lambda_gt: float = 0.0       # optional L1 to the ground truth (paired data)
    lambda_distill: float = 1.0  # weight of the "gka" / "distill" term
    gka_center: bool = False     # centred kernel alignment (docs/methods.md, "CAT")
    add: tuple = ()              # add-on terms summed onto the objective (ADD_ONS)
    vem: dict = field(default_factory=dict)  # VEMConfig overrides of the "vem" add-on


class DistillHooks(NamedTuple):
    """``Pix2PixTrainer(extra_g_loss=hooks.g, extra_d_loss=hooks.d, aux_modules=hooks.aux)``;
    ``d`` is None without a D-side term; ``aux`` holds trainables of the G loss (e.g. mappings)."""
    g: Callable
    d: Callable | None
    aux: tuple = ()
    stateful: dict = {}  # name → hook state with state_dict()/load_state_dict() (checkpointed)


def distill_hooks(cfg: DistillConfig, teacher, teacher_disc, density_cfg: DensityConfig | None = None,
                  student=None, size: int = 64) -> DistillHooks:
    """The trainer hooks for ``cfg.objective``. ``teacher`` and ``teacher_disc`` are frozen here; the
    G hook's loss only has gradients w.r.t. the student (and ``aux``), the D hook's only w.r.t. the
    student D.  "distill" needs the ``student`` (its tap widths size the mappings) and the image size."""
    if cfg.objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {cfg.objective!r}; choose one of {', '.join(OBJECTIVES)}")
    bad = [a for a in cfg.add if a not in ADD_ONS]
    if bad:
        raise ValueError(f"unknown add-on term {bad[0]!r}; choose from {', '.join(ADD_ONS)}")
    teacher.eval().requires_grad_(False)
    teacher_disc.eval().requires_grad_(False)
    dens = None
    if cfg.objective == "density":
        dens = DensityObjective(teacher, teacher_disc, density_cfg)
        if dens.cfg.adv_center:
            raise ValueError("DensityConfig.adv_center feeds the center output on extra channels, which "
                             "the trainer's D (input|output) cannot take; use adv_center=False here")
    cache: dict = {}

    def neighbourhood(batch, trainer):
        """This step's DensityResult: the one the D hook cached for this batch, else a fresh one."""
        if cache.get("step") == trainer.step and cache.get("batch") is batch:
            r = cache["result"]
            cache.clear()  # used once: frees the student graph with the G step
            return r
        cache.clear()
        return evaluate(batch, trainer)

    def evaluate(batch, trainer):
        x = trainer._local(split_batch(batch)[0])
        if isinstance(dens.feature_fn, torch.nn.Module):
            dens.feature_fn.to(x.device)  # the frozen D copy follows the trainer's device
        return dens(trainer.generator, x)

    def extra_g(batch, fake, trainer):
        zero = fake.new_zeros(())
        loss, stats = zero, {}
        if cfg.lambda_gt and isinstance(batch, dict) and "GT" in batch:
            gt = F.l1_loss(fake, trainer._local(batch["GT"]))
            loss, stats["l1_gt"] = loss + cfg.lambda_gt * gt, gt.detach()
        if dens is not None:
            r = neighbourhood(batch, trainer)
            _, fake_nb = r.adversarial_batches()
            adv_nb = trainer.gan.g_loss(trainer.discriminator(fake_nb))
            loss = loss + cfg.lambda_dens * r.loss + cfg.lambda_nb * adv_nb
            stats.update(density=r.loss.detach(), gan_nb=adv_nb.detach(),
                         **{f"density_{k}": torch.tensor(v) for k, v in r.stats.items() if k != "loss"})
        return loss, stats

    def extra_d(batch, fake, trainer):
        """Neighbourhood adversarial term, D side: teacher neighbours real, student neighbours (detached) fake."""
        r = evaluate(batch, trainer)
        cache.update(step=trainer.step, batch=batch, result=r)
        real_nb, fake_nb = r.adversarial_batches()
        loss_nb = trainer.gan.d_loss(trainer.d(real_nb), trainer.d(fake_nb.detach()))
        return cfg.lambda_nb_d * loss_nb, {"gan_nb_d": loss_nb.detach()}

    terms = [extra_g]
    if cfg.objective == "gka" or "gka" in cfg.add:
        terms.append(gka_hook(teacher, cfg.lambda_distill, cfg.gka_center))
    aux = ()
    if cfg.objective == "distill":
        if student is None:
            raise ValueError('objective "distill" sizes its 1×1 mappings from the student: pass student=')

        if has_distill_taps(teacher):  # a U-Net has no taps: the L1-to-teacher + GAN terms alone, the
            # caller says so (docs/methods.md, "GAN Compression")
            hook, aux = feature_distill(teacher, student, cfg.lambda_distill, size)
            terms.append(hook)
    stateful = {}
    if dens is not None and dens.bank is not None:  # memory-bank neighbourhoods resume exactly
        stateful["density_bank"] = dens.bank
    if "vem" in cfg.add:
        stateful["vem"] = vem = VEMTerm(VEMConfig(**cfg.vem))
        terms.append(vem)
    return DistillHooks(combine(*terms), extra_d if dens is not None and cfg.lambda_nb_d else None,
                        aux=tuple(aux), stateful=stateful)


def distill_loss(cfg: DistillConfig, teacher, teacher_disc, density_cfg: DensityConfig | None = None):
    """The ``extra_g_loss`` hook alone (no neighbourhood D step); see ``distill_hooks``."""
    return distill_hooks(cfg, teacher, teacher_disc, density_cfg).g
