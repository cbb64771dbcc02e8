"""MACs as a closed-form function of per-group channel counts, for search loops.

``targets.spec_macs`` rebuilds the pruned architecture on the meta device (~70 ms).  An RL episode
or an evolutionary search asks "what would this count cost?" thousands of times, so this module
reads, once, every conv/linear layer's full MACs and which groups set its input and output widths
(from the groups' refs), and then evaluates ``MACs(counts)`` as a sum of per-layer products in
microseconds.  Exactness against ``spec_macs`` is tested on every zoo model.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gan.models.base import ZooModel
from gan.models import build
from gan.profile import _conv_macs


@dataclass
class _Width:
    """A layer width = ``fixed`` + Σ block × count[group] over ``parts``."""

    fixed: int
    parts: list[tuple[str, int]]

    def value(self, counts: dict[str, int]) -> int:
        return self.fixed + sum(b * counts[g] for g, b in self.parts)


@dataclass
class _Layer:
    name: str
    per_unit: float      # full MACs / (cin_eff × cout) at full width
    cin: _Width | None   # None: channel-local (depthwise), cost ∝ cout only
    cout: _Width


class MacsModel:
    """``macs(counts)`` for a zoo model at ``size``²; ``counts`` maps group → kept channels (missing
    groups keep all)."""

    def __init__(self, model: ZooModel, size: int):
        groups = model.channel_groups()
        self.sizes = {g.name: g.size for g in groups}
        self.min_keep = {g.name: g.min_keep for g in groups}
        full = self._layer_macs(model, size)
        self.modules = {name: m for name, (m, _) in full.items()}  # meta-device layers (shapes, attributes)
        # which group (and block) sets each (tensor, dim); "out" refs on a weight's producing dim
        by_dim: dict[tuple[str, int], list[tuple[str, int]]] = {}
        for g in groups:
            for r in g.refs:
                if r.tensor.endswith(".weight"):
                    by_dim.setdefault((r.tensor, r.dim), []).append((g.name, r.block))
        self.layers: list[_Layer] = []
        for name, (m, macs) in full.items():
            w = f"{name}.weight"
            out_dim, in_dim = (1, 0) if isinstance(m, nn.ConvTranspose2d) else (0, 1)
            shape = m.weight.shape
            cout = self._width(shape[out_dim], by_dim.get((w, out_dim), []))
            depthwise = isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels
            if depthwise:
                cin, units = None, cout.value(self.sizes)
            else:
                if getattr(m, "groups", 1) != 1:
                    raise ValueError(f"{name}: grouped (non-depthwise) convs are not supported")
                cin = self._width(shape[in_dim], by_dim.get((w, in_dim), []))
                units = cin.value(self.sizes) * cout.value(self.sizes)
            self.layers.append(_Layer(name, macs / units if units else 0.0, cin, cout))
        self.full = self.macs({})

    def _width(self, total: int, parts: list[tuple[str, int]]) -> _Width:
        """The groups' channels are variable; whatever else the layer has (image channels) is fixed."""
        return _Width(total - sum(b * self.sizes[g] for g, b in parts), parts)

    def _layer_macs(self, model: ZooModel, size: int) -> dict[str, tuple[nn.Module, float]]:
        """Full-width MACs of every conv/linear layer (hooks on a meta-device copy, as gan.profile); records each
        layer's input/output shapes and calls on the way (``io_shapes``, ``calls``: the latency model's)."""
        with torch.device("meta"):
            meta = build(model.architecture())
            inputs = meta.example_inputs(1, size)
        out: dict[str, tuple[nn.Module, float]] = {}
        self.io_shapes: dict[str, tuple[tuple, tuple]] = {}  # name → (input shape, output shape) at batch 1
        self.calls: dict[str, int] = {}  # name → forward calls per model forward (a shared layer runs twice)

        def hook(name):
            def fn(m, inp, y):
                self.io_shapes.setdefault(name, (tuple(inp[0].shape), tuple(y.shape)))
                self.calls[name] = self.calls.get(name, 0) + 1
                if isinstance(m, nn.Linear):
                    macs = m.in_features * m.out_features * (y[0].numel() // m.out_features)
                else:
                    macs = _conv_macs(m, y)
                prev = out.get(name, (m, 0.0))[1]
                out[name] = (m, prev + float(macs))
            return fn

        handles = [m.register_forward_hook(hook(n)) for n, m in meta.named_modules()
                   if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
        try:
            with torch.no_grad():
                meta.eval()(*[x[:1] for x in inputs])
        finally:
            for h in handles:
                h.remove()
        return out

    def counts(self, spec) -> dict[str, int]:
        """Group → kept count of a spec (indices or counts); missing groups keep all."""
        return {g: (len(v) if not isinstance(v, int) else v) for g, v in (spec or {}).items()}

    def cost(self, counts: dict[str, int]) -> float:
        """The budgeted quantity (``fill_counts``, the envs' clip); a latency model has the same method."""
        return self.macs(counts)

    def macs(self, counts: dict[str, int]) -> float:
        c = {**self.sizes, **counts}
        total = 0.0
        for layer in self.layers:
            cout = layer.cout.value(c)
            total += layer.per_unit * cout * (1 if layer.cin is None else layer.cin.value(c))
        return total

    def minimum(self) -> float:
        return self.cost(dict(self.min_keep))


def fill_counts(mm, counts: dict[str, int], target: float, step: int = 1) -> dict[str, int]:
    """Spend the budget left under ``target`` without undoing any count: scale every keep ratio by
    one factor s ≥ 1 (binary search), add single channels while they fit (highest ratios first),
    then trade a channel of a grown group for one of another group while that spends more.  Used
    by the RL envs (the agent decides how the budget is distributed, the fill spends all of it)
    and by threshold methods whose discrete thresholds undershoot on small models.  ``step`` > 1
    (``--align``): every count the fill grows lands on a multiple of ``step`` (or the group's full
    width), one block at a time (``gan.pruning.align``)."""
    import math

    macs, sizes = mm.cost, mm.sizes  # MACs or predicted latency: every step is checked, so a cost that is
    # not monotone in a count (latency) still ends within the target
    counts = {n: int(counts.get(n, sizes[n])) for n in sizes}
    if macs(counts) > target:
        raise ValueError("fill_counts needs counts within the budget")

    def up(n: str, c: int) -> int:
        return min(sizes[n], (c // step + 1) * step)

    def down(n: str, c: int) -> int:
        return max(counts[n], (c - 1) // step * step)

    def scaled(s):
        return {n: int(min(size, max(counts[n], math.floor(counts[n] * s) // step * step)))
                for n, size in sizes.items()}

    lo, hi = 1.0, max(size / max(1, counts[n]) for n, size in sizes.items())
    for _ in range(40):
        mid = (lo + hi) / 2
        if macs(scaled(mid)) <= target:
            lo = mid
        else:
            hi = mid
    out = scaled(lo)
    by_ratio = sorted(sizes, key=lambda n: -counts[n] / sizes[n])
    grown = True
    while grown:
        grown = False
        for n in by_ratio:
            if out[n] < sizes[n] and macs({**out, n: up(n, out[n])}) <= target:
                out[n] = up(n, out[n])
                grown = True
    for _ in range(4 * len(sizes)):  # a big group's channel may cost more than the gap: trade
        now, best = macs(out), None
        for a in sizes:
            if out[a] >= sizes[a]:
                continue
            for b in sizes:
                if b == a or out[b] <= counts[b]:
                    continue
                m = macs({**out, a: up(a, out[a]), b: down(b, out[b])})
                if now < m <= target and (best is None or m > best[0]):
                    best = (m, a, b)
        if best is None:
            break
        _, a, b = best
        out[a], out[b] = up(a, out[a]), down(b, out[b])
    return out
