"""MACs targets: parse a target, check it is reachable, and find specs that meet it."""
from __future__ import annotations

from gan.models.base import ZooModel
from gan.profile import architecture_macs
from gan.pruning.physical import pruned_architecture
from gan.pruning.saliency import spec_from_ratios


class TargetError(ValueError):
    """A MACs target that no spec can meet (below the minimum widths or above the full model)."""


def spec_macs(model: ZooModel, spec, size: int) -> int:
    """MACs of the model pruned by ``spec`` (computed on the meta device, no weights copied)."""
    return architecture_macs(pruned_architecture(model, spec), size)


def minimum_spec(model: ZooModel) -> dict[str, list[int]]:
    return {g.name: list(range(g.min_keep)) for g in model.channel_groups()}


def resolve_macs_target(model: ZooModel, target: float, size: int) -> int:
    """A fraction (≤ 1) of the model's MACs or an absolute count (> 1) → absolute MACs, checked."""
    full = architecture_macs(model.architecture(), size)
    macs = int(target * full) if target <= 1 else int(target)
    floor = spec_macs(model, minimum_spec(model), size)
    if target <= 0:
        raise TargetError(f"MACs target {target:g} must be positive: give a fraction (0.1) or a count (3e9)")
    if macs > full:
        raise TargetError(f"MACs target {macs:.4g} is above the full model's {full:.4g} MACs at {size}²; "
                          "give a fraction ≤ 1 or a smaller count")
    if macs < floor:
        raise TargetError(f"MACs target {macs:.4g} ({macs / full:.3%}) is below the {floor:.4g} MACs "
                          f"({floor / full:.3%}) that the minimum channels allow at {size}²; "
                          "raise --macs-target")
    return macs


def uniform_spec(model: ZooModel, target_macs: int, size: int, criterion: str = "l1",
                 multiple: int = 1, tol: float = 1e-4) -> tuple[dict[str, list[int]], float]:
    """The largest single keep ratio for all groups whose pruned MACs stay ≤ ``target_macs``."""
    names = [g.name for g in model.channel_groups()]

    def spec_at(r):
        return spec_from_ratios(model, dict.fromkeys(names, r), criterion, multiple)

    lo, hi = 0.0, 1.0
    if spec_macs(model, spec_at(hi), size) <= target_macs:
        return spec_at(hi), hi
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if spec_macs(model, spec_at(mid), size) <= target_macs:
            lo = mid
        else:
            hi = mid
    return spec_at(lo), lo
