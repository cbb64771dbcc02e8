"""GAN Compression's once-for-all supernet with first-k channel slicing (docs/methods.md, "GAN Compression").

A config fixes one width per *position*: every channel group is a position, except the residual
blocks' inner groups, which GAN Compression ties into three stages of n_blocks/3 blocks (fewer
stages when there are fewer than three blocks).  For ResNet-9: stem, down1, res, stage1..3, up1,
up2 → 8 positions, written ``"c0_c1_…_c7"``.  A U-Net has no inner groups: each encoder and
decoder group is a position (unet_256: enc1..enc8, dec1..dec7 → 15); its decoder convs read the
skip concat of two groups, which the slicing cuts at both groups' offsets (``gan.pruning.slicing``).
Our config values are the channel counts themselves (GAN Compression writes ngf-like numbers that
each position multiplies by 1, 2 or 4).  Width choices are fractions of each position's full width
(default 1, 7/8, …, 1/8, rounded, ≥ 1).

In train mode every forward samples one config (its own seeded generator, drawn from
``seed`` and a draw counter kept as a buffer: identical on every rank and exact across a resume);
``set_config`` fixes one; ``.active_spec`` is the first-k spec of the active config; ``features``
gives the active sub-net's distillation taps; ``export`` the dense sub-net (``prune``).

Deviation from GAN Compression (documented in docs/methods.md): GAN Compression trains a
MobileNet-style student (separable convs) from random init.  Ours is the *teacher's own
architecture*, initialised from the teacher's weights with the channels of every group reordered
by saliency (most salient first), so first-k = the k most salient channels.  Every method then
exports the same model class and results compare at equal MACs; the MARL search can score specs
by slicing this supernet (``envs.backends.supernet``).  Because reordering does not change the
function, the full-width supernet starts equal to the teacher.

Channel order: the supernet trains a permuted copy (``net``).  ``save`` exports it back in the
teacher's channel order (``unpermuted``), so a spec in the teacher's indexing (``teacher_spec``)
prunes the teacher and the trained supernet alike, and ``prune(unpermuted(), teacher_spec(cfg))``
computes exactly the config's sub-net.
"""
from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gan.pruning.macs import MacsModel
from gan.pruning.physical import prune
from gan.pruning.saliency import saliency
from gan.pruning.slicing import SlicePlan, first_k_spec, permute_channels
from gan import data as gdata, export as gexport
from gan.cache import build_once, cache_root, file_digest
from gan.determinism import ProcessSettings, controlled
from gan.losses.feature_distill import feature_distill, forward_with_taps, has_distill_taps
from gan.train.builder import build_trainer
from gan.train.distill import DistillHooks, TeacherTargets
from gan.train.pix2pix import TrainConfig

#: width choices as fractions of each position's full width (GAN Compression's 64-channel set ÷ 64, + 1/8)
DEFAULT_FRACTIONS = (1.0, 7 / 8, 3 / 4, 5 / 8, 1 / 2, 3 / 8, 1 / 4, 1 / 8)
STAGES = 3
META = "supernet.json"


def config_str(cfg: Sequence[int]) -> str:
    return "_".join(str(int(c)) for c in cfg)


class Supernet(nn.Module):
    """First-k slicing supernet around a copy of ``teacher`` (see the module docstring)."""

    def __init__(self, teacher, *, size: int = 256, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                 criterion: str = "l1", seed: int = 0, order: Mapping[str, Sequence[int]] | None = None,
                 max_plans: int = 64):
        super().__init__()
        if not hasattr(teacher, "channel_groups"):
            raise ValueError(f"{type(teacher).__name__} is not a zoo model; pass a generator from gan.models")
        bad = [f for f in fractions if not 0 < float(f) <= 1]
        if bad or not fractions:
            raise ValueError(f"width fractions must lie in (0, 1], got {list(fractions)}; e.g. 1, 0.75, 0.5, 0.25")
        groups = teacher.channel_groups()
        if order is None:  # most salient first, the criterion PruningTask ranks channels by
            order = {g.name: torch.argsort(saliency(teacher, g, criterion), descending=True, stable=True).tolist()
                     for g in groups}
        self.order = {g.name: [int(i) for i in order.get(g.name, range(g.size))] for g in groups}
        self.net = permute_channels(teacher, self.order).requires_grad_(True)  # a copy: the teacher stays frozen
        self.size, self.seed, self.criterion = int(size), int(seed), criterion
        self.fractions = tuple(float(f) for f in fractions)
        self.group_sizes = {g.name: g.size for g in groups}
        self.positions = self._positions(groups)
        self._full = tuple(max(self.group_sizes[n] for n in names) for _, names in self.positions)
        self.choices = []
        for _, names in self.positions:
            width = max(self.group_sizes[n] for n in names)
            self.choices.append(sorted({max(1, round(f * width)) for f in self.fractions}, reverse=True))
        self.register_buffer("draws", torch.zeros((), dtype=torch.long))
        self.record_taps = False  # set by gan.losses.feature_distill
        self._fixed: tuple[int, ...] | None = None
        self._active: tuple[int, ...] = self.largest
        self._taps = None
        self._plans: OrderedDict = OrderedDict()
        self._max_plans = int(max_plans)
        self._macs: MacsModel | None = None

    @staticmethod
    def _positions(groups) -> list[tuple[str, list[str]]]:
        """Every group its own position, except "inner" groups: tied into ≤ 3 stages of consecutive blocks."""
        inner = [g.name for g in groups if g.kind == "inner"]
        stages = [list(map(str, s)) for s in np.array_split(inner, min(STAGES, len(inner)))] if inner else []
        out = []
        for g in groups:
            if g.kind != "inner":
                out.append((g.name, [g.name]))
            elif g.name == inner[0]:
                out += [(f"stage{i + 1}", s) for i, s in enumerate(stages)]
        return out

    # ------------------------------------------------------------------ configs

    @property
    def position_names(self) -> list[str]:
        return [p for p, _ in self.positions]

    @property
    def largest(self) -> tuple[int, ...]:
        return tuple(c[0] for c in self.choices)

    @property
    def smallest(self) -> tuple[int, ...]:
        return tuple(c[-1] for c in self.choices)

    def parse(self, cfg) -> tuple[int, ...]:
        """A config string ``"c0_…"`` or a sequence of per-position channel counts → checked tuple."""
        try:
            vals = tuple(int(v) for v in (cfg.split("_") if isinstance(cfg, str) else cfg))
        except (TypeError, ValueError):
            raise ValueError(f"config {cfg!r} is not '_'-separated integers; "
                             f"e.g. {config_str(self.largest)!r}") from None
        if len(vals) != len(self.positions):
            raise ValueError(f"config {cfg!r} has {len(vals)} values, the supernet has {len(self.positions)} "
                             f"positions ({', '.join(self.position_names)})")
        for v, (name, groups) in zip(vals, self.positions):
            width = max(self.group_sizes[n] for n in groups)
            if not 1 <= v <= width:
                raise ValueError(f"config {cfg!r}: position {name} takes 1..{width} channels, got {v}")
        return vals

    def counts(self, cfg) -> dict[str, int]:
        """Group → kept channels of a config (tied groups share the count, cut to each group's size)."""
        return {n: min(v, self.group_sizes[n]) for v, (_, groups) in zip(self.parse(cfg), self.positions)
                for n in groups}

    def spec(self, cfg) -> dict[str, list[int]]:
        """First-k spec of a config, in the supernet's own (saliency-sorted) channel order."""
        return first_k_spec(self.counts(cfg))

    def teacher_spec(self, cfg) -> dict[str, list[int]]:
        """The same channels in the teacher's indexing: applies to the teacher and to ``unpermuted()``."""
        return {n: sorted(self.order[n][:k]) for n, k in self.counts(cfg).items()}

    def macs(self, cfg) -> int:
        """MACs of a config's sub-net at ``size``² (closed form, ``MacsModel``)."""
        if self._macs is None:
            self._macs = MacsModel(self.net, self.size)
        return int(self._macs.macs(self.counts(cfg)))

    def sample(self, generator: torch.Generator) -> tuple[int, ...]:
        """One config, each position uniform over its choices."""
        return tuple(c[int(torch.randint(len(c), (1,), generator=generator))] for c in self.choices)

    def set_config(self, cfg) -> None:
        """Fix the config every forward uses (None: sample in train mode, full width in eval mode)."""
        self._fixed = None if cfg is None else self.parse(cfg)
        if self._fixed is not None:
            self._active = self._fixed

    @property
    def active_config(self) -> str:
        return config_str(self._active)

    @property
    def active_spec(self) -> dict[str, list[int]]:
        return self.spec(self._active)

    # ------------------------------------------------------------------ forward

    def _pick(self) -> tuple[int, ...]:
        if self._fixed is not None:
            cfg = self._fixed
        elif self.training:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.draws))
            self.draws.add_(1)
            cfg = self.sample(g)
        else:
            cfg = self.largest
        self._active = cfg
        return cfg

    def _plan(self, cfg: tuple[int, ...]) -> SlicePlan | None:
        """Cached cuts + skeleton of a config (None for the full width: run ``net`` itself)."""
        if cfg == self._full:
            return None
        plan = self._plans.get(cfg)
        if plan is None:
            plan = self._plans[cfg] = SlicePlan(self.net, self.spec(cfg))
            if len(self._plans) > self._max_plans:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(cfg)
        return plan

    def run(self, fn, *args, cfg=None):
        """``fn(sub_net, *args)`` on the config's sub-net (default: the active one)."""
        plan = self._plan(self._active if cfg is None else self.parse(cfg))
        return fn(self.net, *args) if plan is None else plan(self.net, *args, fn=fn)

    def forward(self, x):
        self._pick()
        if self.record_taps and self.training and torch.is_grad_enabled():
            out, feats = self.run(forward_with_taps, x)
            self._taps = (out, feats)
            return out
        self._taps = None
        return self.run(lambda m, z: m(z), x)

    def pop_taps(self, out: torch.Tensor) -> dict[str, torch.Tensor] | None:
        """The distillation taps of the forward that returned ``out`` (None if another forward ran)."""
        taps, self._taps = self._taps, None
        return taps[1] if taps is not None and taps[0] is out else None

    def features(self, x) -> dict[str, torch.Tensor]:
        """Distillation taps of the active sub-net (does not sample a new config)."""
        return self.run(lambda m, z: m.features(z), x)

    # ------------------------------------------------------------------ export

    def export(self, cfg=None):
        """The config's dense sub-generator (a copy of the first-k slices; same class as the teacher)."""
        return prune(self.net, self.spec(self._active if cfg is None else cfg))

    def unpermuted(self):
        """The full-width trained generator in the teacher's channel order."""
        inverse = {n: [0] * len(o) for n, o in self.order.items()}
        for n, o in self.order.items():
            for j, c in enumerate(o):
                inverse[n][c] = j
        return permute_channels(self.net, inverse)

    def save(self, out_dir, discriminator=None, feature_distill: bool | None = None) -> Path:
        """``out_dir/generator`` (teacher channel order, ``gan.export``), optional ``discriminator``,
        and ``supernet.json`` (channel order, fractions, seed, draws; ``feature_distill``: whether the
        training had the feature term, when given) from which ``load`` rebuilds it."""
        out = Path(out_dir)
        gexport.save(self.unpermuted(), out / "generator", size=self.size, onnx=False, latency_runs=1)
        if discriminator is not None:
            gexport.save(discriminator, out / "discriminator", size=self.size, onnx=False, latency_runs=1)
        meta = {"order": self.order, "fractions": list(self.fractions), "criterion": self.criterion,
                "seed": self.seed, "size": self.size, "draws": int(self.draws),
                "positions": self.positions, "choices": self.choices}
        if feature_distill is not None:  # trained with the feature term (False: a U-Net, no taps)
            meta["feature_distill"] = bool(feature_distill)
        (out / META).write_text(json.dumps(meta, indent=1))
        return out

    @classmethod
    def load(cls, path) -> "Supernet":
        """Rebuild a saved supernet (``save``'s folder) with its training channel order."""
        d = Path(path)
        if not (d / META).is_file():
            raise ValueError(f"{d} has no {META}; pass the 'supernet' folder the gan-compression pipeline wrote")
        meta = json.loads((d / META).read_text())
        net = cls(gexport.load(d / "generator"), size=meta["size"], fractions=meta["fractions"],
                  criterion=meta["criterion"], seed=meta["seed"], order=meta["order"])
        net.draws.fill_(int(meta.get("draws", 0)))
        return net.eval()

    def extra_repr(self) -> str:
        return f"positions={self.position_names}, choices={self.choices}, seed={self.seed}"


# ---------------------------------------------------------------------------------------- training

@dataclass(frozen=True)
class SupernetSettings:
    """How a supernet is trained (GAN Compression's objective, docs/methods.md, "GAN Compression");
    every field is part of the supernet cache key (``cached_supernet``)."""

    steps: int = 1000
    batch_size: int = 4
    lr: float = 2e-4
    gan_loss: str = "hinge"
    lambda_recon: float = 10.0
    lambda_distill: float = 1.0
    fractions: tuple = DEFAULT_FRACTIONS
    criterion: str = "l1"
    seed: int = 0
    backend: str = "deepspeed"   # the trainer's engine (gan.train.engine)
    zero_stage: int = 0

    def __post_init__(self):
        if self.steps < 0:
            raise ValueError(f"supernet steps must be ≥ 0, got {self.steps}")
        if self.zero_stage == 3:  # ZeRO-3 gathers weights in module hooks, which the sliced sub-nets bypass
            raise ValueError("the supernet slices its weights outside the modules, which ZeRO stage 3 partitions; "
                             "use zero_stage 0, 1 or 2")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fractions"] = [float(f) for f in self.fractions]
        return d


def effective_settings(teacher, settings: SupernetSettings) -> tuple[SupernetSettings, bool]:
    """(the settings the supernet of ``teacher`` trains with, whether they include the feature term):
    a generator without distillation taps (a U-Net) trains with λ_distill = 0 — reconstruction + GAN
    loss only (docs/methods.md, "GAN Compression") — and its cache key says so; ResNet's are unchanged."""
    from dataclasses import replace


    if has_distill_taps(teacher):
        return settings, True
    return replace(settings, lambda_distill=0.0), False


@dataclass
class SupernetTraining:
    """A trained supernet, the D trained along, the trainer (its rank and history) and the cost;
    ``feature_distill``: whether the objective had the feature term (``effective_settings``)."""

    supernet: Supernet
    discriminator: nn.Module
    trainer: object
    seconds: float
    cpu_s: float
    feature_distill: bool = True


def train_supernet(run, settings: SupernetSettings, quiet: bool = True) -> SupernetTraining:
    """Train the teacher's supernet (``run``: a ``gan.teacher_run.TeacherRun``) on its train split with the
    one pix2pix trainer: L_G = L_GAN + λ_recon·||G_S(x) − G_T(x)||_1 + λ_distill·L_distill
    (``TeacherTargets`` makes G_T(x) the target, ``feature_distill`` adds the taps), one config sampled
    per step, D = a copy of the teacher's D trained along.  Used by the GAN Compression baseline and
    the ``supernet`` search backend.  A CycleGAN teacher (``run.paired`` False): GAN Compression's
    unpaired recipe — the same pseudo pairs, its unconditional D_A shown real domain-B images
    (docs/methods.md, "Unpaired (CycleGAN) teachers").  A teacher without distillation taps (a U-Net):
    λ_distill = 0, no feature term (``effective_settings``; the callers print the notice)."""
    import copy


    teacher, size = run.generator.eval(), int(run.size)
    s, taps = effective_settings(teacher, settings)
    supernet = Supernet(teacher, size=size, fractions=s.fractions, criterion=s.criterion, seed=s.seed)
    cfg = TrainConfig(steps=s.steps, batch_size=s.batch_size, lr=s.lr, gan_loss=s.gan_loss,
                      lambda_l1=s.lambda_recon, backend=s.backend, zero_stage=s.zero_stage, seed=s.seed, quiet=quiet,
                      log_every=max(1, s.steps // 20), conditional_d=run.paired,
                      extra={"method": "gan-compression", "lambda_distill": s.lambda_distill,
                             "feature_distill": taps})
    hooks = None  # no taps: the trainer's own terms, L_GAN + λ_recon·L1 to the teacher
    if taps:
        hook, aux = feature_distill(teacher, supernet, s.lambda_distill, size=size)
        hooks = DistillHooks(hook, None, aux=aux)
    trainer = build_trainer("pix2pix", supernet.train(), copy.deepcopy(run.discriminator).train(), cfg, hooks)
    device = trainer.g.device
    teacher = teacher.to(device)
    root = gdata.resolve_dataset(run.data, size=size)
    loader = gdata.make_loader(gdata.open_dataset(root, size=size, split="train"), s.batch_size, seed=s.seed)
    t0, cpu0 = time.perf_counter(), time.process_time()
    if s.steps:
        trainer.fit(TeacherTargets(loader, teacher, device=device, paired=run.paired))
    return SupernetTraining(trainer.generator, trainer.discriminator, trainer,
                            time.perf_counter() - t0, time.process_time() - cpu0, taps)


#: the file of a cached supernet that records how it was trained and what that cost
TRAINED = "trained.json"


def supernet_key(run, settings: SupernetSettings) -> str:
    """Cache key of ``run``'s supernet: the teacher's exported weights, data, size and the settings."""
    import hashlib


    exports = [Path(run.dir) / run.meta[m] for m in ("generator", "discriminator")]
    weights = file_digest(*(f for e in exports for f in sorted(e.glob("*.safetensors")) + [e / "architecture.json"]))
    blob = json.dumps({"teacher": weights, "data": str(run.data), "size": int(run.size),
                       "settings": settings.to_dict()}, sort_keys=True)
    return f"{weights[:8]}-{hashlib.sha1(blob.encode()).hexdigest()[:12]}"


def cached_supernet(run, settings: SupernetSettings, folder=None, quiet: bool = True) -> tuple[Path, dict]:
    """``run``'s supernet trained with ``settings``: reused from ``$GANPRUNE_CACHE/supernets/<key>`` when
    it is there (``folder`` None), else trained now (into the cache, or into ``folder``, which a
    resumed run finds complete).  Returns the
    saved supernet's folder (``Supernet.load``) and its cost: ``steps``, ``train_s``, ``cpu_s`` (of the
    training, whenever it ran), ``cached`` (True: reused, no training in this call) and
    ``feature_distill`` (False: a teacher without taps, trained with λ_distill = 0; ``effective_settings``)."""
    settings, taps = effective_settings(run.generator, settings)  # a U-Net's key records λ_distill = 0
    final = Path(folder) if folder is not None else cache_root() / "supernets" / supernet_key(run, settings)

    def build(tmp: Path) -> None:
        # under its own seed, and the caller's generators restored after: a search that trains the
        # supernet draws the same numbers afterwards as one that finds it in the cache
        with controlled(settings.seed, ProcessSettings.current()):
            t = train_supernet(run, settings, quiet=quiet)
        run.generator.cpu()  # the trainer took the teacher to its device; the backends score on the CPU
        t.supernet.cpu().save(tmp, discriminator=t.discriminator.cpu(), feature_distill=t.feature_distill)
        (tmp / TRAINED).write_text(json.dumps({"settings": settings.to_dict(), "steps": settings.steps,
                                               "train_s": round(t.seconds, 3), "cpu_s": round(t.cpu_s, 3),
                                               "feature_distill": t.feature_distill, "teacher": str(run.dir)},
                                              indent=1))

    cached = build_once(final, TRAINED, build)
    rec = json.loads((final / TRAINED).read_text())
    return final, {"steps": rec["steps"], "train_s": rec["train_s"], "cpu_s": rec["cpu_s"], "cached": cached,
                   "feature_distill": bool(rec.get("feature_distill", taps))}
