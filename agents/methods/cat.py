"""CAT: one global |γ| threshold found by bisection, fine-tuned with GKA (docs/methods.md, "CAT")."""
from __future__ import annotations

from agents.methods.base import Found, Method, SearchContext, SearchRequest
from agents.baselines.cat import cat


class Cat(Method):
    name = "cat"
    objective = "gka"
    #: the GKA taps and the floors read a residual trunk (``ResidualTrunk.features``: res_in, block{i};
    #: ngf): ResNet and CAT's inception generator (docs/methods.md, "CAT")
    generators = ("ResnetGenerator", "InceptionGenerator")
    latency_budget = True  # the one global |γ| threshold is bisected on predicted latency as on MACs

    def search(self, request: SearchRequest, ctx: SearchContext) -> Found:
        f = cat(request.run, request.macs_target, quiet=request.quiet, latency=request.latency_target)
        ctx.log_params({"target_macs": f["target_macs"], "teacher_macs": f["teacher_macs"]})
        return Found(generator=f["spec"]["generator"], discriminator=f["spec"]["discriminator"],
                     target_macs=f["target_macs"], teacher_macs=f["teacher_macs"], search_s=f["search_s"],
                     extra=f["extra"])
