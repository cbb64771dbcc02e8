"""Fast GAN Compression's evolutionary search over supernet configs (docs/methods.md, "GAN Compression").

Generic: a config is a tuple of per-position values drawn from ``choices``; the caller gives
``score(cfg) -> float`` (lower is better; NaN counts as +inf) and ``macs(cfg) -> int``.  Each
generation keeps the top ``parent_ratio`` of the population as parents, and makes P children:
``mutation_ratio`` of them mutants of random parents (each position resampled with probability
``mutate_prob``), the rest uniform crossovers of two random parents.  A child above the MACs budget
is rejected and resampled, so no config over budget is ever scored or returned.  Parents carry
over; scores are cached by config string.

``weighted_sample`` biases the initial population toward wide choices (GAN Compression uses 2 for
horse→zebra): choice i of n, narrowest first, has weight 1 + (w − 1)·i/(n − 1).  The exact weighting
of the reference is unverified (docs/methods.md, "GAN Compression"); 1 means uniform.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

Config = tuple[int, ...]


@dataclass
class EvolutionConfig:
    population: int = 100
    generations: int = 500
    parent_ratio: float = 0.25
    mutation_ratio: float = 0.5
    mutate_prob: float = 0.3      # 0.4 for CycleGAN horse→zebra, 0.3 for pix2pix (GAN Compression)
    weighted_sample: float = 1.0  # initial population bias toward wide choices (1: uniform)
    max_tries: int = 10_000       # rejected samples per generation before giving up on the budget
    seed: int = 0

    def check(self) -> None:
        if self.population < 2:
            raise ValueError(f"population must be ≥ 2, got {self.population}")
        if self.generations < 1:
            raise ValueError(f"generations must be ≥ 1, got {self.generations}")
        if not 0 < self.parent_ratio <= 1 or not 0 <= self.mutation_ratio <= 1 or not 0 <= self.mutate_prob <= 1:
            raise ValueError("parent_ratio must lie in (0, 1], mutation_ratio and mutate_prob in [0, 1]")
        if self.weighted_sample < 1:
            raise ValueError(f"weighted_sample must be ≥ 1 (1: uniform), got {self.weighted_sample}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EvolutionResult:
    best: Config
    best_score: float
    best_macs: int
    history: list[dict] = field(default_factory=list)  # per generation: best-so-far, its score and MACs
    evaluated: int = 0                                  # distinct configs scored

    @property
    def best_key(self) -> str:
        return key(self.best)


def key(cfg: Sequence[int]) -> str:
    return "_".join(str(int(c)) for c in cfg)


def evolution_search(choices: Sequence[Sequence[int]], score: Callable[[Config], float],
                     macs: Callable[[Config], int], budget: float, cfg: EvolutionConfig | None = None,
                     progress: Callable[[dict], None] | None = None,
                     spent: Callable[[], bool] | None = None) -> EvolutionResult:
    """The best config under ``budget`` MACs found by evolution; ``progress`` gets each generation's record.
    ``spent()`` True ends the search after the current generation (an evaluation budget: the caller's
    ``score`` returns inf, unscored, for what it can no longer afford)."""
    cfg = cfg or EvolutionConfig()
    cfg.check()
    choices = [sorted({int(c) for c in cs}) for cs in choices]  # narrowest first
    if not choices or any(not cs for cs in choices):
        raise ValueError("every position needs at least one width choice")
    narrowest = tuple(cs[0] for cs in choices)
    if macs(narrowest) > budget:
        raise ValueError(f"MACs budget {budget:.4g} is below the narrowest config's {macs(narrowest):.4g} MACs; "
                         "raise the target or add narrower width choices")
    rng = np.random.default_rng(cfg.seed)
    weights = []
    for cs in choices:
        w = np.array([1 + (cfg.weighted_sample - 1) * i / max(1, len(cs) - 1) for i in range(len(cs))])
        weights.append(w / w.sum())
    cache: dict[str, float] = {}
    macs_cache: dict[str, float] = {}

    def cost(c: Config) -> float:  # MACs, or any budgeted cost (predicted ms: not rounded)
        k = key(c)
        if k not in macs_cache:
            macs_cache[k] = float(macs(c))
        return macs_cache[k]

    def fitness(c: Config) -> float:
        k = key(c)
        if k not in cache:
            v = float(score(c))
            cache[k] = v if math.isfinite(v) else math.inf
        return cache[k]

    def draw(make: Callable[[], Config], n: int, fallback: list[Config]) -> list[Config]:
        """n children from ``make`` within the budget (rejected ones resampled)."""
        out, tries = [], 0
        while len(out) < n:
            c = make()
            tries += 1
            if cost(c) <= budget:
                out.append(c)
            elif tries > cfg.max_tries:  # a budget the operators can hardly hit: copy in-budget configs
                out.append(fallback[int(rng.integers(len(fallback)))])
        return out

    def random_cfg() -> Config:
        return tuple(int(rng.choice(cs, p=w)) for cs, w in zip(choices, weights))

    def mutate(p: Config) -> Config:
        return tuple(int(rng.choice(cs)) if rng.random() < cfg.mutate_prob else v for v, cs in zip(p, choices))

    def crossover(a: Config, b: Config) -> Config:
        return tuple(x if rng.random() < 0.5 else y for x, y in zip(a, b))

    n_parents = max(1, int(round(cfg.parent_ratio * cfg.population)))
    n_mut = int(round(cfg.mutation_ratio * cfg.population))
    population = draw(random_cfg, cfg.population, [narrowest])
    history, best, best_score = [], None, math.inf
    for gen in range(cfg.generations):
        ranked = sorted({key(c): c for c in population}.values(), key=lambda c: (fitness(c), -cost(c)))
        if fitness(ranked[0]) < best_score or best is None:
            best, best_score = ranked[0], fitness(ranked[0])
        rec = {"generation": gen, "best": key(best), "best_score": best_score, "best_macs": cost(best),
               "evaluated": len(cache)}
        history.append(rec)
        if progress is not None:
            progress(rec)
        if gen == cfg.generations - 1 or (spent is not None and spent()):
            break
        parents = ranked[:n_parents]

        def pick():
            return parents[int(rng.integers(len(parents)))]

        children = draw(lambda: mutate(pick()), n_mut, parents)
        children += draw(lambda: crossover(pick(), pick()), cfg.population - n_mut, parents)
        population = parents + children
    assert cost(best) <= budget  # every scored config passed the budget check
    return EvolutionResult(best, best_score, cost(best), history, len(cache))
