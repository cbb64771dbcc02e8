"""One network's channel-selection problem: groups in order, saliency order, MACs budget, as AMC
(He et al., ECCV 2018; docs/methods.md, "MARL search") — or a predicted-latency budget
(``gan.latency_model``; docs/methods.md, "Latency budgets"): clip and fill then work on predicted ms.

The agent chooses *how many* channels each group keeps; saliency (|γ| or filter L1) chooses *which*.
The budget is guaranteed by AMC's clip: when group t is decided, every later group is assumed at its
minimum, and the count is cut to the largest one whose total MACs stay ≤ the target.  Optionally the
finished episode is *filled*: all keep ratios are scaled up together until the budget is spent, so
the agent decides how the budget is distributed and every episode ends just under the target.

With a ``prior`` ("l1": the keep ratios of one global filter-L1 threshold at the same target) an
action is a log-multiplier of the prior's ratio instead of an absolute ratio: a = 0.5 keeps exactly
the prior's count, a = 0 / 1 halves / doubles it (``PRIOR_SPAN``).  A fresh Gaussian policy (mean
0.5 after RLlib's action normalisation) then explores around a good allocation instead of around
"keep half of every group", and the search spends its episodes on improving on it.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from gan.latency_model import LatencyTarget, latency_budget
from gan.models.base import ZooModel
from gan.pruning.macs import MacsModel, fill_counts
from gan.pruning.saliency import keep_count, saliency
from gan.pruning.targets import TargetError, resolve_macs_target
from gan.pruning.targets import global_threshold_spec

#: group kinds across the zoo (one-hot in the observation; anything else is "other")
KINDS = ("stem", "down", "res", "inner", "up", "disc", "branch", "other")
#: static features per group, then the dynamic ones (see ``PruningTask.observation``)
STATIC = ("position", *(f"kind_{k}" for k in KINDS), "log_width", "kernel", "stride", "macs_share",
          "saliency_top_half", "saliency_cv")
DYNAMIC = ("macs_decided", "macs_rest_min", "budget_left", "prev_action", "peer_keep", "peer_macs",
           "peer_reward", "own_last_reward")
OBS_DIM = len(STATIC) + len(DYNAMIC)
PRIORS = ("none", "l1")
PRIOR_SPAN = 2.0  # a prior's ratio is multiplied by PRIOR_SPAN ** (2a - 1), a in [0, 1]


class PruningTask:
    """Everything an env needs about one network; fixed after construction except the action centre
    (``recenter``)."""

    def __init__(self, model: ZooModel, size: int, macs_target: float, criterion: str = "l1",
                 min_ratio: float = 0.0, multiple: int = 1, prior: str = "none",
                 latency: LatencyTarget | None = None):
        self.model, self.size, self.criterion, self.multiple = model, int(size), criterion, int(multiple)
        self.groups = model.channel_groups()
        self.names = [g.name for g in self.groups]
        self.macs_model = MacsModel(model, self.size)
        self.full_macs = self.macs_model.full
        if latency is None:  # the budget is MACs
            self.target_macs = resolve_macs_target(model, macs_target, self.size)
            self.cost_model, self.target = self.macs_model, float(self.target_macs)
        else:  # the budget is predicted latency; target_macs: what L1's ranking spends at that latency
            self.cost_model, self.target = latency_budget(model, latency, self.size)
            spec, _ = global_threshold_spec(model, self.target, self.size, "l1", cost_model=self.cost_model)
            self.target_macs = int(self.macs_model.macs(self.macs_model.counts(spec)))
        self.full_cost = self.cost_model.full
        self.lbound = {g.name: min(1.0, max(float(min_ratio), g.min_keep / g.size)) for g in self.groups}
        self.min_counts = {g.name: keep_count(g, self.lbound[g.name], 1) for g in self.groups}
        self.order = {}
        sal_feats = []
        for g in self.groups:
            s = saliency(model, g, criterion)
            self.order[g.name] = torch.argsort(s, descending=True, stable=True).tolist()
            srt = torch.sort(s, descending=True).values
            total = float(srt.sum()) or 1.0
            top = float(srt[: max(1, g.size // 2)].sum()) / total
            cv = float(s.std() / s.mean()) if g.size > 1 and float(s.mean()) > 0 else 0.0
            sal_feats.append((top, min(cv, 3.0) / 3.0))
        self.static = self._static_features(sal_feats)
        floor = self.cost_model.cost(self.min_counts)
        if floor > self.target:
            what = "MACs" if latency is None else "predicted ms"
            raise TargetError(f"target {self.target:.4g} {what} is below the {floor:.4g} {what} that min_ratio "
                              f"{min_ratio:g} allows; lower min_ratio or raise the target")
        self.prior = prior
        self.prior_ratios = self._prior_ratios(prior)

    def _prior_ratios(self, prior: str) -> dict[str, float] | None:
        if prior not in PRIORS:
            raise ValueError(f"unknown action prior {prior!r}; choose one of {', '.join(PRIORS)}")
        if prior == "none":
            return None

        spec, _ = global_threshold_spec(self.model, self.target, self.size, criterion="l1",
                                        cost_model=self.cost_model)
        return {g.name: len(spec[g.name]) / g.size for g in self.groups}

    def recenter(self, ratios: dict[str, float]) -> None:
        """Make ``ratios`` (e.g. the best allocation found so far) the allocation that a = 0.5 replays:
        actions then scale it as they scaled the L1 prior's (``MarlConfig.recenter``)."""
        if self.prior_ratios is None:
            raise ValueError("recentering needs an action prior (prior 'l1'): with prior 'none' an action is an "
                             "absolute keep ratio")
        unknown = sorted(set(ratios) - set(self.names))
        if unknown:
            raise ValueError(f"unknown group {unknown[0]!r}; groups: {', '.join(self.names)}")
        self.prior_ratios = {**self.prior_ratios, **{n: float(r) for n, r in ratios.items()}}

    # ------------------------------------------------------------------ features

    def _static_features(self, sal_feats) -> np.ndarray:
        n = len(self.groups)
        max_w = max(g.size for g in self.groups)
        rows = []
        for i, (g, (top, cv)) in enumerate(zip(self.groups, sal_feats)):
            kind = g.kind if g.kind in KINDS else "other"
            share = (self.full_macs - self.macs_model.macs({g.name: self.min_counts[g.name]})) / self.full_macs
            rows.append([i / max(1, n - 1), *(float(kind == k) for k in KINDS),
                         math.log2(g.size) / max(1.0, math.log2(max_w)),
                         g.meta.get("kernel", 1) / 7.0, g.meta.get("stride", 1) / 2.0, share, top, cv])
        return np.asarray(rows, dtype=np.float32)

    def observation(self, t: int, counts: dict[str, int], prev_action: float, peer: dict,
                    own_last_reward: float) -> np.ndarray:
        """Static features of group ``t`` + budget state + the peer's last decisions and reward."""
        t = min(t, len(self.groups) - 1)
        decided = self._with_rest(counts, t, at_min=False)
        rest_min = self._with_rest(counts, t, at_min=True)
        full, cost = self.full_cost, self.cost_model.cost  # the budgeted quantity: MACs or predicted ms
        dyn = [cost(decided) / full,
               cost(rest_min) / full,
               (self.target - cost(rest_min)) / full,
               prev_action, peer.get("keep", 1.0), peer.get("macs", 1.0),
               math.tanh(peer.get("reward", 0.0)), math.tanh(own_last_reward)]
        return np.clip(np.concatenate([self.static[t], np.asarray(dyn, np.float32)]), -1.0, 1.0)

    # ------------------------------------------------------------------ budget

    def _with_rest(self, counts: dict[str, int], t: int, at_min: bool) -> dict[str, int]:
        """Decided groups (< t) as chosen; group t and later at their minimum (or full width)."""
        out = {n: counts[n] for n in self.names[:t]}
        if at_min:
            out.update({n: self.min_counts[n] for n in self.names[t:]})
        return out

    def max_feasible(self, counts: dict[str, int], t: int, cap: int | None = None) -> int:
        """A count ≤ ``cap`` (default: the group's size) of group ``t`` whose cost (MACs or predicted latency),
        with groups < t as chosen and later ones at their minimum, stays ≤ target: ``cap`` itself when it fits,
        else by binary search, whose lower end always fits.  MACs grow with a count, so that is the largest
        such count; a predicted latency need not (an unaligned width can cost more than the wider aligned one:
        ``gan.latency_model.ALIGN``), and the answer still fits."""
        name, g = self.names[t], self.groups[t]
        base = self._with_rest(counts, t, at_min=True)
        lo, hi = self.min_counts[name], g.size if cap is None else max(self.min_counts[name], int(cap))
        cost = self.cost_model.cost
        if cost({**base, name: hi}) <= self.target:
            return hi
        m = self.multiple  # > 1 (--align): only the minimum and multiples of the block are candidates
        below = range(lo, hi) if m == 1 else [lo, *range((lo // m + 1) * m, hi, m)]
        i, j = 0, max(0, len(below) - 1)
        while i < j:
            mid = (i + j + 1) // 2
            if cost({**base, name: below[mid]}) <= self.target:
                i = mid
            else:
                j = mid - 1
        return below[i] if below else lo

    def count_for(self, t: int, action: float, counts: dict[str, int]) -> int:
        """Action in [0, 1] → keep ratio in [lbound, 1] (or the prior's ratio × PRIOR_SPAN^(2a−1)) →
        count, clipped to the budget (AMC)."""
        name, g = self.names[t], self.groups[t]
        lb = self.lbound[name]
        a = float(np.clip(action, 0.0, 1.0))
        if self.prior_ratios is None:
            ratio = lb + a * (1.0 - lb)
        else:
            ratio = min(1.0, max(lb, self.prior_ratios[name] * PRIOR_SPAN ** (2 * a - 1)))
        return self.max_feasible(counts, t, cap=keep_count(g, ratio, self.multiple))

    def fill(self, counts: dict[str, int]) -> dict[str, int]:
        """Spend the unused budget without undoing a decision (``gan.pruning.macs.fill_counts``)."""
        return fill_counts(self.cost_model, counts, self.target, step=self.multiple)

    # ------------------------------------------------------------------ specs

    def spec(self, counts: dict[str, int]) -> dict[str, list[int]]:
        """Kept indices: the ``count`` most salient channels of every group (missing groups keep all)."""
        return {n: sorted(self.order[n][: counts.get(n, len(self.order[n]))]) for n in self.names}

    def ratios(self, counts: dict[str, int]) -> dict[str, float]:
        return {n: counts[n] / g.size for n, g in zip(self.names, self.groups)}

    def macs(self, counts: dict[str, int]) -> float:
        return self.macs_model.macs(counts)
