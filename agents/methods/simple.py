"""The simple baselines: ``uniform`` (one keep ratio for every group) and ``l1`` (one global threshold
on mean filter |w|); D is pruned to G's keep ratio (docs/methods.md, "Baselines")."""
from __future__ import annotations

import time

from agents.methods.base import Found, Method, SearchContext, SearchRequest
from gan.pruning.targets import global_threshold_spec, resolve_macs_target, spec_macs, uniform_spec


class _Simple(Method):
    criterion = "l1"

    def pick(self, g, target: float, size: int):
        raise NotImplementedError

    def search(self, request: SearchRequest, ctx: SearchContext) -> Found:
        g, size = request.run.generator, request.run.size
        t0 = time.perf_counter()
        target = resolve_macs_target(g, request.macs_target, size)
        spec, extra = self.pick(g, target, size)
        full = spec_macs(g, {}, size)
        ctx.log_params({"target_macs": target, "teacher_macs": full})
        ctx.say(f"{self.name}: generator target {target / 1e6:.2f} M MACs ({target / full:.1%} of {full / 1e6:.2f} M)")
        return Found(generator=spec, discriminator=None, target_macs=target, teacher_macs=full,
                     search_s=time.perf_counter() - t0, extra=extra)


class Uniform(_Simple):
    name = "uniform"

    def pick(self, g, target, size):
        spec, knob = uniform_spec(g, target, size, criterion=self.criterion)
        return spec, {"keep_ratio": knob}


class L1(_Simple):
    name = "l1"

    def pick(self, g, target, size):
        spec, knob = global_threshold_spec(g, target, size, criterion=self.criterion)
        return spec, {"threshold": knob}
