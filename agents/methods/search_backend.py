"""The search backend a method's environment scores candidates with (``prune --backend local|supernet``;
docs/methods.md, "Search backends"): what the problem config gets, and what preparing it cost.

``local``: weight inheritance + K fine-tune steps per candidate, with the options' objective (density,
l1, gka, distill; + VEM).  ``supernet``: a once-for-all supernet trained now with the one trainer
(``gan.train.supernet.train_supernet``, on DeepSpeed unless ``trainer=torch``) or reused from the cache;
each candidate's generator is its first-k slice, scored by a forward pass.  Its training is part of the search cost
(``charge``), also when it came from the cache (``cached`` says so).

A teacher without distillation taps (a U-Net): the supernet trains with λ_distill = 0 and the local
backend's "distill" steps keep L1 to the teacher + GAN; either says so in one line (docs/methods.md,
"GAN Compression"), and the supernet's record has ``feature_distill`` False.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agents.methods.base import Found, SearchContext, SearchRequest
from gan.losses.feature_distill import has_distill_taps, no_taps_notice
from gan.train.supernet import DEFAULT_FRACTIONS, SupernetSettings, cached_supernet, effective_settings


@dataclass(frozen=True)
class BackendSetup:
    name: str
    config: dict                  # envs.problem.ProblemConfig.backend_config
    options: dict                 # the backend's options (plain values), for the record
    supernet: dict | None = None  # the supernet's folder and training cost (supernet backend)


def prepare_backend(request: SearchRequest, ctx: SearchContext) -> BackendSetup:
    """The request's search backend, ready: for ``supernet``, the supernet trained or taken from the cache
    (its cost logged to MLflow as ``supernet_*``)."""
    from envs.backends.options import LocalOptions, options_dict

    s = request.search
    opts = s.backend_options if s.backend_options is not None else LocalOptions()
    base = {"finetune_steps": s.backend_steps, "eval_items": s.eval_items}
    if s.backend == "local":
        if opts.objective == "distill" and s.backend_steps and not has_distill_taps(request.run.generator):
            ctx.say(no_taps_notice(request.run.generator, "the local backend's distill steps"))
        return BackendSetup("local", {**base, **opts.backend_config()}, options_dict(opts))

    settings, taps = effective_settings(request.run.generator, SupernetSettings(
        steps=opts.train_steps, batch_size=opts.batch_size, lr=opts.lr, lambda_distill=opts.lambda_distill,
        fractions=tuple(opts.fractions or DEFAULT_FRACTIONS), seed=request.seed, backend=opts.trainer))
    if not taps:
        ctx.say(no_taps_notice(request.run.generator, "the supernet"))
    ctx.say(f"supernet backend: {'reusing or training' if opts.cache else 'training'} the supernet "
            f"({settings.steps} steps, {settings.backend})")
    folder = None if opts.cache else Path(request.out) / "supernet"
    path, cost = cached_supernet(request.run, settings, folder=folder, quiet=request.quiet)
    ctx.say(f"supernet {'from the cache' if cost['cached'] else 'trained'}: {path} ({cost['steps']} steps, "
            f"{cost['train_s']:.1f} s when trained)")
    ctx.log_params({"supernet_dir": str(path), "supernet_settings": settings.to_dict()})
    ctx.log_metrics({"supernet_train_steps": cost["steps"], "supernet_train_s": cost["train_s"],
                     "supernet_cpu_s": cost["cpu_s"], "supernet_cached": float(cost["cached"])})
    return BackendSetup("supernet", {"supernet": str(path), "finetune_steps": 0, "eval_items": s.eval_items,
                                     "density": opts.density},
                        options_dict(opts), {"dir": str(path), **cost})


def charge(found: Found, setup: BackendSetup) -> Found:
    """The backend's preparation in the search's cost and record: the supernet's training steps and CPU
    seconds (when it was trained, cached or not) are added to ``search_finetune_steps``/``search_cpu_s``;
    the fine-tune starts from the supernet's weights, the ones the candidate was scored with."""
    found.extra["search_backend"] = {"name": setup.name, "options": setup.options}
    if setup.supernet is not None:
        sn = setup.supernet
        found.extra["supernet"] = sn
        found.search_finetune_steps += int(sn["steps"])
        found.search_cpu_s = round((found.search_cpu_s or 0.0) + float(sn["cpu_s"]), 2)
        found.init_generator = str(Path(sn["dir"]) / "generator")
    return found
