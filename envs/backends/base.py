"""The backend protocol: ``evaluate(g_spec, d_spec) -> Scores``, cached by spec hash, with its cost.

Own rewards (DESIGN.md "Multi-agent coupling"; docs/methods.md, "MARL search"):
* generator: −(λ_dens·L_density + λ_rec·L1 to the teacher) on a held-out batch;
* discriminator: −(|L_D(D_S; G_S) − L_D(D_T; G_T)| + mean|D_S(v) − D_T(v)|): keep the teacher's
  G/D balance and agree with the teacher D's judgements.
The envs add the peer exchange (β) on top; a backend reports own scores only.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Protocol


@dataclass
class Scores:
    generator: float            # the generator agent's own reward
    discriminator: float        # the discriminator agent's own reward
    metrics: dict = field(default_factory=dict)  # the terms behind both, fidelity, MACs
    cost_s: float = 0.0         # seconds this evaluation took (0 when served from the cache)
    cached: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def spec_key(g_spec: dict, d_spec: dict) -> str:
    """Stable hash of a (G spec, D spec) pair (kept indices, order-free)."""
    def norm(spec):
        return {k: sorted(int(i) for i in v) for k, v in sorted((spec or {}).items())}
    blob = json.dumps([norm(g_spec), norm(d_spec)], sort_keys=True).encode()
    return hashlib.sha1(blob).hexdigest()[:16]


class Backend(Protocol):
    name: str

    def evaluate(self, g_spec: dict, d_spec: dict) -> Scores: ...


class CachedBackend:
    """Mixin: ``evaluate`` serves repeats from a dict and times the real work of ``_evaluate``."""

    name = "base"

    def __init__(self):
        self.cache: dict[str, Scores] = {}
        self.calls = self.hits = 0
        self.seconds = 0.0

    def evaluate(self, g_spec: dict, d_spec: dict) -> Scores:
        self.calls += 1
        key = spec_key(g_spec, d_spec)
        if key in self.cache:
            self.hits += 1
            s = self.cache[key]
            return Scores(s.generator, s.discriminator, dict(s.metrics), 0.0, True)
        t0 = time.perf_counter()
        scores = self._evaluate(g_spec, d_spec)
        scores.cost_s = time.perf_counter() - t0
        self.seconds += scores.cost_s
        self.cache[key] = scores
        return scores

    def _evaluate(self, g_spec: dict, d_spec: dict) -> Scores:  # pragma: no cover - abstract
        raise NotImplementedError

    def stats(self) -> dict:
        return {"backend": self.name, "calls": self.calls, "cache_hits": self.hits,
                "seconds": round(self.seconds, 3)}
