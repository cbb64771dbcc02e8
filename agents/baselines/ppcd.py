"""PPCD-GAN — Progressive Pruning and Class-aware Distillation (Vo et al., WACV 2022), docs/methods.md, "PPCD"
(UNVERIFIED design: the paper's body was not available; every choice below is ours and documented).

The teacher becomes a masked student (``gan.models.ppcd.from_teacher``: its weights, a learnable mask
per conv output channel, all masks 1, same forward) that trains in the ordinary trainer loop; the
``extra_g_loss`` hook adds the PPCD terms and drives the schedule — no second training loop:

* ``MaskSchedule``: target sparsity s(t) = s_f·(1 − (1 − t/T_p)³), updated every N steps until T_p.
  At an update the smallest-|m| channels are hard-zeroed and frozen until s(t) of the prunable
  channels Σ_g (size_g − min_keep_g) are; L1 penalty λ_s·Σ|m| on the unfrozen masks.
* Unit = a channel of a *channel group*: a group may hold several masks (the ResNet residual stream
  has one per block), and its channel can be dropped only when all of them are 0, so they are zeroed
  together; the channel's score is the mean |m| over the group's masks.
* Global ranking, normalised per group: score = |m| / mean |m| of the group's unfrozen channels, so
  mask scales that differ between groups (the norm after a mask can absorb its scale) do not decide
  alone; ties (all masks still 1) are broken by the within-group rank quantile, which spreads the
  first cuts evenly over the groups.  A group never drops below ``min_keep``.
* s_f from the MACs target: the smallest global sparsity whose pruned model meets the target under the
  *current* ranking, found by bisection over the prune order with the exact closed-form counter
  (``MacsModel``, equal to ``gan.profile``'s meta-device count).  Which groups lose channels — and what
  they cost — changes as the masks learn, so s_f is re-derived at each update (the history records
  it); the number frozen never decreases, and at T_p s(t) = s_f, so the exported model meets the
  target.  A cut that meets the target gives back its unfrozen channels that the budget still
  affords (most salient first): a prefix cut alone can undershoot by a whole channel's MACs, large on
  small models.
* Frozen masks: the trainer's optimizer knows nothing of the schedule, so a forward pre-hook re-zeroes
  them before every forward (Adam momentum would move them back) and a gradient hook zeroes their
  gradients.  The schedule never edits a parameter inside the loss hook (autograd saved it).
* Norms: a teacher with affine-free IN (``tests.teachers.tiny_teacher``, pre-preset runs) is converted to IN with
  γ = 1, β = 0 (the same function; ``PPCDConfig.convert_norm``) so the masks sit after the norm and get
  a gradient; the exported generator then has norm "instance_affine" (+2 params per channel, same MACs).
* Not supported: ZeRO-3; resuming a PPCD run (``MaskSchedule.state_dict()`` holds the schedule for
  the trainer's ``stateful`` checkpoints, but ``ppcd()`` writes no checkpoints).

Distillation: pix2pix teachers train on ``TeacherTargets`` batches (target = G_T(x)), so the trainer's
L1 term is the output term λ_out·||G_S(x) − G_T(x)||_1 and its GAN term uses the teacher's D (a
trainable copy); the hook adds λ_cad·L_CAD with uniform channel weights (attention transfer: there is
no class).  Class-conditional teachers (PPCD-GAN's setting) train with the hinge GAN on the class-folder
data against the teacher's projection D; the hook adds λ_cad·L_CAD with class-aware weights
softmax(|γ(y)|) from the teacher's CBN and λ_out·||G_S(z, y) − G_T(z, y)||_1 on the same (z, y).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from gan.latency_model import latency_budget
from gan.losses.attention import FeatureTaps, cad_loss, conditional_tap_weights
from gan.pruning.macs import MacsModel
from gan.pruning.targets import TargetError, resolve_macs_target
from gan.train.pix2pix import split_batch
from gan import data as gdata, export as gexport
from gan.models.ppcd import from_teacher
from gan.profile import count_params, model_macs
from gan.pruning.masked import export_plain
from gan.teacher_run import load_teacher_run
from gan.train.builder import build_trainer, train_config
from gan.train.distill import DistillHooks, TeacherTargets

#: a CycleGAN teacher's G_A is an image-to-image G like pix2pix's: the same path, on unpaired data
#: (docs/methods.md, "Unpaired (CycleGAN) teachers")
KINDS = ("pix2pix", "cyclegan", "conditional")


@dataclass
class PPCDConfig:
    """Knobs of the PPCD run (defaults: ours, UNVERIFIED against the paper; docs/methods.md, "PPCD")."""

    lr: float = 2e-4
    lambda_cad: float = 1.0      # class-aware attention distillation
    lambda_out: float = 10.0     # ||G_S − G_T||_1 (pix2pix: the trainer's lambda_l1 on TeacherTargets)
    lambda_sparse: float = 1e-4  # λ_s · Σ|m| on unfrozen masks
    prune_frac: float = 0.75     # T_p = prune_frac · steps; the rest fine-tunes the final mask set
    updates: int = 20            # schedule updates until T_p (N = max(1, T_p // updates))
    convert_norm: bool = True    # affine-free IN teacher → IN with γ=1, β=0 so masks sit after the norm
    zero_stage: int = 0
    onnx: bool = True
    latency_runs: int = 10


# ------------------------------------------------------------------------------------------ schedule

class MaskSchedule:
    """Progressive hard pruning of a masked model's channel groups to a MACs target (module docstring).

    ``maybe_update(t)`` at step t (1-based) from the trainer hook; ``penalty()`` is the L1 term;
    ``attach()`` installs the hooks that keep frozen masks at 0; ``finish()`` runs the final update if
    training stopped before T_p and zeroes the frozen masks for export."""

    def __init__(self, model, target_macs: float, size: int, prune_steps: int, update_every: int = 1,
                 lambda_sparse: float = 1e-4, cost_model=None):
        """``cost_model`` (``gan.latency_model.LatencyModel`` of the teacher): ``target_macs`` is then a
        budget in its units (predicted ms), and every cut is checked against it instead of MACs."""
        if prune_steps < 0 or update_every < 1:
            raise ValueError(f"prune_steps ({prune_steps}) must be ≥ 0 and update_every ({update_every}) ≥ 1")
        self.model, self.size = model, int(size)
        self.target = (float(target_macs) if cost_model is not None
                       else resolve_macs_target(model, target_macs, size))
        self.prune_steps, self.update_every = int(prune_steps), int(update_every)
        self.lambda_sparse = float(lambda_sparse)
        if not hasattr(model, "mask_parameters"):
            raise ValueError(f"{type(model).__name__} has no mask layers; build the student with "
                             "gan.models.ppcd.from_teacher")
        params = model.mask_parameters()
        self.groups, self.masks = model.channel_groups(), {}
        for g in self.groups:
            self.masks[g.name] = [r.tensor for r in g.refs if r.tensor in params]
            if not self.masks[g.name]:
                raise ValueError(f"group {g.name!r} of {type(model).__name__} has no mask; build the student "
                                 "with gan.models.ppcd.from_teacher")
        self.frozen = {g.name: torch.zeros(g.size, dtype=torch.bool) for g in self.groups}
        self._keep = {n: torch.ones_like(params[n].detach()) for n in params}  # 1 = live, 0 = frozen
        self._has_frozen = dict.fromkeys(params, False)  # host-side flag: no device sync per forward
        self.prunable = sum(g.size - g.min_keep for g in self.groups)
        self.mm = MacsModel(model, self.size)
        self.cost = cost_model.cost if cost_model is not None else self.mm.macs
        self.history: list[dict] = []
        self.done, self.last_step = False, 0
        self.s_final = self.final_count(self.order()) / max(1, self.prunable)
        self.initial_s_final = self.s_final
        self._handles: list = []

    # -------------------------------------------------------------- ranking and the MACs target

    def ramp(self, t: int) -> float:
        """1 − (1 − t/T_p)³ (1 from the start when T_p = 0)."""
        if self.prune_steps == 0:
            return 1.0
        return 1.0 - (1.0 - min(t, self.prune_steps) / self.prune_steps) ** 3

    def scores(self) -> dict[str, torch.Tensor]:
        """Group → per-channel mean |m| over the group's masks."""
        params = self.model.mask_parameters()
        return {g.name: torch.stack([params[n].detach().abs().float().cpu() for n in self.masks[g.name]]).mean(0)
                for g in self.groups}

    def order(self) -> list[tuple[str, int]]:
        """Prune order: the frozen channels, then live ones by group-normalised |m| (ties: rank quantile),
        skipping any that would take its group below ``min_keep``.  Every prefix is a valid cut."""
        entries = []
        for gi, (g, a) in enumerate(zip(self.groups, self.scores().values())):
            frozen = self.frozen[g.name]
            live = ~frozen
            ref = float(a[live].mean()) if live.any() else 1.0
            s = a / max(ref, 1e-12)
            rank = torch.empty(g.size)
            rank[torch.argsort(s, stable=True)] = torch.arange(g.size, dtype=torch.float)
            for c in range(g.size):
                entries.append((0, 0.0, 0.0, gi, c) if frozen[c] else
                               (1, float(s[c]), float(rank[c]) / g.size, gi, c))
        entries.sort()
        left = {g.name: g.size for g in self.groups}
        out = []
        for *_, gi, c in entries:
            name = self.groups[gi].name
            if left[name] > self.groups[gi].min_keep:
                left[name] -= 1
                out.append((name, c))
        return out

    def counts_after(self, order: list[tuple[str, int]], k: int) -> dict[str, int]:
        counts = {g.name: g.size for g in self.groups}
        for name, _ in order[:k]:
            counts[name] -= 1
        return counts

    def macs_after(self, order: list[tuple[str, int]], k: int) -> float:
        """Exact MACs of the model with the first ``k`` channels of ``order`` removed."""
        return self.mm.macs(self.counts_after(order, k))

    def cost_after(self, order: list[tuple[str, int]], k: int) -> float:
        """The budgeted cost (MACs, or predicted ms) with the first ``k`` channels of ``order`` removed."""
        return self.cost(self.counts_after(order, k))

    def final_count(self, order: list[tuple[str, int]]) -> int:
        """Smallest k whose cut meets the target (bisection: the cost falls as k grows; for a predicted
        latency that need not hold strictly, but the k returned always meets the target)."""
        lo, hi = 0, len(order)
        if self.cost_after(order, hi) > self.target:
            raise TargetError(f"target {self.target:.4g} is below the {self.cost_after(order, hi):.4g} "
                              "that the minimum channels allow; raise the target")
        while lo < hi:
            mid = (lo + hi) // 2
            if self.cost_after(order, mid) <= self.target:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def _fill(self, cut: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """``cut`` minus channels it need not take: once a cut meets the target, give back (from the
        last, most salient, on) every not-yet-frozen channel whose return keeps the MACs ≤ target — a
        prefix of the order undershoots by up to one channel's cost, a big one on small models (an up2
        channel).  A cut still above the target is returned unchanged."""
        counts = self.counts_after(cut, len(cut))
        if self.cost(counts) > self.target:
            return cut
        kept = []
        for name, c in reversed(cut):
            if not self.frozen[name][c]:
                counts[name] += 1
                if self.cost(counts) <= self.target:
                    continue
                counts[name] -= 1
            kept.append((name, c))
        return kept[::-1]

    # -------------------------------------------------------------- the schedule

    @property
    def n_frozen(self) -> int:
        return int(sum(int(f.sum()) for f in self.frozen.values()))

    @property
    def sparsity(self) -> float:
        """Frozen (zeroed) channels / prunable channels."""
        return self.n_frozen / max(1, self.prunable)

    def is_update_step(self, t: int) -> bool:
        return not self.done and (t >= self.prune_steps or t % self.update_every == 0)

    def maybe_update(self, t: int) -> bool:
        self.last_step = max(self.last_step, int(t))
        if self.is_update_step(t):
            self.update(t)
            return True
        return False

    def update(self, t: int) -> dict:
        """Freeze channels up to s(t) = s_f·ramp(t) (s_f re-derived from the current ranking)."""
        order = self.order()
        k_f = self.final_count(order)
        ramp = self.ramp(t)
        k = max(self.n_frozen, math.ceil(ramp * k_f - 1e-9))
        final = t >= self.prune_steps
        cut = self._fill(order[:k])
        for name, c in cut:
            self.frozen[name][c] = True
        self._sync_keep()
        self.done = self.done or final
        self.s_final = self.sparsity if final else k_f / max(1, self.prunable)
        rec = {"step": int(t), "target_sparsity": ramp * k_f / max(1, self.prunable),
               "sparsity": self.sparsity, "s_final": self.s_final, "macs": self.macs_after(cut, len(cut))}
        self.history.append(rec)
        return rec

    def _sync_keep(self) -> None:
        """Per-mask keep vectors (on the masks' device) from the group frozen flags."""
        params = self.model.mask_parameters()
        for g in self.groups:
            keep = (~self.frozen[g.name]).float()
            for n in self.masks[g.name]:
                self._keep[n] = keep.to(params[n].device, params[n].dtype)
                self._has_frozen[n] = bool(self.frozen[g.name].any())

    def finish(self) -> None:
        """Final update when training ended before T_p (or had no steps), then zero the frozen masks."""
        if not self.done:
            self.update(max(self.prune_steps, self.last_step))
        self.apply_()

    # -------------------------------------------------------------- masks

    @torch.no_grad()
    def apply_(self) -> None:
        """Set every frozen mask entry to 0 (in place; call outside any autograd graph)."""
        params = self.model.mask_parameters()
        for n, keep in self._keep.items():
            if self._has_frozen[n]:
                p = params[n]
                p.mul_(keep.to(p.device, p.dtype))

    def penalty(self) -> torch.Tensor:
        """λ_s · Σ |m| over the unfrozen masks (with gradient)."""
        params = self.model.mask_parameters()
        terms = [(p.abs() * self._keep[n].to(p.device, p.dtype)).sum() for n, p in params.items()]
        return self.lambda_sparse * torch.stack(terms).sum()

    def attach(self) -> "MaskSchedule":
        """Keep frozen masks at 0 during training: re-zero before each forward, zero their gradients."""
        self.detach()
        self._handles.append(self.model.register_forward_pre_hook(lambda _m, _inp: self.apply_()))
        for n, p in self.model.mask_parameters().items():
            self._handles.append(p.register_hook(lambda g, n=n: g * self._keep[n].to(g.device, g.dtype)))
        return self

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    HISTORY_KEYS = ("step", "target_sparsity", "sparsity", "s_final", "macs")

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only (the trainer's ``stateful`` checkpoints): frozen flags, progress, history."""
        state = {f"frozen.{k}": v.to(torch.uint8) for k, v in self.frozen.items()}
        state["progress"] = torch.tensor([float(self.done), self.last_step, self.s_final,
                                          self.initial_s_final], dtype=torch.float64)
        state["history"] = torch.tensor([[h[k] for k in self.HISTORY_KEYS] for h in self.history],
                                        dtype=torch.float64).reshape(-1, len(self.HISTORY_KEYS))
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for g in self.groups:
            f = state[f"frozen.{g.name}"].bool().cpu()
            if f.shape != self.frozen[g.name].shape:
                raise ValueError(f"schedule state for group {g.name!r} has {f.numel()} channels, the model "
                                 f"{g.size}; resume with the run's own teacher")
            self.frozen[g.name] = f.clone()
        done, last, s_final, initial = state["progress"].tolist()
        self.done, self.last_step, self.s_final, self.initial_s_final = bool(done), int(last), s_final, initial
        self.history = [{k: (int(v) if k == "step" else v) for k, v in zip(self.HISTORY_KEYS, row)}
                        for row in state["history"].tolist()]
        self._sync_keep()

    def spec(self) -> dict[str, list[int]]:
        """Group → kept channels (the unfrozen ones)."""
        return {g.name: (~self.frozen[g.name]).nonzero().flatten().tolist() for g in self.groups}


# ------------------------------------------------------------------------------------------ hooks

def pix2pix_hook(schedule: MaskSchedule, teacher, student_taps: FeatureTaps, cfg: PPCDConfig):
    """``extra_g_loss`` for ``Pix2PixTrainer`` on ``TeacherTargets`` batches: schedule step, λ_cad·L_CAD
    (uniform weights) and the mask L1 penalty (the output term is the trainer's own L1)."""
    teacher.eval().requires_grad_(False)

    def hook(batch, fake, trainer):
        schedule.maybe_update(trainer.step + 1)
        x = trainer._local(split_batch(batch)[0])
        with torch.no_grad():
            t_feats = teacher.features(x)
        cad, parts = cad_loss(student_taps.pop(), t_feats)
        pen = schedule.penalty()
        return cfg.lambda_cad * cad + pen, {"cad": cad.detach(), "mask_l1": pen.detach(),
                                            "sparsity": torch.tensor(schedule.sparsity, device=fake.device),
                                            **{f"cad_{k}": v for k, v in parts.items()}}
    return hook


def conditional_hook(schedule: MaskSchedule, teacher, student_taps: FeatureTaps, cfg: PPCDConfig):
    """``extra_g_loss`` for ``ConditionalGANTrainer``: schedule step, λ_cad·L_CAD with class-aware
    weights, λ_out·||G_S(z, y) − G_T(z, y)||_1 on the step's (z, y), the mask L1 penalty."""
    teacher.eval().requires_grad_(False)
    teacher_taps = FeatureTaps(teacher)

    def hook(batch, fake, trainer):
        schedule.maybe_update(trainer.step + 1)
        z, y = trainer.last_z, trainer.last_y
        with torch.no_grad():
            t_out = teacher(z, y)
            t_feats = teacher_taps.pop()
        cad, parts = cad_loss(student_taps.pop(), t_feats, conditional_tap_weights(teacher, y))
        out = F.l1_loss(fake, t_out)
        pen = schedule.penalty()
        loss = cfg.lambda_cad * cad + cfg.lambda_out * out + pen
        return loss, {"cad": cad.detach(), "l1_teacher": out.detach(), "mask_l1": pen.detach(),
                      "sparsity": torch.tensor(schedule.sparsity, device=fake.device),
                      **{f"cad_{k}": v for k, v in parts.items()}}
    hook.teacher_taps = teacher_taps
    return hook




# ------------------------------------------------------------------------------------------ teacher runs

def load_run(path):
    """A ``train-teacher`` run directory → ``TeacherRun`` for a pix2pix or a class-conditional teacher."""
    return load_teacher_run(path, kinds=KINDS)


def _kind(run) -> str:
    kind = run.meta.get("kind", "pix2pix")
    if kind not in KINDS:
        raise ValueError(f"PPCD takes pix2pix, CycleGAN or class-conditional teachers, this one is {kind!r}; "
                         "train a paired, unpaired or class-folder teacher")
    return kind


# ------------------------------------------------------------------------------------------ pipeline

def ppcd(run, target_macs: float, out, *, steps: int = 200, batch_size: int | None = None, seed: int = 0,
         backend: str = "deepspeed", quiet: bool = False, config: PPCDConfig | None = None,
         data=None, latency=None) -> dict:
    """Train the masked student of ``run`` (a teacher run directory or a ``TeacherRun``) under the
    progressive schedule to ``target_macs`` (fraction ≤ 1 of the teacher's MACs, or a count), export
    the dense model (masks dropped and folded, the teacher's class) to ``out/generator`` and write
    ``out/ppcd.json``; returns that summary.  ``data`` overrides the run's dataset.  ``latency`` (a
    ``gan.latency_model.LatencyTarget``): the schedule cuts to predicted latency instead of MACs."""
    cfg = config or PPCDConfig()
    if steps < 0:
        raise ValueError(f"steps must be ≥ 0, got {steps}")
    if backend not in ("deepspeed", "torch"):
        raise ValueError(f"unknown backend {backend!r}; choose deepspeed or torch")
    if cfg.zero_stage > 2:
        raise ValueError("PPCD edits its masks in place, which ZeRO-3's partitioned parameters do not allow; "
                         "use zero_stage ≤ 2")

    def say(msg):
        if not quiet:
            print(msg, flush=True)

    run = load_run(run) if isinstance(run, (str, Path)) else run
    kind, size, out = _kind(run), int(run.size), Path(out)
    teacher = copy.deepcopy(run.generator).cpu().eval().requires_grad_(False)
    student = from_teacher(teacher, cfg.convert_norm).train()
    full = model_macs(teacher, size)
    lm = None
    if latency is None:
        target = budget = resolve_macs_target(student, target_macs, size)
    else:
        lm, budget = latency_budget(teacher, latency, size)
        target = full  # until the schedule ends: the MACs that the latency budget buys
    prune_steps = int(round(cfg.prune_frac * steps))
    every = max(1, prune_steps // max(1, cfg.updates))
    schedule = MaskSchedule(student, budget, size, prune_steps, every, cfg.lambda_sparse, cost_model=lm).attach()
    taps = FeatureTaps(student)
    batch_size = batch_size or (16 if kind == "conditional" else 4)
    goal = f"MACs target {target / 1e6:.2f} M ({target / full:.1%})" if lm is None else \
        f"predicted-latency target {budget:.2f} ms ({latency.runtime}, {latency.size or size}²)"
    say(f"PPCD: {kind} teacher {run.dir}, {goal}; "
        f"initial s_f {schedule.initial_s_final:.3f}, T_p {prune_steps}, update every {every} steps")

    root = gdata.resolve_dataset(data or run.data, size=size)
    train_set = gdata.open_dataset(root, size=size, split="train")
    common = dict(steps=steps, batch_size=batch_size, lr=cfg.lr, backend=backend, seed=seed, quiet=quiet,
                  zero_stage=cfg.zero_stage, log_every=max(1, steps // 20),
                  extra={"method": "ppcd", "teacher": str(run.dir),
                         **({"target_macs": target} if lm is None else {"latency_target_ms": budget})})
    disc = copy.deepcopy(run.discriminator).train().requires_grad_(True)
    if kind != "conditional":  # pix2pix, or a CycleGAN's G_A with its unconditional D_A on unpaired data
        hook = pix2pix_hook(schedule, teacher, taps, cfg)
        tcfg = train_config("pix2pix", lambda_l1=cfg.lambda_out, conditional_d=run.paired, **common)
        trainer = build_trainer("pix2pix", student, disc, tcfg, DistillHooks(hook, None))
        teacher.to(trainer.g.device)
        loader = TeacherTargets(gdata.make_loader(train_set, batch_size, shuffle=True, seed=seed), teacher,
                                device=trainer.g.device, paired=run.paired)
    else:
        classes = getattr(train_set, "classes", None)
        if classes is None or len(classes) != int(teacher.num_classes):
            raise ValueError(f"{root} has {len(classes) if classes else 'no'} class folders but the teacher "
                             f"was trained on {teacher.num_classes} classes; pass the teacher's own data")
        hook = conditional_hook(schedule, teacher, taps, cfg)
        trainer = build_trainer(kind, student, disc, train_config(kind, **common), DistillHooks(hook, None))
        teacher.to(trainer.g.device)
        loader = gdata.make_loader(train_set, batch_size, shuffle=True, seed=seed,
                                   drop_last=len(train_set) >= batch_size)
    t0 = time.perf_counter()
    try:
        if steps:
            trainer.fit(loader)
    finally:
        taps.remove()
        if hasattr(hook, "teacher_taps"):
            hook.teacher_taps.remove()
        schedule.detach()
    train_s = time.perf_counter() - t0
    schedule.finish()
    if trainer.rank != 0:
        return {"rank": trainer.rank}

    student, teacher = trainer.generator.cpu().eval(), teacher.cpu()
    spec = student.dead_channel_spec()
    dense = export_plain(student).eval()
    macs = model_macs(dense, size)
    budgeted = {}
    if lm is not None:
        target = macs  # the MACs the latency budget bought (as cat and l1 report theirs)
        counts = {g.name: g.size for g in dense.channel_groups()}
        predicted = lm.predicted_ms(counts)
        budgeted = {"latency_target_ms": budget, "predicted_latency_ms": predicted}
        if lm.cost(counts) > budget * (1 + 1e-9):
            raise RuntimeError(f"PPCD export costs {lm.cost(counts):.4g} (predicted {predicted:.4g} ms), above the "
                               f"target {budget:.4g} (a schedule bug)")
    if macs > target:
        raise RuntimeError(f"PPCD export has {macs:.4g} MACs, above the target {target:.4g} (a schedule bug)")
    samples = _samples(kind, dense, teacher, run, root, size)
    source = {"command": "prune", "method": "ppcd", "teacher": str(run.dir), "kind": kind, "steps": trainer.step}
    gexport.save(dense, out / "generator", size=size, onnx=cfg.onnx, latency_runs=cfg.latency_runs,
                 samples=samples, source=source)
    result = {"method": "ppcd", "kind": kind, "teacher": str(run.dir), "out": str(out),
              "generator": str(out / "generator"), "spec": spec, "widths": dense.widths(),
              "macs": int(macs), "target_macs": int(target), "full_macs": int(full), "macs_ratio": macs / full,
              "params": count_params(dense), "teacher_params": count_params(teacher),
              "final_sparsity": schedule.sparsity, "s_final": schedule.s_final,
              "initial_s_final": schedule.initial_s_final, "prune_steps": prune_steps, "update_every": every,
              "sparsity_history": schedule.history, "steps": trainer.step, "batch_size": batch_size,
              "train_s": round(train_s, 2), "steps_per_sec": trainer.steps_per_sec,
              "history": trainer.history, "student_norm": getattr(student, "norm_kind", None),
              "mask_after": student.mask_after, "config": dataclasses.asdict(cfg), **budgeted}
    (out / "ppcd.json").write_text(json.dumps(result, indent=1, default=float))
    say(f"PPCD done in {train_s:.1f} s: {macs / 1e6:.2f} M MACs ({macs / full:.1%} of the teacher's), "
        f"{result['params']} params, sparsity {schedule.sparsity:.3f}; exported to {out / 'generator'}")
    return result


@torch.no_grad()
def _samples(kind, dense, teacher, run, root, size) -> list[torch.Tensor]:
    """A small sample grid: pix2pix: [input] | student | teacher on val inputs; conditional: one
    column per class (up to 8), student row then teacher row, fixed z."""
    if kind != "conditional":
        val = gdata.open_dataset(root, size=size, split="val")
        x = torch.stack([val[i]["A"] for i in range(min(4, len(val)))])
        rows = [dense(x), teacher(x)]
        return ([x] if x.shape[1] == 3 else []) + rows
    n = min(8, int(teacher.num_classes))
    z = torch.randn(n, int(teacher.z_dim), generator=torch.Generator().manual_seed(0))
    y = torch.arange(n)
    return [dense(z, y), teacher(z, y)]
