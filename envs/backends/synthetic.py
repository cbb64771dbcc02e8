"""The ``synthetic`` backend: a test instrument for the agents' *learning*, not a pruning backend.

Why: the real backends score a pair by running networks on data, so their rewards say little about
whether PPO learns at all (a fresh policy's allocation is already the L1 prior's, and the optimum is
unknown).  Here the scores are closed-form functions of the keep ratios with a known optimum, so a
test can train the real two-agent RLlib search for a few seconds and check *where it ends*:

* ``mode="target"``: hidden target allocations (group → keep ratio) for each network; each agent's
  own score is −mean |ratio − target| over its groups (0 at the target).  Learning = the greedy
  policy's allocation approaches the target.
* ``mode="coupled"``: a cooperative game where the generator's best move for the *team* is the one
  the discriminator prefers.  With g the keep ratio of one G group and d that of one D group:

      own_G = −w_own · |g − g_own|
      own_D = −|d − d_target| − coupling · |g − g_peer|

  With β = 0 the generator follows its own (weak) term to ``g_own``; with β·coupling > w_own the
  exchanged reward r̃_G = own_G + β·own_D (added by the env) moves it to ``g_peer``, and the team
  score own_G + own_D is higher by (coupling − w_own)·|g_own − g_peer|.

The data, the teacher weights and the density config are ignored: only the groups' sizes (from
``channel_groups()``) are used.  An evaluation is a few dict look-ups, deterministic, so the spec
cache is exact.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from envs.backends.base import CachedBackend, Scores

MODES = ("target", "coupled")


@dataclass
class SyntheticConfig:
    mode: str = "target"                 # "target" | "coupled" (module docstring)
    # target mode: group → keep ratio; a group not named here has target 1.0 (keep all)
    target_generator: dict = field(default_factory=dict)
    target_discriminator: dict = field(default_factory=dict)
    # coupled mode (None: the first widest group of the network)
    coupled_g_group: str | None = None
    coupled_d_group: str | None = None
    g_own: float = 0.25                  # the generator's own preferred ratio of its group
    g_peer: float = 0.75                 # the ratio of that G group the discriminator prefers
    d_target: float = 0.5                # the discriminator's preferred ratio of its group
    w_own: float = 0.25                  # weight of the generator's own term
    coupling: float = 1.0                # weight of the G group's ratio in the discriminator's score
    # build_problem's no-teacher path makes train_items + eval_items random images: keep it tiny
    train_items: int = 2
    eval_items: int = 2
    seed: int = 0                        # unused (scores are deterministic); build_problem passes it

    def to_dict(self) -> dict:
        return asdict(self)


def _psnr(err2: float) -> float:
    """PSNR (peak 1) of an allocation vs. the preferred one from its mean squared ratio error: a
    monotone stand-in for ``psnr_vs_teacher`` (60 dB at the optimum)."""
    return 10.0 * math.log10(1.0 / (err2 + 1e-6))


class SyntheticBackend(CachedBackend):
    """Closed-form scores of the keep ratios of a (G spec, D spec) pair (module docstring)."""

    name = "synthetic"
    config_cls = SyntheticConfig

    def __init__(self, teacher_g, teacher_d, train=None, held_out=None, cfg: SyntheticConfig | None = None,
                 density=None):
        super().__init__()
        self.cfg = cfg or SyntheticConfig()
        if self.cfg.mode not in MODES:
            raise ValueError(f"unknown synthetic mode {self.cfg.mode!r}; choose one of {', '.join(MODES)}")
        self.sizes = {a: {g.name: g.size for g in net.channel_groups()}
                      for a, net in (("generator", teacher_g), ("discriminator", teacher_d))}
        targets = {"generator": self.cfg.target_generator, "discriminator": self.cfg.target_discriminator}
        for a, t in targets.items():
            unknown = sorted(set(t) - set(self.sizes[a]))
            if unknown:
                raise ValueError(f"synthetic target_{a} names unknown group {unknown[0]!r}; "
                                 f"groups: {', '.join(self.sizes[a])}")
        self.targets = {a: {n: float(t.get(n, 1.0)) for n in self.sizes[a]} for a, t in targets.items()}
        self.coupled = {"generator": self.cfg.coupled_g_group or self._widest("generator"),
                        "discriminator": self.cfg.coupled_d_group or self._widest("discriminator")}
        for a, n in self.coupled.items():
            if n not in self.sizes[a]:
                raise ValueError(f"synthetic coupled group {n!r} is not a {a} group; groups: {', '.join(self.sizes[a])}")

    @classmethod
    def from_teacher_run(cls, run, cfg: SyntheticConfig | None = None, density=None):
        return cls(run.generator, run.discriminator, None, None, cfg, density)

    def _widest(self, agent: str) -> str:
        sizes = self.sizes[agent]
        return max(sizes, key=lambda n: (sizes[n], -list(sizes).index(n)))

    def ratios(self, agent: str, spec: dict) -> dict[str, float]:
        """Keep ratio of every group: kept indices / width (a group missing from the spec keeps all)."""
        spec = spec or {}
        return {n: (len(spec[n]) / size if n in spec else 1.0) for n, size in self.sizes[agent].items()}

    def _evaluate(self, g_spec: dict, d_spec: dict) -> Scores:
        r = {"generator": self.ratios("generator", g_spec), "discriminator": self.ratios("discriminator", d_spec)}
        return self._target(r) if self.cfg.mode == "target" else self._coupled(r)

    def _target(self, r: dict) -> Scores:
        dist, err2 = {}, {}
        for a in r:
            diffs = [r[a][n] - self.targets[a][n] for n in r[a]]
            dist[a] = sum(abs(x) for x in diffs) / len(diffs)
            err2[a] = sum(x * x for x in diffs) / len(diffs)
        metrics = {"distance_generator": dist["generator"], "distance_discriminator": dist["discriminator"],
                   "psnr_vs_teacher": _psnr(err2["generator"])}
        return Scores(-dist["generator"], -dist["discriminator"], metrics)

    def _coupled(self, r: dict) -> Scores:
        c = self.cfg
        g = r["generator"][self.coupled["generator"]]
        d = r["discriminator"][self.coupled["discriminator"]]
        own_g = -c.w_own * abs(g - c.g_own)
        own_d = -abs(d - c.d_target) - c.coupling * abs(g - c.g_peer)
        metrics = {"g_ratio": g, "d_ratio": d, "distance_generator": abs(g - c.g_own),
                   "distance_discriminator": abs(d - c.d_target), "distance_g_peer": abs(g - c.g_peer),
                   "team": own_g + own_d, "psnr_vs_teacher": _psnr((g - c.g_own) ** 2)}
        return Scores(own_g, own_d, metrics)
