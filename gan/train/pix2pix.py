"""pix2pix training (docs/methods.md, "Teacher training"): one D step and one G step (GAN + λ·L1 +
optional extra) per iteration.

Why one loop with an ``extra_g_loss`` hook: the density / distillation objectives of later issues add a
term to the G loss and must not grow a second, drifting copy of this loop.  Both networks live in
engines from ``engine.make_engine`` so the same code runs with plain torch, DeepSpeed on CPU, or
DeepSpeed on GPUs under ``torchrun``/``deepspeed`` (each rank loads its shard of every global batch).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from gan.progress import progress
from gan.train import checkpoint as ckpt
from gan.train.engine import init_distributed, make_engine, world
from gan.train.sharding import shard

try:  # the shared adversarial losses (gan/losses/gan.py); the local copy keeps training usable without it
    from gan.losses.gan import GANLoss
except ImportError:  # pragma: no cover - only while gan.losses is absent
    class GANLoss:
        """Minimal LSGAN / vanilla / hinge losses (D loss × 0.5, as gan-compression; docs/methods.md,
        "GAN losses")."""

        def __init__(self, kind: str = "lsgan", d_scale: float = 0.5):
            if kind not in ("lsgan", "vanilla", "hinge"):
                raise ValueError(f"unknown GAN loss {kind!r}; choose one of lsgan, vanilla, hinge")
            self.kind, self.d_scale = kind, d_scale

        def _t(self, z, real):
            t = torch.full_like(z, float(real))
            return F.mse_loss(z, t) if self.kind == "lsgan" else F.binary_cross_entropy_with_logits(z, t)

        def d_loss(self, real, fake):
            if self.kind == "hinge":
                return self.d_scale * (F.relu(1 - real).mean() + F.relu(1 + fake).mean())
            return self.d_scale * (self._t(real, True) + self._t(fake, False))

        def g_loss(self, fake):
            return -fake.mean() if self.kind == "hinge" else self._t(fake, True)

ExtraLoss = Callable[[object, torch.Tensor, "Pix2PixTrainer"], tuple[torch.Tensor, dict]]


class NonFiniteLossError(RuntimeError):
    """A loss became NaN/inf: names the step, the loss and the last good checkpoint to resume from."""

    def __init__(self, step: int, name: str, value: float, checkpoint: Path | None):
        self.step, self.name, self.value, self.checkpoint = step, name, value, checkpoint
        where = f"resume from {checkpoint}" if checkpoint else "no checkpoint saved yet"
        super().__init__(f"non-finite {name}={value} at step {step}; last good checkpoint: {where} "
                         "(lower the lr or check the data)")

    def __reduce__(self):  # pickled across processes (a Ray Train worker's error reaches the driver)
        return type(self), (self.step, self.name, self.value, self.checkpoint)


@dataclass
class TrainConfig:
    """pix2pix defaults of docs/methods.md, "Teacher training" (hinge as gan-compression trains its
    teachers)."""

    steps: int = 1000
    batch_size: int = 1  # global: split evenly over the ranks
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    decay_steps: int = 0  # linear decay of lr to 0 over the last ``decay_steps`` (0: constant)
    gan_loss: str = "hinge"
    lambda_l1: float = 100.0
    zero_stage: int = 0
    backend: str = "deepspeed"
    log_every: int = 10  # history entry (and progress-bar update) every N steps
    ckpt_every: int = 0  # 0: only the final checkpoint (when out_dir is set)
    keep_checkpoints: int = 0  # > 0: remove all but the newest N after each save (0: keep all)
    seed: int = 0
    out_dir: str | None = None
    quiet: bool = False
    #: D steps only, against G in eval mode (an imported teacher's D warm-up, docs/import_teacher.md):
    #: G is never stepped, its losses are still logged
    freeze_generator: bool = False
    #: D sees cat(x, image) (pix2pix); False: the image alone, as CycleGAN's D — the fine-tune of a
    #: CycleGAN G_A with its D_A (docs/methods.md, "Unpaired (CycleGAN) teachers")
    conditional_d: bool = True
    extra: dict = field(default_factory=dict)  # free-form, saved with the checkpoint

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "betas": list(self.betas)}


def split_batch(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, target) of an aligned-dataset dict ``{"A", "B"}`` or an ``(x, y)`` pair."""
    if isinstance(batch, dict):
        return batch["A"], batch["B"]
    return batch[0], batch[1]


def real_images(batch, y: torch.Tensor) -> torch.Tensor:
    """What D learns as real: ``batch["real"]`` when the batch carries it (unpaired distillation:
    real domain-B images, while ``B`` is the teacher's output the L1 term pulls toward), else the
    target ``y``."""
    return batch["real"] if isinstance(batch, dict) and "real" in batch else y


class Pix2PixTrainer:
    def __init__(self, generator, discriminator, cfg: TrainConfig | None = None,
                 extra_g_loss: ExtraLoss | None = None, extra_d_loss: ExtraLoss | None = None,
                 aux_modules=(), stateful: dict | None = None):
        """``aux_modules``: extra trainables of the G loss (e.g. GAN Compression's 1×1 distillation
        mappings): one Adam (the G lr and betas) steps them with every G step; their gradients are
        averaged over the ranks; they are saved with the checkpoints as ``AUX.safetensors``.
        ``stateful``: name → hook state with ``state_dict()``/``load_state_dict()`` (tensors only, e.g.
        VEM's EBM and its optimizer), identical on every rank, saved as ``<name>.safetensors``."""
        self.cfg = cfg = cfg or TrainConfig()
        if cfg.backend == "deepspeed":
            init_distributed()
        self.rank, self.world_size = world() if cfg.backend == "deepspeed" else (0, 1)
        if cfg.batch_size % self.world_size:
            raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {self.world_size} ranks")
        self.micro_batch = cfg.batch_size // self.world_size
        torch.manual_seed(cfg.seed)
        if not torch.cuda.is_available():
            # Adam's second moments of tiny gradients go subnormal and CPU math on them crawls
            # (measured 20-90x slower steps on the tiny test models): flush them to zero.
            torch.set_flush_denormal(True)
        kw = dict(lr=cfg.lr, betas=cfg.betas, zero_stage=cfg.zero_stage, micro_batch=self.micro_batch,
                  backend=cfg.backend)
        self.g, self.d = make_engine(generator, **kw), make_engine(discriminator, **kw)
        self.aux = torch.nn.ModuleList(list(aux_modules)).to(self.g.device)
        aux_params = [p for p in self.aux.parameters() if p.requires_grad]
        self.aux_opt = torch.optim.Adam(aux_params, lr=cfg.lr, betas=cfg.betas) if aux_params else None
        self.stateful = dict(stateful or {})
        self.gan = GANLoss(cfg.gan_loss)
        self.extra_g_loss = extra_g_loss
        self.extra_d_loss = extra_d_loss  # (batch, fake.detach(), trainer) → (term, stats), added to L_D
        self.step, self.history, self.last_checkpoint = 0, [], None
        self.steps_per_sec = float("nan")
        self.on_checkpoint: Callable | None = None  # on_checkpoint(trainer) on rank 0 after every save

    @property
    def generator(self):
        return self.g.module

    @property
    def discriminator(self):
        return self.d.module

    # ------------------------------------------------------------------ one iteration

    def lr_at(self, step: int) -> float:
        """Constant, then linear to 0 over the last ``decay_steps`` (a function of the step: resume-safe)."""
        c = self.cfg
        if c.decay_steps <= 0:
            return c.lr
        return c.lr * min(1.0, (c.steps - step) / c.decay_steps)

    def _local(self, t: torch.Tensor) -> torch.Tensor:
        """This rank's slice of a global batch (the whole batch when it already is a micro batch)."""
        if self.world_size > 1 and t.shape[0] == self.cfg.batch_size:
            t = t[self.rank * self.micro_batch:(self.rank + 1) * self.micro_batch]
        return t.to(self.g.device, non_blocking=True)

    def _mean(self, values: dict[str, torch.Tensor]) -> dict[str, float]:
        """Scalars averaged over ranks (so every rank sees the same NaN and stops together)."""
        v = torch.stack([t.detach().float().reshape(()) for t in values.values()])
        if self.world_size > 1:
            v = v.to(self.g.device)
            torch.distributed.all_reduce(v)
            v = v / self.world_size
        return dict(zip(values, v.tolist()))

    def _check(self, stats: dict[str, float], step: int) -> None:
        for k, v in stats.items():
            if not math.isfinite(v):
                raise NonFiniteLossError(step, k, v, self.last_checkpoint)

    def d_input(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """D's input for ``image`` generated from (or paired with) ``x``: cat(x, image), or the image
        alone for an unconditional D (``TrainConfig.conditional_d``)."""
        return torch.cat([x, image], 1) if self.cfg.conditional_d else image

    def train_step(self, batch) -> dict[str, float]:
        """One D step then one G step on ``batch``; returns the step's (rank-averaged) scalars."""
        step = self.step + 1
        x, y = (self._local(t) for t in split_batch(batch))
        real = self._local(real_images(batch, y))
        lr = self.lr_at(self.step)
        for opt in (self.g.optimizer, self.d.optimizer, self.aux_opt):
            for grp in (opt.param_groups if opt is not None else ()):
                grp["lr"] = lr
        frozen = self.cfg.freeze_generator
        with torch.no_grad() if frozen else contextlib.nullcontext():
            fake = self.g(x)

        _requires_grad(self.d.module, True)
        real_logits, fake_logits = self.d(self.d_input(x, real)), self.d(self.d_input(x, fake.detach()))
        loss_d = self.gan.d_loss(real_logits, fake_logits)
        d_acc = self.gan.d_accuracy(real_logits.detach(), fake_logits.detach())  # gan.metrics.stability
        d_extra = {}
        if self.extra_d_loss is not None:  # e.g. the neighbourhood D term of gan.train.distill
            term, d_extra = self.extra_d_loss(batch, fake.detach(), self)
            loss_d = loss_d + term
            d_extra = {"loss_d_extra": term, **d_extra}
        stats = self._mean({"loss_d": loss_d, "d_acc": d_acc, **{k: torch.as_tensor(v) for k, v in d_extra.items()}})
        self._check(stats, step)
        self.d.backward(loss_d)
        self.d.step()

        _requires_grad(self.d.module, False)  # G step: gradients flow through D into G only
        with torch.no_grad() if frozen else contextlib.nullcontext():
            gan_g = self.gan.g_loss(self.d.module(self.d_input(x, fake)))
        l1 = F.l1_loss(fake, y)
        loss_g = gan_g + self.cfg.lambda_l1 * l1
        extra = {}
        if frozen:
            _requires_grad(self.d.module, True)
            self.step = step
            g_stats = self._mean({"loss_g": loss_g, "gan_g": gan_g, "l1": l1})
            return {"step": step, **stats, **g_stats, "lr": lr}
        if self.extra_g_loss is not None:
            term, extra = self.extra_g_loss(batch, fake, self)
            loss_g = loss_g + term
            extra = {"loss_extra": term, **extra}
        g_stats = self._mean({"loss_g": loss_g, "gan_g": gan_g, "l1": l1,
                              **{k: torch.as_tensor(v) for k, v in extra.items()}})
        self._check(g_stats, step)
        self._g_step(loss_g, step)
        return {"step": step, **stats, **g_stats, "lr": lr}

    def _g_step(self, loss_g, step: int) -> None:
        """G's backward and step (with the objective's auxiliary parameters, e.g. GKA's projections),
        then D trainable again for the next D step."""
        if self.aux_opt is not None:
            self.aux_opt.zero_grad(set_to_none=True)
        self.g.backward(loss_g)
        self.g.step()
        if self.aux_opt is not None:
            self._step_aux()
        _requires_grad(self.d.module, True)
        self.step = step

    def _step_aux(self) -> None:
        params = [p for p in self.aux.parameters() if p.grad is not None]
        if self.world_size > 1:
            for p in params:
                torch.distributed.all_reduce(p.grad)
                p.grad /= self.world_size
        self.aux_opt.step()

    # ------------------------------------------------------------------ the loop

    def _batches(self, data):
        """Cycle ``data`` from the current step, so a resume sees exactly the batches an uninterrupted
        run would.  A DataLoader (or a wrapper with a ``loader``) is re-cut by ``sharding.shard``: each
        rank loads only its slice of every global batch, in the 1-process order, and a resume starts at
        its batch without loading the skipped ones.  Any other iterable yields global batches that
        each rank slices (``_local``)."""
        sharded = shard(data, self.cfg.batch_size, self.rank, self.world_size, self.cfg.seed)
        if sharded is not None:
            local, sampler = sharded
            epoch, skip = divmod(self.step, sampler.batches_per_epoch)
            dataset = getattr(local, "dataset", None)
            while True:
                sampler.set_epoch(epoch, skip)
                if hasattr(dataset, "set_epoch"):
                    dataset.set_epoch(epoch)
                yield from local
                skip, epoch = 0, epoch + 1
        n = len(data)
        epoch, skip = divmod(self.step, n)
        gen = getattr(data, "generator", None)
        base = gen.initial_seed() if gen is not None else None
        while True:
            if gen is not None:
                gen.manual_seed(base + epoch)
            if hasattr(getattr(data, "dataset", None), "set_epoch"):
                data.dataset.set_epoch(epoch)
            for i, b in enumerate(data):
                if i >= skip:
                    yield b
            skip, epoch = 0, epoch + 1

    def fit(self, data) -> list[dict]:
        """Train until ``cfg.steps`` (continuing after ``resume``); returns the history."""
        c = self.cfg
        bar = progress(total=c.steps, initial=self.step, quiet=c.quiet or self.rank != 0, desc="pix2pix")
        start_step, t0 = self.step, time.perf_counter()
        self.g.train(not c.freeze_generator)
        self.d.train()
        batches = self._batches(data)
        try:
            while self.step < c.steps:
                rec = self.train_step(next(batches))
                if self.step % max(1, c.log_every) == 0 or self.step == c.steps:
                    self.history.append(rec)
                    bar.set_postfix(d=f"{rec['loss_d']:.3f}", g=f"{rec['loss_g']:.3f}", l1=f"{rec['l1']:.3f}")
                bar.update(1)
                if c.out_dir and ((c.ckpt_every and self.step % c.ckpt_every == 0) or self.step == c.steps):
                    self.save_checkpoint()
        finally:
            bar.close()
        dt = time.perf_counter() - t0
        self.steps_per_sec = (self.step - start_step) / dt if dt > 0 else float("nan")
        return self.history

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, out_dir=None) -> Path:
        """``out_dir/checkpoints/step_N/``: G/D safetensors, per-rank optimizer trees (ZeRO: each rank's
        partition) and RNG states, trainer state.  Every rank must call it."""
        from safetensors.torch import save_file

        final = ckpt.step_dir(out_dir or self.cfg.out_dir, self.step)
        engines = (("G", self.g), ("D", self.d))
        opt = {n: ckpt.optimizer_state(e) for n, e in engines}
        weights = {n: ckpt.module_state(e, self.rank) for n, e in engines}  # ZeRO-3: a collective

        def write(tmp: Path):
            for n, eng in engines:
                ckpt.save_tree(opt[n], tmp / f"optim_{n}.rank{self.rank}")
                if self.rank == 0:
                    save_file(weights[n], str(tmp / f"{n}.safetensors"))
                    if hasattr(eng.module, "architecture"):
                        (tmp / f"{n}.architecture.json").write_text(json.dumps(eng.module.architecture()))
            if self.aux_opt is not None and self.rank == 0:
                save_file({k: v.detach().cpu().contiguous() for k, v in self.aux.state_dict().items()},
                          str(tmp / "AUX.safetensors"))
                ckpt.save_tree(self.aux_opt.state_dict(), tmp / "optim_AUX")
            for name, obj in self.stateful.items():
                state = obj.state_dict() if self.rank == 0 else {}
                if state:
                    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()},
                              str(tmp / f"{name}.safetensors"))
            rng = {"torch": torch.get_rng_state()}
            if torch.cuda.is_available():
                rng.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
            save_file(rng, str(tmp / _rng_file(self.rank)))
            if self.rank == 0:
                (tmp / ckpt.STATE).write_text(json.dumps(
                    {"step": self.step, "seed": self.cfg.seed, "world_size": self.world_size,
                     "config": self.cfg.to_json(), "history": self.history}, indent=1))

        self.last_checkpoint = ckpt.write_atomic(final, write, self.rank, self.world_size)
        if self.rank == 0 and self.cfg.keep_checkpoints > 0:
            ckpt.remove_old(final.parent.parent, self.cfg.keep_checkpoints)
        if self.on_checkpoint is not None and self.rank == 0:  # e.g. the teacher's sample grids
            self.on_checkpoint(self)
        return self.last_checkpoint

    def resume(self, path) -> Path:
        """Load weights, optimizer states, RNG and history from a checkpoint (or a run's latest one)."""
        d = ckpt.resolve(path)
        state = ckpt.read_json(d / ckpt.STATE)
        saved_stage = int(state["config"].get("zero_stage", 0))
        if saved_stage != self.cfg.zero_stage:
            raise ckpt.CheckpointError(f"{d} holds ZeRO stage {saved_stage} optimizer states, this run uses "
                                       f"stage {self.cfg.zero_stage}; resume with zero_stage={saved_stage}")
        if saved_stage and state["world_size"] != self.world_size:  # stage 0 states are replicated
            raise ckpt.CheckpointError(f"{d} was written by {state['world_size']} ranks, this run has "
                                       f"{self.world_size}; ZeRO partitions cannot be remapped yet (resume "
                                       f"with {state['world_size']} processes)")
        step = int(state["step"])
        for n, eng in (("G", self.g), ("D", self.d)):
            try:
                ckpt.load_module_state(eng, ckpt.read_safetensors(d / f"{n}.safetensors"))
            except RuntimeError as e:  # other widths / layers: the user resumed with other settings
                if "in loading state_dict" not in str(e):
                    raise
                was = state["config"].get("extra", {}).get("preset")
                hint = f"--preset {was} (or no --preset)" if was else "the settings it was trained with"
                raise ckpt.CheckpointError(f"{d / f'{n}.safetensors'} does not fit this run's {n} (other widths "
                                           f"or layers); resume with {hint}") from None
            ckpt.load_optimizer_state(eng, lambda r, n=n: ckpt.load_tree(d / f"optim_{n}.rank{r}"),
                                      self.rank, self.world_size)
            eng.global_steps = step  # one optimizer step per trainer step
        if self.aux_opt is not None:
            if not (d / "AUX.safetensors").is_file():
                raise ckpt.CheckpointError(f"{d} holds no AUX.safetensors for this run's auxiliary modules; "
                                           "resume with the objective the checkpoint was trained with")
            self.aux.load_state_dict(ckpt.read_safetensors(d / "AUX.safetensors"))
            self.aux_opt.load_state_dict(ckpt.load_tree(d / "optim_AUX"))
        for name, obj in self.stateful.items():
            f = d / f"{name}.safetensors"
            if f.is_file():
                obj.load_state_dict(ckpt.read_safetensors(f))
        own = d / _rng_file(self.rank)
        rng = ckpt.read_safetensors(own if own.is_file() else d / _rng_file(0))
        torch.set_rng_state(rng["torch"])
        if torch.cuda.is_available() and "cuda0" in rng:
            torch.cuda.set_rng_state_all([rng[f"cuda{i}"] for i in range(torch.cuda.device_count())
                                          if f"cuda{i}" in rng])
        self.step, self.history, self.last_checkpoint = step, list(state["history"]), d
        return d


def _rng_file(rank: int) -> str:
    return "rng.safetensors" if rank == 0 else f"rng.rank{rank}.safetensors"


def _requires_grad(module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)
