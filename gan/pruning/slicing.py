"""Differentiable channel slicing: run the sub-net a spec selects *inside* a full model.

Why: a once-for-all supernet (GAN Compression; docs/methods.md, "GAN Compression") trains many
sub-nets that share one set of weights.  ``prune`` copies the kept slices into a new model, so gradients never reach the
full weights; here the kept slices are cut from the live tensors (``narrow`` where the kept
positions are contiguous, as first-k always is, else ``index_select``) and the forward runs on a
weightless skeleton of the pruned architecture (built once per width set on the meta device)
through ``torch.func.functional_call``.  The same channel-group refs that drive ``prune`` drive the
cut, so ``sliced forward == prune(model, spec) forward`` on every zoo model.

BatchNorm running statistics: with contiguous cuts the skeleton updates views of the full model's
buffers (first-k statistics are kept up to date); with scattered cuts it updates copies (lost).
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from gan.models.base import ZooModel
from gan.models.registry import build
from gan.pruning.physical import _refs_by_tensor, normalize_spec, pruned_architecture


def channel_positions(length: int, refs: list, order: Mapping[str, Sequence[int]]) -> torch.Tensor:
    """Positions along one tensor dim after keeping, *in the given order*, ``order[group]`` channels of
    every group that lives on that dim; positions outside the groups' spans are kept as they are.
    With sorted kept indices this is exactly what ``prune`` keeps; with a permutation it reorders."""
    idx = torch.arange(length)
    pieces, cursor = [], 0
    for ref, group in sorted(refs, key=lambda rg: rg[0].offset):
        if ref.offset < cursor:
            raise RuntimeError(f"{ref.tensor}: channel groups overlap on dim {ref.dim}")
        pieces.append(idx[cursor:ref.offset])
        ch = torch.as_tensor(list(order[group.name]), dtype=torch.long)
        pieces.append((ref.offset + ch[:, None] * ref.block + torch.arange(ref.block)).flatten())
        cursor = ref.offset + group.size * ref.block
    pieces.append(idx[cursor:])
    return torch.cat(pieces)


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Live parameters and buffers (``state_dict`` would detach them and cut the gradient path)."""
    return {**dict(model.named_parameters()), **dict(model.named_buffers())}


def _cuts(model: ZooModel, order: Mapping[str, Sequence[int]]) -> dict[str, list[tuple[int, object]]]:
    """tensor name → [(dim, slice or index tensor)] for one full set of per-group channel orders."""
    table = _refs_by_tensor(model.channel_groups())
    cuts = {}
    for key, t in _tensors(model).items():
        for dim, refs in table.get(key, {}).items():
            pos = channel_positions(t.shape[dim], refs, order)
            start = int(pos[0]) if len(pos) else 0
            if torch.equal(pos, torch.arange(start, start + len(pos))):  # contiguous: a view
                if len(pos) < t.shape[dim]:
                    cuts.setdefault(key, []).append((dim, slice(start, start + len(pos))))
            else:
                cuts.setdefault(key, []).append((dim, pos))
    return cuts


def _apply(t: torch.Tensor, cuts: list[tuple[int, object]]) -> torch.Tensor:
    for dim, cut in cuts:
        if isinstance(cut, slice):
            t = t.narrow(dim, cut.start, cut.stop - cut.start)
        else:
            t = t.index_select(dim, cut if cut.device == t.device else cut.to(t.device))
    return t


class _SkipInit(TorchFunctionMode):
    """Weight init is a no-op while a skeleton is built: its tensors are never read (every one is
    replaced by ``functional_call``), and meta-device init runs through slow Python refs (~30 ms for
    ResNet-9 per sampled config, the supernet builds one per new config)."""

    SKIP = {torch.Tensor.normal_, torch.Tensor.uniform_, torch.Tensor.zero_, torch.Tensor.fill_} | {
        getattr(nn.init, n) for n in dir(nn.init) if n.endswith("_") and not n.startswith("_")}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.SKIP:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


def skeleton(architecture: dict) -> ZooModel:
    """A weightless (meta-device, uninitialised) instance of ``architecture`` for ``functional_call``."""
    with torch.device("meta"), _SkipInit():
        return build(architecture)


class _Call(nn.Module):
    """Lets ``functional_call`` run any function of the skeleton (``features``, a tap forward)."""

    def __init__(self, module: nn.Module, fn: Callable | None):
        super().__init__()
        self.m, self.fn = module, fn

    def forward(self, *args, **kwargs):
        return self.m(*args, **kwargs) if self.fn is None else self.fn(self.m, *args, **kwargs)


class SlicePlan:
    """The cuts of one spec and a meta-device skeleton of the pruned architecture; reusable across
    calls on the same full model (the supernet caches one per sampled width set)."""

    def __init__(self, model: ZooModel, spec: Mapping[str, Sequence[int]]):
        self.spec = normalize_spec(model, spec)
        self.architecture = pruned_architecture(model, self.spec)
        self.cuts = _cuts(model, self.spec)
        self.skeleton = skeleton(self.architecture)

    def parameters(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The sub-net's tensors, cut from ``model``'s live ones (gradients flow back)."""
        return {k: _apply(t, self.cuts[k]) if k in self.cuts else t for k, t in _tensors(model).items()}

    def __call__(self, model: nn.Module, *args, fn: Callable | None = None, **kwargs):
        """``fn(sub_net, *args)`` (default: its forward) with the sub-net's weights cut from ``model``."""
        from torch.func import functional_call

        self.skeleton.train(model.training)
        params = {f"m.{k}": v for k, v in self.parameters(model).items()}
        return functional_call(_Call(self.skeleton, fn), params, args, kwargs, strict=True)


def sliced_parameters(model: ZooModel, spec: Mapping[str, Sequence[int]]) -> dict[str, torch.Tensor]:
    """Name → the kept slice of every parameter and buffer (a view or an index_select of the live one)."""
    return SlicePlan(model, spec).parameters(model)


def sliced_call(model: ZooModel, spec: Mapping[str, Sequence[int]], *args, fn: Callable | None = None,
                **kwargs):
    """Run the sub-net ``spec`` selects (``fn(sub_net, *args)``, default its forward) on ``model``'s
    weights; equals ``prune(model, spec)`` but stays differentiable w.r.t. the full model."""
    return SlicePlan(model, spec)(model, *args, fn=fn, **kwargs)


def first_k_spec(counts: Mapping[str, int]) -> dict[str, list[int]]:
    """``{group: [0..k-1]}``: the first-k channels of every named group."""
    return {g: list(range(int(k))) for g, k in counts.items()}


def permute_channels(model: ZooModel, order: Mapping[str, Sequence[int]]) -> ZooModel:
    """A copy whose channel ``i`` of each named group is the original's channel ``order[group][i]`` (a
    full permutation per group); every reader and writer is reordered, so the function is unchanged."""
    groups = {g.name: g for g in model.channel_groups()}
    full = {}
    for name, g in groups.items():
        o = [int(i) for i in order.get(name, range(g.size))]
        if sorted(o) != list(range(g.size)):
            raise ValueError(f"order of group {name!r} is not a permutation of 0..{g.size - 1}; "
                             "pass every channel index exactly once")
        full[name] = o
    cuts = _cuts(model, full)
    out = copy.deepcopy(model)
    with torch.no_grad():
        for k, t in _tensors(out).items():
            if k in cuts:
                t.copy_(_apply(t.detach().clone(), cuts[k]))
    return out
