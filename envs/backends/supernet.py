"""The ``supernet`` backend: score a (G spec, D spec) pair by slicing a trained GAN Compression
supernet (``gan.train.supernet``) with the spec's per-group counts (first-k), no training.

Why: a once-for-all supernet has trained every sub-net at once, so a candidate's generator is just
its first-k slice; this makes each evaluation as cheap as weight inheritance while the weights are
the ones a fine-tune would start from.  The supernet keeps its channels in saliency order (the
criterion ``PruningTask`` ranks by), so first-k of the supernet are the channels the spec names.
Scores, rewards and metrics are the local backend's (weight-inheritance scoring on the same
held-out batch); the discriminator is the teacher's D pruned by the D spec, as there.  With
``density`` False (``--backend-option density=false``) r_G drops the density term, whose jittered
neighbours cost about half of an evaluation: r_G = −λ_rec·L1(G_S(x), G_T(x)), GAN Compression's own
search metric, from one forward pass of the sliced G (docs/methods.md, "Search backends").
"""
from __future__ import annotations

from dataclasses import dataclass


from envs.backends.base import Scores
from envs.backends.local import LocalBackend, LocalConfig
from gan.pruning.physical import normalize_spec, prune
from gan.pruning.slicing import first_k_spec
from gan.train.supernet import Supernet


@dataclass
class SupernetConfig(LocalConfig):
    supernet: str | None = None  # folder the gan-compression pipeline saved (None: the teacher, saliency-ordered)
    density: bool = True         # r_G with the density term (False: −λ_rec·L1 to the teacher, one forward pass)


class SupernetBackend(LocalBackend):
    """``LocalBackend`` scoring with the generator sliced from a supernet instead of pruned from the teacher."""

    name = "supernet"
    config_cls = SupernetConfig

    def __init__(self, teacher_g, teacher_d, train, held_out, cfg: LocalConfig | None = None, density=None,
                 memo: bool = True, supernet=None, paired: bool = True):
        cfg = cfg or SupernetConfig()
        if cfg.finetune_steps:
            raise ValueError(f"the supernet backend scores sliced sub-nets without training; set finetune_steps 0 "
                             f"(got {cfg.finetune_steps}) or use the local backend")
        super().__init__(teacher_g, teacher_d, train, held_out, cfg, density, memo=memo, paired=paired)
        self._supernet = supernet if supernet is not None else getattr(cfg, "supernet", None)

    @property
    def supernet(self):
        """The supernet, loaded (or, without one, built from the teacher) on first use."""
        if not isinstance(self._supernet, Supernet):
            if self._supernet is None:
                self._supernet = Supernet(self.teacher_g, size=self.x.shape[-1], seed=self.cfg.seed)
            else:
                self._supernet = Supernet.load(self._supernet)
            self._supernet.eval().requires_grad_(False)
        return self._supernet

    def subnet(self, g_spec: dict):
        """The dense first-k sub-generator with the spec's per-group counts."""
        net = self.supernet.net
        counts = {n: len(v) for n, v in normalize_spec(net, g_spec).items()}
        return prune(net, first_k_spec(counts))

    def _evaluate(self, g_spec: dict, d_spec: dict) -> Scores:
        density = getattr(self.cfg, "density", True)  # a plain LocalConfig scores as the local backend
        return self._score(self.subnet(g_spec), prune(self.teacher_d, d_spec), density=density)
