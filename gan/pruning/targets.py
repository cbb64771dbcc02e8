"""MACs targets: parse a target, check it is reachable, and find specs that meet it."""
from __future__ import annotations

from gan.models.base import ZooModel
from gan.profile import architecture_macs
from gan.pruning.physical import pruned_architecture
from gan.pruning.saliency import spec_from_ratios
from gan.pruning.macs import MacsModel, fill_counts
from gan.pruning.saliency import saliency


class TargetError(ValueError):
    """A MACs target that no spec can meet (below the minimum widths or above the full model)."""


def spec_macs(model: ZooModel, spec, size: int) -> int:
    """MACs of the model pruned by ``spec`` (computed on the meta device, no weights copied)."""
    return architecture_macs(pruned_architecture(model, spec), size)


def minimum_spec(model: ZooModel) -> dict[str, list[int]]:
    return {g.name: list(range(g.min_keep)) for g in model.channel_groups()}


def resolve_macs_target(model: ZooModel, target: float, size: int, flag: str = "--macs-target") -> int:
    """A fraction (≤ 1) of the model's MACs or an absolute count (> 1) → absolute MACs, checked; errors name
    ``flag`` (``--macs-cap`` for a MACs cap beside a latency target)."""
    name = "MACs target" if flag == "--macs-target" else flag
    full = architecture_macs(model.architecture(), size)
    macs = int(target * full) if target <= 1 else int(target)
    floor = spec_macs(model, minimum_spec(model), size)
    if target <= 0:
        raise TargetError(f"{name} {target:g} must be positive: give a fraction (0.1) or a count (3e9)")
    if macs > full:
        raise TargetError(f"{name} {macs:.4g} is above the full model's {full:.4g} MACs at {size}²; "
                          "give a fraction ≤ 1 or a smaller count")
    if macs < floor:
        raise TargetError(f"{name} {macs:.4g} ({macs / full:.3%}) is below the {floor:.4g} MACs "
                          f"({floor / full:.3%}) that the minimum channels allow at {size}²; "
                          f"raise {flag}")
    return macs


def uniform_spec(model: ZooModel, target_macs: int, size: int, criterion: str = "l1",
                 multiple: int = 1, tol: float = 1e-4, cost_model=None) -> tuple[dict[str, list[int]], float]:
    """The largest single keep ratio for all groups whose pruned MACs stay ≤ ``target_macs`` (or, with a
    ``cost_model`` such as ``gan.latency_model.LatencyModel``, whose cost stays ≤ that target)."""
    names = [g.name for g in model.channel_groups()]

    def spec_at(r):
        return spec_from_ratios(model, dict.fromkeys(names, r), criterion, multiple)

    def cost(spec):
        return cost_model.cost(cost_model.counts(spec)) if cost_model is not None else spec_macs(model, spec, size)

    lo, hi = 0.0, 1.0
    if cost(spec_at(hi)) <= target_macs:
        return spec_at(hi), hi
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if cost(spec_at(mid)) <= target_macs:
            lo = mid
        else:
            hi = mid
    return spec_at(lo), lo


def _weights_per_channel(model: ZooModel, group, criterion: str) -> float:
    """Filter-L1 sums over a group's producing weights; divided by their count per channel it is the
    mean |w|, comparable across groups of different fan-in (raw sums would make the residual group,
    written by every block, look most important and starve the stem).  |γ| needs no scaling."""
    if criterion != "l1":
        return 1.0
    state = model.state_dict()
    n = sum(state[r.tensor].numel() // state[r.tensor].shape[r.dim]
            for r in group.refs if r.role == "out" and state[r.tensor].dim() >= 2)
    return float(max(1, n))


def global_threshold_spec(model: ZooModel, target_macs: int, size: int, criterion: str = "l1",
                          iters: int = 60, fill: bool = True, cost_model=None) -> tuple[dict[str, list[int]], float]:
    """One threshold on saliency across all groups (L1-magnitude pruning; with ``criterion="gamma"``
    CAT's one-step |γ| pruning): keep every channel whose saliency ≥ τ (at least ``min_keep`` per
    group), binary-searching the smallest τ whose MACs stay ≤ ``target_macs``; with ``fill`` the
    budget the discrete threshold leaves unused is spent (``fill_counts``, most salient first).  With a
    ``cost_model`` (``gan.latency_model.LatencyModel``) the budget is that model's cost, e.g. predicted ms."""
    import torch


    groups = model.channel_groups()
    scores = {g.name: saliency(model, g, criterion) / _weights_per_channel(model, g, criterion)
              for g in groups}
    mm = cost_model if cost_model is not None else MacsModel(model, size)

    def spec_at(tau: float) -> dict[str, list[int]]:
        spec = {}
        for g in groups:
            s = scores[g.name]
            keep = (s >= tau).nonzero().flatten().tolist()
            if len(keep) < g.min_keep:
                keep = torch.argsort(s, descending=True, stable=True)[: g.min_keep].tolist()
            spec[g.name] = sorted(keep)
        return spec

    lo = 0.0
    hi = max(float(s.max()) for s in scores.values()) * (1 + 1e-6) + 1e-12
    if mm.cost(mm.counts(spec_at(hi))) > target_macs:
        raise TargetError(f"target {target_macs:.4g} is below what the minimum channels allow at {size}²")
    if mm.cost(mm.counts(spec_at(lo))) <= target_macs:
        return spec_at(lo), lo
    for _ in range(iters):
        mid = (lo + hi) / 2
        if mm.cost(mm.counts(spec_at(mid))) <= target_macs:
            hi = mid
        else:
            lo = mid
    if not fill:
        return spec_at(hi), hi
    counts = fill_counts(mm, mm.counts(spec_at(hi)), target_macs)  # discrete thresholds undershoot
    ranked = {g.name: torch.argsort(scores[g.name], descending=True, stable=True).tolist() for g in groups}
    return {n: sorted(ranked[n][:k]) for n, k in counts.items()}, hi
