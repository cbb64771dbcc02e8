"""Build a pruning problem (G task, D task, backend) from a teacher run and a few knobs.

Kept separate from the envs so a Gymnasium env, the RLlib env on a remote env runner and the driver
all build the same problem from the same plain-dict config.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch

from envs.task import PruningTask
from envs.backends import BACKENDS, LocalConfig
from envs.episode import GroupEpisode
from gan.latency_model import LatencyTarget
from gan.losses.density import DensityConfig
from gan.models import ResnetGenerator
from gan.models.patchgan import PatchGANDiscriminator
from gan.teacher_run import load_teacher_run


@dataclass
class ProblemConfig:
    teacher: str | None = None       # teacher run directory; None: a tiny random pair on noise (smoke use)
    macs_target: float = 0.25        # generator MACs: fraction (≤ 1) of the teacher's or absolute count
    d_macs_target: float | None = None  # discriminator MACs target; None: the generator's fraction
    criterion: str = "l1"            # saliency that picks which channels (l1 | gamma)
    min_ratio: float = 0.05          # lowest keep ratio an action maps to (AMC's lbound)
    multiple: int = 1                # G's widths on multiples of this block (--align; gan.pruning.align)
    latency: dict = field(default_factory=dict)  # gan.latency_model.LatencyTarget fields: G's budget is latency
    fill_budget: bool = True         # spend unused budget by scaling all ratios (see PruningTask.fill)
    prior: str = "l1"                # actions scale this allocation's keep ratios (envs.task.PRIORS)
    backend: str = "local"
    backend_config: dict = field(default_factory=dict)  # the backend's config fields (LocalConfig, SupernetConfig)
    density: dict = field(default_factory=dict)         # DensityConfig fields
    backend_workers: int = 0         # > 0: evaluations run on this many Ray actors (envs.backends.remote)
    backend_pool: str | None = None  # the name of those actors (set by whoever starts them)
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict | None) -> "ProblemConfig":
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown problem config key {unknown[0]!r}; known: {', '.join(sorted(known))}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Problem:
    generator: PruningTask
    discriminator: PruningTask
    backend: object
    size: int
    config: ProblemConfig


def tiny_random_pair(seed: int = 0):
    """A seeded tiny ResNet G + PatchGAN D (what the envs use when no teacher is given)."""
    torch.manual_seed(seed)
    return ResnetGenerator(ngf=8, n_blocks=2), PatchGANDiscriminator(input_nc=6, ndf=8, n_layers=2)


def build_problem(config: ProblemConfig | dict | None = None) -> Problem:
    cfg = config if isinstance(config, ProblemConfig) else ProblemConfig.from_dict(config)
    if cfg.backend not in BACKENDS:
        raise ValueError(f"unknown backend {cfg.backend!r}; choose one of {', '.join(BACKENDS)}")
    backend_cls = BACKENDS[cfg.backend]
    bcfg = getattr(backend_cls, "config_cls", LocalConfig)(**{"seed": cfg.seed, **cfg.backend_config})
    dcfg = DensityConfig(**{"seed": cfg.seed, **cfg.density})
    remote = cfg.backend_workers > 0
    if remote and not cfg.backend_pool:
        raise ValueError("backend_workers > 0 needs backend_pool, the name the workers were started under")
    if cfg.teacher:
        run = load_teacher_run(cfg.teacher)
        g, d, size = run.generator, run.discriminator, run.size
        backend = None if remote else backend_cls.from_teacher_run(run, bcfg, dcfg)
    else:
        size, (g, d), backend = 32, tiny_random_pair(cfg.seed), None
        if not remote:
            gen = torch.Generator().manual_seed(cfg.seed)
            x = torch.rand(bcfg.train_items + bcfg.eval_items, 3, size, size, generator=gen) * 2 - 1
            y = torch.rand(x.shape, generator=gen) * 2 - 1
            n = bcfg.train_items
            backend = backend_cls(g, d, (x[:n], y[:n]), (x[n:], y[n:]), bcfg, dcfg)
    if remote:  # the workers hold the real backend; this process only routes evaluations to them
        from envs.backends.remote import RemoteBackend

        backend = RemoteBackend(cfg.backend_pool, cfg.backend_workers, cfg.backend)
    latency = LatencyTarget(**cfg.latency) if cfg.latency else None
    gt = PruningTask(g, size, cfg.macs_target, cfg.criterion, cfg.min_ratio, cfg.multiple, cfg.prior, latency)
    d_target = cfg.d_macs_target if cfg.d_macs_target is not None else gt.target_macs / gt.full_macs
    dt = PruningTask(d, size, d_target, cfg.criterion, cfg.min_ratio, 1, cfg.prior)  # D is not deployed: not aligned
    return Problem(gt, dt, backend, size, cfg)


def problem_backend(config: dict):
    """The in-process backend of a problem config (what each remote backend worker builds)."""
    return build_problem(config).backend


def random_spec_pairs(problem: Problem, n: int, seed: int = 0) -> list[tuple[dict, dict]]:
    """``n`` (G spec, D spec) pairs from uniformly random actions, each within budget (what a fresh
    policy proposes): test and benchmark load for a backend."""
    import numpy as np


    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        specs = []
        for task in (problem.generator, problem.discriminator):
            ep = GroupEpisode(task, problem.config.fill_budget)
            ep.reset()
            while not ep.done:
                ep.act(rng.uniform(0.0, 1.0, 1))
            specs.append(task.spec(ep.final_counts()))
        pairs.append(tuple(specs))
    return pairs
