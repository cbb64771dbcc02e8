"""GAN Compression: a once-for-all supernet distilled from the teacher, an evolutionary search of its
configs under the budget, fine-tune from the supernet's weights (docs/methods.md, "GAN Compression")."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from agents.methods.base import Found, Method, SearchContext, SearchRequest
from agents.baselines.gan_compression import gan_compression
from gan.losses.feature_distill import has_distill_taps
from gan.teacher_run import TeacherRunError


@dataclass(frozen=True)
class GanCompressionOptions:
    """``--method-option`` keys (None: the preset's value, else ``gan_compression``'s default)."""

    supernet_steps: int | None = None
    population: int | None = None
    generations: int | None = None
    eval_items: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    gan_loss: str | None = None
    lambda_recon: float | None = None
    lambda_distill: float | None = None
    mutate_prob: float | None = None
    weighted_sample: float | None = None
    fractions: tuple | None = None
    criterion: str | None = None
    metric: str | None = None
    zero_stage: int | None = None
    fill: bool | None = None


class GanCompression(Method):
    name = "gan-compression"
    objective = "distill"
    #: the supernet ties ResNet's "inner" groups into stages and the distillation taps read the residual
    #: blocks; a U-Net's groups are positions of their own and, without taps, it trains and fine-tunes
    #: with λ_distill = 0 (docs/methods.md, "GAN Compression" and "Which generators each method prunes")
    generators = ("ResnetGenerator", "UnetGenerator")
    Options = GanCompressionOptions
    latency_budget = True  # the evolution's constraint and the fill work on predicted latency as on MACs

    def check_teacher(self, run, registry: dict | None = None, options=None) -> None:
        """As every method's, and a ``lambda_distill`` > 0 asked for a teacher without distillation taps
        (a U-Net) is refused in one line: nothing could honour it (docs/methods.md, "GAN Compression")."""
        super().check_teacher(run, registry)

        lam = getattr(options, "lambda_distill", None)
        if lam and not has_distill_taps(run.generator):
            raise TeacherRunError(f"--method-option lambda_distill={lam:g}: {type(run.generator).__name__} has no "
                                  "residual-trunk taps to distil, gan-compression trains it with lambda_distill 0; "
                                  "drop the option")

    def search(self, request: SearchRequest, ctx: SearchContext) -> Found:
        """Train the supernet, evolve a config; the fine-tune then starts from the supernet's weights
        (``init_generator``) with the teacher's D as trained along (``init_discriminator``, not pruned)."""
        gc = request.preset.gan_compression
        kw = {"supernet_steps": gc.supernet_steps, "population": gc.population, "generations": gc.generations,
              "eval_items": request.search.eval_items,
              **{k: v for k, v in dataclasses.asdict(request.options).items() if v is not None}}
        f = gan_compression(request.run, request.macs_target, request.out, seed=request.seed,
                            backend=request.finetune_backend, quiet=request.quiet, latency=request.latency_target,
                            **kw)
        ctx.log_params({"target_macs": f["target_macs"], "teacher_macs": f["teacher_macs"], "gan_compression": kw})
        for i, h in enumerate(f.get("history", [])):
            if isinstance(h, dict) and isinstance(h.get("best_score"), (int, float)):
                ctx.log_metrics({"evolution_best_score": h["best_score"]}, step=i)
        return Found(generator=f["spec"]["generator"], discriminator={}, target_macs=f["target_macs"],
                     teacher_macs=f["teacher_macs"],
                     search_s=f["search_s"] + f["supernet_s"],  # the supernet is part of the search cost
                     search_evaluations=f["extra"]["evaluated"], search_finetune_steps=f["extra"]["supernet_steps"],
                     extra=f["extra"], init_generator=f.get("init_generator"),
                     init_discriminator=f.get("init_discriminator"))
