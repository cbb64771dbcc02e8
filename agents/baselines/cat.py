"""CAT — Compression And Teaching (Jin et al., CVPR 2021), docs/methods.md, "CAT": one-step pruning.

The teacher is trained normally (affine norms), pruned *once* by one global threshold τ on the |γ|
of every norm that follows a prunable conv, and the student is then fine-tuned with Global Kernel
Alignment distillation (``gan.losses.gka``).  No per-layer budget: layers whose γ are small lose
more channels, inception branches may vanish entirely.

Floors: CAT keeps at least ``prune_cin_lb`` = 16 channels in every stem / down- / up-sampling layer
at ngf 64 (the residual width follows the last down-sampling norm, so it gets the floor too); we scale
that with the width, ``floor = ceil(16 · ngf / 64) = ceil(ngf / 4)`` (capped at the group's size),
so tiny models keep proportionally as much.  Branch groups (min_keep 0) have no floor; other groups
(ResNet ``inner_i``) keep their ``min_keep``.
"""
from __future__ import annotations

import math
import time

import torch

from gan.latency_model import latency_budget
from gan.pruning.macs import MacsModel
from gan.pruning.saliency import gamma_saliency
from gan.pruning.targets import TargetError
from gan.pruning.targets import resolve_macs_target
from gan.teacher_run import TeacherRunError

#: groups written by the stem, a down-sampling or an up-sampling conv (CAT's ``prune_cin_lb``)
FLOOR_KINDS = ("stem", "down", "up", "res")
MAX_BISECTIONS = 200  # the relative stop test never fires when min|γ| = 0; floats converge well before


class AffineFreeError(ValueError):
    """The model has no norm γ to prune by."""


def default_floor(model) -> int:
    """CAT's 16 channels at ngf 64, scaled with ngf (the stem width when the model records no ngf)."""
    ngf = model.architecture()["kwargs"].get("ngf")
    if ngf is None:
        ngf = next(g.size for g in model.channel_groups() if g.kind == "stem")
    return max(1, math.ceil(int(ngf) / 4))


def one_step_prune(model, target_macs: float, size: int, floor: int | None = None,
                   tol: float = 1e-3, cost_model=None) -> tuple[dict[str, list[int]], dict]:
    """CAT's global |γ| threshold: the spec (group → kept indices) of the largest model whose MACs at
    ``size``² stay ≤ ``target_macs``, and an info dict (threshold, MACs, floors, vanished branches).

    Bisection as CAT: lo = min|γ|, hi = max|γ|; τ = (lo + hi)/2, keep |γ| > τ (top-``floor`` by |γ|
    in stem/down/up/res groups where fewer survive, top-``min_keep`` elsewhere); MACs > target → lo = τ,
    else hi = τ; stop when hi − lo ≤ tol·lo.  The spec returned is the one at hi, which always meets
    the target.  Groups whose norm has no γ keep all their channels.  With a ``cost_model``
    (``gan.latency_model.LatencyModel``) the bisection budgets its cost (predicted ms) instead of MACs.
    """
    groups = model.channel_groups()
    scored = [g for g in groups if g.norm is not None]
    if not scored:
        raise AffineFreeError(f"CAT prunes by norm scales |γ| but this {type(model).__name__} has affine-free "
                              f"norms ({model.architecture()['kwargs'].get('norm', '?')}); train the teacher with "
                              "norm instance_affine (or batch)")
    f = default_floor(model) if floor is None else int(floor)
    floors = {g.name: min(g.size, max(g.min_keep, f if g.kind in FLOOR_KINDS else g.min_keep)) for g in scored}
    gamma = {g.name: gamma_saliency(model, g) for g in scored}
    ranked = {n: torch.argsort(s, descending=True, stable=True) for n, s in gamma.items()}
    full_spec = {g.name: list(range(g.size)) for g in groups}
    mm = MacsModel(model, size)

    def spec_at(tau: float) -> dict[str, list[int]]:
        spec = dict(full_spec)
        for n, s in gamma.items():
            keep = (s > tau).nonzero().flatten()
            if len(keep) < floors[n]:
                keep = ranked[n][: floors[n]]
            spec[n] = sorted(keep.tolist())
        return spec

    def macs(spec) -> float:
        return mm.macs(mm.counts(spec))

    cm = cost_model if cost_model is not None else mm
    unit = "MACs" if cost_model is None else "predicted ms"

    def cost(spec) -> float:
        return cm.cost(cm.counts(spec))

    all_g = torch.cat(list(gamma.values()))
    lo, hi = float(all_g.min()), float(all_g.max())
    full, minimum = macs(full_spec), macs(spec_at(hi))  # at τ = max|γ| every group sits at its floor
    info = {"target_macs": int(target_macs) if cost_model is None else None, "full_macs": int(full),
            "min_macs": int(minimum), "floor": f, "floors": dict(floors),
            "unscored": [g.name for g in groups if g.norm is None], "iterations": 0}
    full_cost, min_cost = cost(full_spec), cost(spec_at(hi))
    if min_cost > target_macs:
        raise TargetError(f"target {target_macs:.4g} {unit} is below the {min_cost:.4g} {unit} "
                          f"({min_cost / full_cost:.2%} of {full_cost:.4g}) that CAT's channel floors allow at {size}² "
                          f"(≥ {f} channels in stem/down/up/residual layers); raise the target or lower the floor")
    if full_cost <= target_macs:
        spec, tau = full_spec, None
    else:
        it = 0
        while (hi - lo) > tol * lo and it < MAX_BISECTIONS:
            mid = (lo + hi) / 2
            if mid in (lo, hi):  # no float between them: converged
                break
            if cost(spec_at(mid)) > target_macs:
                lo = mid
            else:
                hi = mid
            it += 1
        spec, tau = spec_at(hi), hi
        info.update(iterations=it, threshold_lo=lo, macs_lo=int(macs(spec_at(lo))))  # lo side: over target
    final = macs(spec)
    info.update(threshold=tau, macs=int(final), macs_ratio=final / full,
                counts={n: len(v) for n, v in spec.items()},
                vanished=[g.name for g in groups if g.norm is not None and not spec[g.name]])
    return spec, info


def cat(run, target_macs: float, *, quiet: bool = False, latency=None) -> dict:
    """``ganprune prune --method cat``'s search step on a ``gan.teacher_run.TeacherRun``: the one-step
    spec for the generator.  The discriminator spec is ``{}`` (keep every channel): CAT initialises
    the student's D from the whole teacher D, and an explicit empty spec stops ``finetune`` from
    shrinking D to G's keep ratio.  ``target_macs``: absolute MACs, or a fraction ≤ 1 of the teacher's;
    ``latency`` (a ``gan.latency_model.LatencyTarget``): bisect on predicted latency instead."""
    g, size = run.generator, run.size
    t0 = time.perf_counter()
    lm = ms = None
    if latency is None:
        target = resolve_macs_target(g, target_macs, size)
    else:
        lm, ms = latency_budget(g, latency, size)
        target = ms
    try:
        spec, info = one_step_prune(g, target, size, cost_model=lm)
    except AffineFreeError as e:
        raise TeacherRunError(f"{run.dir}: {e}") from e
    if lm is not None:  # report the MACs the latency budget bought, and the budget
        target = info["macs"]
        info.update(latency_target_ms=ms, predicted_latency_ms=lm.predicted_ms(lm.counts(spec)))
    search_s = time.perf_counter() - t0
    if not quiet:
        tau = "none (target ≥ teacher)" if info["threshold"] is None else f"{info['threshold']:.4g}"
        print(f"cat: global |γ| threshold {tau} → {info['macs'] / 1e6:.2f} M MACs ({info['macs_ratio']:.1%} of "
              f"{info['full_macs'] / 1e6:.2f} M, target {target / 1e6:.2f} M)"
              + (f"; {len(info['vanished'])} branches removed" if info["vanished"] else ""), flush=True)
    extra = {k: info[k] for k in ("threshold", "floor", "iterations", "vanished", "counts", "min_macs")
             if k in info}  # a latency budget's target and prediction: prune.json's latency_budget
    return {"spec": {"generator": spec, "discriminator": {}}, "search_s": search_s, "target_macs": target,
            "teacher_macs": info["full_macs"], "extra": extra}
