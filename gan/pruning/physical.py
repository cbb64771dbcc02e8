"""Physical pruning: (model, spec) → a dense smaller model of the same class with copied weights.

A *spec* maps group name → kept channel indices (into the group's current width).  Groups absent
from the spec keep all their channels.
"""
from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Mapping, Sequence

import torch

from gan.models.base import ZooModel
from gan.models.registry import build
from gan.models.groups import ChannelGroup, ChannelRef

Spec = Mapping[str, Sequence[int]]


def normalize_spec(model: ZooModel, spec: Spec) -> dict[str, list[int]]:
    """Check a spec against the model's groups; return sorted unique kept indices for every group."""
    groups = {g.name: g for g in model.channel_groups()}
    unknown = set(spec) - set(groups)
    if unknown:
        raise ValueError(f"spec names unknown groups {sorted(unknown)}; "
                         f"{type(model).__name__} has {', '.join(groups)}")
    out = {}
    for name, g in groups.items():
        kept = sorted({int(i) for i in spec.get(name, range(g.size))})
        if kept and (kept[0] < 0 or kept[-1] >= g.size):
            raise ValueError(f"group {name!r}: kept index out of range 0..{g.size - 1}")
        if len(kept) < g.min_keep:
            raise ValueError(f"group {name!r} keeps {len(kept)} channels, needs at least {g.min_keep}")
        out[name] = kept
    return out


def _keep_positions(length: int, refs: list[tuple[ChannelRef, ChannelGroup]],
                    spec: dict[str, list[int]]) -> torch.Tensor:
    """Boolean mask over one tensor dim: False where a pruned channel of some group sits."""
    keep = torch.ones(length, dtype=torch.bool)
    for ref, group in refs:
        removed = torch.ones(group.size, dtype=torch.bool)
        removed[spec[group.name]] = False
        span = keep[ref.offset: ref.offset + group.size * ref.block].view(group.size, ref.block)
        span[removed] = False
    return keep


def _refs_by_tensor(groups: list[ChannelGroup]) -> dict[str, dict[int, list]]:
    table: dict[str, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for g in groups:
        for ref in g.refs:
            table[ref.tensor][ref.dim].append((ref, g))
    return table


def pruned_architecture(model: ZooModel, spec: Spec) -> dict:
    """The architecture dict of the pruned model (no weights touched)."""
    spec = normalize_spec(model, spec)
    arch = model.architecture()
    arch["kwargs"]["widths"] = {**arch["kwargs"]["widths"], **{k: len(v) for k, v in spec.items()}}
    return arch


def prune(model: ZooModel, spec: Spec) -> ZooModel:
    """Build the dense pruned model and copy the kept slices of every parameter and buffer."""
    spec = normalize_spec(model, spec)
    table = _refs_by_tensor(model.channel_groups())
    pruned = build(pruned_architecture(model, spec))
    old = model.state_dict()
    new = {}
    for key, target in pruned.state_dict().items():
        src = old[key]
        for dim, refs in table.get(key, {}).items():
            idx = _keep_positions(src.shape[dim], refs, spec).nonzero().flatten()
            src = src.index_select(dim, idx)
        if src.shape != target.shape:
            raise RuntimeError(f"{key}: sliced shape {tuple(src.shape)} != rebuilt {tuple(target.shape)}"
                               " (the model's channel groups are incomplete)")
        new[key] = src.clone()
    pruned.load_state_dict(new)
    pruned.train(model.training)
    return pruned


def masked(model: ZooModel, spec: Spec) -> ZooModel:
    """A full-width copy whose pruned channels are never read: equals ``prune`` in eval forward."""
    spec = normalize_spec(model, spec)
    out = copy.deepcopy(model)
    state = out.state_dict()
    for key, dims in _refs_by_tensor(model.channel_groups()).items():
        for dim, refs in dims.items():
            readers = [(r, g) for r, g in refs if r.role == "in"]
            if readers:
                keep = _keep_positions(state[key].shape[dim], readers, spec)
                with torch.no_grad():
                    state[key].index_fill_(dim, (~keep).nonzero().flatten(), 0.0)
    return out


def expected_param_count(model: ZooModel, spec: Spec) -> int:
    """Parameter count of the pruned model, computed from the spec alone (a check on ``prune``)."""
    spec = normalize_spec(model, spec)
    table = _refs_by_tensor(model.channel_groups())
    total = 0
    for key, p in model.named_parameters():
        n = 1
        for dim, length in enumerate(p.shape):
            refs = table.get(key, {}).get(dim)
            n *= int(_keep_positions(length, refs, spec).sum()) if refs else length
        total += n
    return total
