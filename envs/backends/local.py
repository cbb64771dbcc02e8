"""The ``local`` backend: inherit the teacher's weights, optionally fine-tune K steps, score held out.

Scoring is deterministic for a given spec pair (fixed batches, a freshly seeded neighbour jitter per
evaluation), so the cache by spec hash is exact and rewards carry no evaluation noise.  The optional
K fine-tune steps run the one trainer (``gan.train.builder``) with the objective ``LocalConfig.objective``
(density by default; l1, gka = CAT's, distill = GAN Compression's; ``vem`` adds VEM's term), so the
agents are scored on what the final pruned pair is trained on (docs/methods.md, "MARL search",
"Search backends").

A CycleGAN teacher (G_A, D_A; ``paired`` False) is scored the same way on its unpaired search
items: r_G against the teacher's outputs as for pix2pix, r_D with the unconditional D on the real
domain-B images of those items vs the student's outputs (docs/methods.md, "Unpaired (CycleGAN)
teachers").
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F

from envs.backends.base import CachedBackend, Scores
from gan.losses.density import DensityConfig, DensityObjective
from gan.losses.gan import GANLoss
from gan.metrics.image import psnr
from gan.pruning.physical import prune
from gan import data as gdata
from gan.data.splits import search_batches
from gan.train.builder import build_trainer
from gan.train.distill import DEFAULT_OBJECTIVE, DistillConfig, data_key, distill_hooks
from gan.train.pix2pix import TrainConfig


@dataclass
class LocalConfig:
    finetune_steps: int = 0      # K fine-tune steps per candidate (0: weight inheritance only)
    objective: str = DEFAULT_OBJECTIVE  # fine-tune objective of those steps (gan.train.distill.OBJECTIVES)
    vem: bool = False            # add VEM's term (gan.losses.vem) to those steps
    batch_size: int = 4
    train_items: int = 16        # fixed train-split items for the K steps
    eval_items: int = 8          # fixed search items (train split, disjoint from those) the scores use
    lr: float = 2e-4
    lambda_rec: float = 10.0     # λ_rec: L1 to the teacher's output
    lambda_dens: float = 1.0     # λ_dens: density-structure term
    gan_loss: str = "hinge"
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class TeacherMemo(torch.nn.Module):
    """The frozen teacher G, remembering its outputs for the inputs it has seen.

    Why: every candidate is fine-tuned on the same fixed batches and scored on the same fixed items,
    and the density term jitters them with a freshly seeded generator each time, so the teacher
    sees the very same input tensors at every evaluation; its forward over the B·(1+K) neighbourhood
    images was the largest share of an evaluation's MACs.  Exact: an input is looked up by
    ``torch.equal``, never approximated.  Only for objectives that call the teacher as a whole
    (``density``, ``l1``): forward hooks on its layers (gka, distill taps) would not fire on a hit."""

    def __init__(self, net: torch.nn.Module, entries: int = 32):
        super().__init__()
        self.net, self.entries = net, entries
        self._seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for seen_x, seen_y in self._seen:
            if seen_x.device == x.device and seen_x.shape == x.shape and torch.equal(seen_x, x):
                return seen_y
        y = self.net(x)
        if len(self._seen) < self.entries and not torch.is_grad_enabled():
            self._seen.append((x.detach().clone(), y.detach()))
        return y


class LocalBackend(CachedBackend):
    """Scores (G spec, D spec) pairs of one teacher pair on fixed (input, ground-truth) batches."""

    name = "local"
    config_cls = LocalConfig

    def __init__(self, teacher_g, teacher_d, train: tuple[torch.Tensor, torch.Tensor],
                 held_out: tuple[torch.Tensor, torch.Tensor], cfg: LocalConfig | None = None,
                 density: DensityConfig | None = None, memo: bool = True, paired: bool = True):
        """``train``/``held_out``: (inputs, targets) — for ``paired`` False (a CycleGAN teacher) the
        targets are unrelated real domain-B images, what the unconditional D calls real."""
        super().__init__()
        self.paired = paired
        self.cfg = cfg or LocalConfig()
        self.density_cfg = density or DensityConfig(seed=self.cfg.seed)
        # r_G's density term: fixed, seeded jittered neighbourhoods of the search items, the reward the
        # reward-fidelity benchmark measured (one pair is scored alone: there is no bank of other inputs)
        self.score_density_cfg = replace(self.density_cfg, neighbors="jitter")
        self.teacher_g = teacher_g.eval().requires_grad_(False)
        self.teacher_d = teacher_d.eval().requires_grad_(False)
        self.gan = GANLoss(self.cfg.gan_loss)
        self.train_x, self.train_y = train
        self.x, self.y = held_out
        with torch.no_grad():
            self.train_t = self.teacher_g(self.train_x)
            self.t = self.teacher_g(self.x)
            self.d_teacher_real = self.teacher_d(self.d_input(self.x, self.y))
            self.d_teacher_loss = float(self.gan.d_loss(self.d_teacher_real,
                                                        self.teacher_d(self.d_input(self.x, self.t))))
        # memo=False: the teacher runs at every evaluation (the exactness test compares both)
        whole = memo and self.cfg.objective in ("density", "l1")
        self.train_teacher = TeacherMemo(self.teacher_g) if whole else self.teacher_g
        self.score_teacher = TeacherMemo(self.teacher_g) if memo else self.teacher_g

    @classmethod
    def from_teacher_run(cls, run, cfg: LocalConfig | None = None, density: DensityConfig | None = None,
                         memo: bool = True):
        """Fixed seeded batches of the teacher's train split (``gan.data.splits``): ``eval_items`` search
        items to score on, ``train_items`` others for the K steps. No reported number uses either."""
        cfg = cfg or LocalConfig()
        root = gdata.resolve_dataset(run.data, size=run.size)
        layout = gdata.detect_layout(root)
        if layout not in (("aligned", "labels") if run.paired else ("unaligned",)):
            raise ValueError(f"{run.dir} is a {run.kind} teacher but its data {run.data} is {layout}; "
                             "retrain the teacher on its own kind of data")
        score, fit = search_batches(root, run.size, cfg.eval_items, cfg.train_items, cfg.seed)
        return cls(run.generator, run.discriminator, fit, score, cfg, density, memo=memo, paired=run.paired)

    def d_input(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """D's input: cat(x, image) for a pix2pix D, the image alone for a CycleGAN D."""
        return torch.cat([x, image], 1) if self.paired else image

    # ------------------------------------------------------------------ one candidate

    def _finetune(self, g, d):
        c = self.cfg
        tc = TrainConfig(steps=c.finetune_steps, batch_size=c.batch_size, lr=c.lr, gan_loss=c.gan_loss,
                         lambda_l1=c.lambda_rec, backend="torch", quiet=True, seed=c.seed,
                         log_every=max(1, c.finetune_steps), conditional_d=self.paired)
        rng = torch.get_rng_state()
        hooks = distill_hooks(self.distill_config(), self.train_teacher, self.teacher_d, self.density_cfg,
                              student=g, size=self.x.shape[-1])
        trainer = build_trainer("pix2pix", g.train(), d.train(), tc, hooks)
        n, gt = len(self.train_x), data_key(self.paired)
        data = [{"A": self.train_x[i:i + c.batch_size], "B": self.train_t[i:i + c.batch_size],
                 gt: self.train_y[i:i + c.batch_size]} for i in range(0, n - c.batch_size + 1, c.batch_size)]
        # the engine trains on a GPU when the process has one: the hooks' teachers go with it, and the
        # scores are computed on the CPU batches afterwards
        device = trainer.g.device
        self.teacher_g.to(device), self.teacher_d.to(device)
        try:
            trainer.fit(data or [{"A": self.train_x, "B": self.train_t, gt: self.train_y}])
        finally:
            self.teacher_g.cpu(), self.teacher_d.cpu()
        torch.set_rng_state(rng)  # the trainer seeds the global RNG; leave the caller's as it was
        return trainer.generator.cpu().eval(), trainer.discriminator.cpu().eval()

    def distill_config(self):
        """The K steps' objective (``LocalConfig.objective``, + VEM's term with ``vem``)."""
        c = self.cfg
        return DistillConfig(objective=c.objective, lambda_rec=c.lambda_rec, lambda_dens=c.lambda_dens,
                             add=("vem",) if c.vem else ())

    def _evaluate(self, g_spec: dict, d_spec: dict) -> Scores:
        g, d = prune(self.teacher_g, g_spec), prune(self.teacher_d, d_spec)
        if self.cfg.finetune_steps > 0:
            g, d = self._finetune(g, d)
        return self._score(g, d)

    def _score(self, g, d, density: bool = True) -> Scores:
        """Rewards and metrics of a ready (G, D) pair on the held-out batch (rewards: docs/methods.md,
        "MARL search"); ``density`` False: r_G without the density term (one forward pass of G)."""
        g, d = g.eval().requires_grad_(False), d.eval().requires_grad_(False)
        with torch.no_grad():
            s = g(self.x)
            rec = float(F.l1_loss(s, self.t))
            dens = 0.0
            if density:
                objective = DensityObjective(self.score_teacher, self.teacher_d, self.score_density_cfg)
                dens = float(objective(g, self.x, torch.Generator().manual_seed(self.cfg.seed)).loss)
            fake = self.d_input(self.x, s)
            d_real, d_fake = d(self.d_input(self.x, self.y)), d(fake)
            d_loss = float(self.gan.d_loss(d_real, d_fake))
            agree = float(0.5 * ((d_real - self.d_teacher_real).abs().mean()
                                 + (d_fake - self.teacher_d(fake)).abs().mean()))
            fidelity = float(psnr(s, self.t))
        balance = abs(d_loss - self.d_teacher_loss)
        r_g = -(self.cfg.lambda_dens * dens + self.cfg.lambda_rec * rec)
        r_d = -(balance + agree)
        metrics = {**({"density": dens} if density else {}), "rec_l1": rec, "psnr_vs_teacher": fidelity, "d_loss": d_loss,
                   "d_loss_teacher": self.d_teacher_loss, "d_balance": balance, "d_agreement": agree,
                   "finetune_steps": self.cfg.finetune_steps}
        return Scores(r_g, r_d, metrics)
