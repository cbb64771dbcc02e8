"""Kernel-aligned widths: round a found spec's per-group widths to the channel block the CPU
convolution kernels work on, and spend the same budget (docs/methods.md, "Latency budgets").

Why: ONNX Runtime's x86 kernels (MLAS) run a convolution in a channel-blocked layout (NCHWc) only
when its channel counts are multiples of the block (16 with AVX-512, 8 with AVX2); other widths take
the generic im2col + GEMM path.  On a 256² ResNet-9 with two ORT threads, L1's unaligned widths turn
0.72 of the MACs ratio into speed at 25 % MACs and 0.50 at 10 %; the same budgets at aligned widths 0.90
and 0.67 (with one thread the gain is small; docs/latency.md, ``benchmarks/pruning_speedup.py
--aligned``).  Rounding every group up by one ratio cannot hit a
target (×16 overshoots 10 % to 6.7 %), so the rounding here is per group: down to the block, then
blocks added back, largest deficit first, while the budget holds.
"""
from __future__ import annotations

import platform
from pathlib import Path

from gan.models.base import ZooModel
from gan.pruning.saliency import saliency


def kernel_block() -> int:
    """The channel block of this CPU's ONNX Runtime / oneDNN convolution kernels: 16 with AVX-512,
    8 with AVX2, else 1 (no alignment known; e.g. ARM, where the user names the block)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return 1
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return 1
    return 16 if "avx512f" in flags else 8 if "avx2" in flags else 1


def resolve_block(align) -> int:
    """``--align``: ``"auto"`` → ``kernel_block()``; an int ≥ 1 as given (1: no rounding)."""
    if str(align) == "auto":
        return kernel_block()
    try:
        block = int(align)
    except (TypeError, ValueError):
        raise ValueError(f"--align must be auto or a channel multiple ≥ 1, got {align!r}") from None
    if block < 1:
        raise ValueError(f"--align must be auto or a channel multiple ≥ 1, got {block}")
    return block


def align_counts(cost_model, counts: dict[str, int], target: float, block: int) -> dict[str, int] | None:
    """Per-group counts that are multiples of ``block`` (a group at full width, or chosen narrower than one
    block, stays as chosen) with ``cost_model.cost`` ≤ ``target``: each count rounded down, then
    one block at a time given back to the group that lost the most of its width, while the cost fits.
    None when even the rounded-down counts do not fit (a latency cost need not fall with a count)."""
    sizes, mins = cost_model.sizes, cost_model.min_keep
    want = {n: int(counts.get(n, sizes[n])) for n in sizes}

    def floor(n: str) -> int:
        c = want[n]
        if c >= sizes[n] or c < max(block, mins[n]):  # full, or narrower than one block: left as chosen
            return c
        return max(c // block * block, mins[n])

    out = {n: floor(n) for n in sizes}
    if cost_model.cost(out) > target:
        return None
    while True:
        grow = [n for n in sizes if out[n] + block <= sizes[n] and out[n] < want[n]]
        grow.sort(key=lambda n: -(want[n] - out[n]) / sizes[n])
        for n in grow:
            trial = {**out, n: out[n] + block}
            if cost_model.cost(trial) <= target:
                out = trial
                break
        else:
            return out


def align_spec(model: ZooModel, spec: dict[str, list[int]], counts: dict[str, int],
               criterion: str = "l1") -> dict[str, list[int]]:
    """``spec`` resized to ``counts``: the spec's own channels stay first (a search chose them), ranked
    among themselves by ``criterion`` saliency of ``model`` (the weights the fine-tune starts from),
    then its dropped channels by the same saliency."""
    out = {}
    for g in model.channel_groups():
        kept = spec.get(g.name)
        if kept is None:
            continue
        s = saliency(model, g, criterion)
        chosen = set(kept)
        order = sorted(range(g.size), key=lambda i: (i not in chosen, -float(s[i]), i))
        out[g.name] = sorted(order[: counts.get(g.name, len(kept))])
    return out



def align_to_budget(model: ZooModel, spec: dict[str, list[int]], cost_model, target: float, block: int,
                    start: ZooModel | None = None) -> tuple[dict[str, list[int]], dict]:
    """``spec`` with its widths aligned to ``block`` (``align_counts``) within ``target`` of
    ``cost_model`` (``gan.pruning.macs.MacsModel`` or ``gan.latency_model.LatencyModel``), channels
    ranked on ``start`` (the weights the fine-tune starts from; default ``model``).  Returns the spec
    (unchanged when no aligned widths fit) and a record: block, widths and cost before and after."""
    before = cost_model.counts(spec)
    after = align_counts(cost_model, before, target, block)
    rec = {"block": block, "aligned": after is not None, "target": float(target),
           "widths_before": before, "cost_before": float(cost_model.cost(before))}
    if after is None:
        return spec, rec
    rec.update(widths_after=after, cost_after=float(cost_model.cost(after)))
    return align_spec(start if start is not None else model, spec, after), rec
