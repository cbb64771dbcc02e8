"""The simple baselines: ``uniform`` (one keep ratio for every group) and ``l1`` (one global threshold
on mean filter |w|); D is pruned to G's keep ratio (docs/methods.md, "Baselines"). And ``fastest``: the
widths this machine's latency model predicts fastest at the MACs budget, channels by filter L1
(docs/methods.md, "Fastest widths")."""
from __future__ import annotations

import time
from dataclasses import dataclass

from agents.methods.base import Found, Method, MethodOptionError, SearchContext, SearchRequest
from gan.latency_model import LatencyTarget, climb_start, fastest_counts, fastest_measured, latency_budget
from gan.pruning.align import align_spec, kernel_block
from gan.pruning.targets import global_threshold_spec, resolve_macs_target, spec_macs, uniform_spec


class _Simple(Method):
    criterion = "l1"
    latency_budget = True  # one global knob: bisected on predicted latency as on MACs

    def pick(self, g, target: float, size: int, cost_model=None):
        raise NotImplementedError

    def search(self, request: SearchRequest, ctx: SearchContext) -> Found:
        g, size = request.run.generator, request.run.size
        t0 = time.perf_counter()
        full = spec_macs(g, {}, size)
        if request.latency_target is None:
            target = resolve_macs_target(g, request.macs_target, size)
            spec, extra = self.pick(g, target, size)
            ctx.say(f"{self.name}: generator target {target / 1e6:.2f} M MACs ({target / full:.1%} of "
                    f"{full / 1e6:.2f} M)")
        else:
            lm, ms = latency_budget(g, request.latency_target, size)
            spec, extra = self.pick(g, ms, size, lm)
            target = spec_macs(g, spec, size)  # the MACs that latency budget bought
            ctx.say(f"{self.name}: generator target {ms:.2f} ms predicted ({ms / lm.full_ms:.1%} of {lm.full_ms:.2f} ms, "
                    f"{lm.runtime}, {lm.threads} threads, {lm.size}²) → {target / full:.1%} of the MACs")
        ctx.log_params({"target_macs": target, "teacher_macs": full})
        return Found(generator=spec, discriminator=None, target_macs=target, teacher_macs=full,
                     search_s=time.perf_counter() - t0, extra=extra)


class Uniform(_Simple):
    name = "uniform"

    def pick(self, g, target, size, cost_model=None):
        spec, knob = uniform_spec(g, target, size, criterion=self.criterion, cost_model=cost_model)
        return spec, {"keep_ratio": knob}


class L1(_Simple):
    name = "l1"

    def pick(self, g, target, size, cost_model=None):
        spec, knob = global_threshold_spec(g, target, size, criterion=self.criterion, cost_model=cost_model)
        return spec, {"threshold": knob}


@dataclass(frozen=True)
class FastestOptions:
    """``measure``: climbs from that many seeds whose distinct picks are measured at the deployment size (3 rounds)
    and the measured fastest kept; 0: one climb, the model's pick unmeasured (docs/methods.md, "Fastest widths")."""

    measure: int = 4

    def __post_init__(self):
        if not (isinstance(self.measure, int) and self.measure >= 0):
            raise MethodOptionError(f"--method fastest needs a whole number measure ≥ 0 (candidates measured; 0: "
                                    f"trust the latency model), got measure={self.measure!r}")


class Fastest(Method):
    """At a MACs budget, the widths the latency model of the deployment (``--latency-size``, ``--latency-runtime``,
    ``--latency-threads``) predicts fastest, in multiples of the kernels' block (``--align``, default this CPU's);
    channels by filter L1. It looks at speed only: a fidelity-blind allocation, priced by the same fine-tune."""

    name = "fastest"
    models_latency = True
    Options = FastestOptions

    def search(self, request: SearchRequest, ctx: SearchContext) -> Found:
        g, size = request.run.generator, request.run.size
        t0 = time.perf_counter()
        full = spec_macs(g, {}, size)
        target = resolve_macs_target(g, request.macs_target, size)
        deploy = request.deploy or LatencyTarget(1.0)  # no --latency-* flags: the teacher's size, ORT, default threads
        block = request.align if request.align > 1 else kernel_block()
        lm = deploy.latency_model(g, size, quiet=request.quiet)
        start, measured = climb_start(g, target, size), []  # one L1 keep ratio's widths, before alignment
        if request.options.measure:
            ctx.say(f"{self.name}: measuring the picks of {request.options.measure} climbs at {lm.size}² "
                    f"({lm.runtime}, {lm.threads} threads): the fastest measured ships")
            counts, measured = fastest_measured(g, lm, target, size, block, request.options.measure,
                                                seed=request.seed, quiet=request.quiet, start=start)
        else:
            counts = fastest_counts(g, lm, target, size, block, seed=request.seed, start=start)
        spec = align_spec(g, {n: [] for n in counts}, counts)  # per group the top channels by filter L1
        extra = {"block": block, "widths": counts, "predicted_ms": lm.cost(counts),
                 "uniform_predicted_ms": lm.cost(start), "teacher_predicted_ms": lm.full_ms,
                 "latency_model": {"runtime": lm.runtime, "threads": lm.threads, "size": lm.size},
                 "measured_candidates": measured}
        ctx.say(f"{self.name}: {spec_macs(g, spec, size) / full:.1%} of the MACs, predicted "
                f"{extra['predicted_ms']:.2f} ms vs one L1 keep ratio's {extra['uniform_predicted_ms']:.2f} ms and the "
                f"teacher's {lm.full_ms:.2f} ms ({lm.runtime}, {lm.threads} threads, {lm.size}², block {block})")
        ctx.log_params({"target_macs": target, "teacher_macs": full, "block": block})
        ctx.log_metrics({"predicted_ms": extra["predicted_ms"], "uniform_predicted_ms": extra["uniform_predicted_ms"]})
        return Found(generator=spec, discriminator=None, target_macs=target, teacher_macs=full,
                     search_s=time.perf_counter() - t0, extra=extra)
