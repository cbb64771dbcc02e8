"""Fast GAN Compression as one function (docs/methods.md, "GAN Compression"): supernet training → evolutionary search.

1. Supernet (``gan.train.supernet``): the teacher's architecture, initialised from the teacher with
   saliency-ordered channels; trained by the one pix2pix trainer on the teacher's train split with
   L_G = L_GAN + λ_recon·||G_S(x) − G_T(x)||_1 + λ_distill·L_distill (``TeacherTargets`` makes G_T(x)
   the target, ``feature_distill`` adds the taps); one config sampled per step; D = a copy of the
   teacher's D, trained along.  A U-Net teacher has no distillation taps: λ_distill = 0, said in one
   line and recorded as ``feature_distill`` False (docs/methods.md, "GAN Compression").
2. Search (``agents.baselines.evolution``): every config scored by slicing the trained supernet (no
   training) — L1 (or −PSNR) to the teacher on ``eval_items`` search items (gan.data.splits); configs over the
   MACs budget are never scored.  GAN Compression searches on a held-out part of the *train* set
   (train2); ours scores on the same seeded train items as every other method's search.
3. Export: the supernet (full width, teacher channel order) to ``out/supernet/generator`` (+ its D
   and ``supernet.json``), so a fine-tune can start from the supernet's weights: ``prune`` that
   export with the returned spec to get exactly the searched sub-net.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from agents.baselines.evolution import EvolutionConfig, evolution_search, key
from gan.losses.feature_distill import no_taps_notice
from gan.train.supernet import DEFAULT_FRACTIONS, Supernet, SupernetSettings, effective_settings, train_supernet
from gan import data as gdata
from gan.data.splits import search_batches
from gan.metrics.image import psnr
from gan.latency_model import latency_budget
from gan.pruning.macs import MacsModel, fill_counts
from gan.pruning.targets import resolve_macs_target
from gan.progress import progress

METRICS = ("l1", "psnr")


def _held_out(run, n: int, seed: int) -> torch.Tensor:
    """``n`` seeded search inputs: the items every search scores on (``gan.data.splits``)."""
    root = gdata.resolve_dataset(run.data, size=run.size)
    return search_batches(root, run.size, n, 0, seed)[0][0]


def gan_compression(run, target_macs: float, out, *, supernet_steps: int = 1000, population: int = 100,
                    generations: int = 500, eval_items: int = 32, batch_size: int = 4, seed: int = 0,
                    backend: str = "deepspeed", quiet: bool = False, lr: float = 2e-4, gan_loss: str = "hinge",
                    lambda_recon: float = 10.0, lambda_distill: float = 1.0, mutate_prob: float = 0.3,
                    weighted_sample: float = 1.0, fractions=DEFAULT_FRACTIONS, criterion: str = "l1",
                    metric: str = "l1", zero_stage: int = 0, fill: bool = True, latency=None) -> dict:
    """Train the supernet, search the best config under ``target_macs`` (fraction ≤ 1 or count);
    ``fill``: spend the budget the best config leaves unused by widening its groups (equal MACs).
    ``latency`` (a ``gan.latency_model.LatencyTarget``): the evolution's constraint and the fill budget
    predicted latency instead of MACs; ``target_macs`` then reports the MACs the pick spends.

    Returns {"spec": {"generator": teacher-indexed spec}, "config", "macs", "score", "target_macs",
    "teacher_macs", "search_s", "supernet_s", "history", "train_history", "init_generator",
    "init_discriminator", "supernet", "feature_distill", "extra"} (with ``latency``: "latency_target_ms",
    "predicted_latency_ms"); on ranks > 0 of a multi-process run
    {"rank": r}.  ``feature_distill`` False: the teacher has no distillation taps (a U-Net), the supernet
    trained with λ_distill = 0 (``gan.train.supernet.effective_settings``).
    """

    if metric not in METRICS:
        raise ValueError(f"unknown search metric {metric!r}; choose one of {', '.join(METRICS)}")
    if supernet_steps < 0 or eval_items < 1:
        raise ValueError("supernet_steps must be ≥ 0 and eval_items ≥ 1")
    settings = SupernetSettings(steps=supernet_steps, batch_size=batch_size, lr=lr, gan_loss=gan_loss,
                                lambda_recon=lambda_recon, lambda_distill=lambda_distill, fractions=tuple(fractions),
                                criterion=criterion, seed=seed, backend=backend, zero_stage=zero_stage)
    settings, feature_distill = effective_settings(run.generator, settings)
    lambda_distill = settings.lambda_distill
    out = Path(out)
    teacher, size = run.generator.eval(), int(run.size)
    supernet = Supernet(teacher, size=size, fractions=fractions, criterion=criterion, seed=seed)
    full = supernet.macs(supernet.largest)
    if latency is None:
        target, lm = resolve_macs_target(teacher, target_macs, size), None
        config_cost = supernet.macs
    else:  # budget predicted latency (a config's cost: its counts' predicted ms)
        lm, target = latency_budget(teacher, latency, size)

        def config_cost(c):
            return lm.cost(supernet.counts(c))
    floor = config_cost(supernet.smallest)
    if floor > target:
        unit = "MACs" if lm is None else "predicted ms"
        raise ValueError(f"target {target:.4g} {unit} is below the narrowest supernet config's {floor:.4g} {unit}; "
                         "raise the target or add smaller width fractions")
    say = (lambda m: None) if quiet else (lambda m: print(m, flush=True))
    say(f"gan-compression: supernet positions {'_'.join(supernet.position_names)}, " +
        (f"target {target / 1e6:.2f} M MACs ({target / full:.1%})" if lm is None else
         f"target {target:.2f} ms predicted ({target / lm.full_ms:.1%} of the teacher's)"))
    if not feature_distill:
        say(no_taps_notice(teacher, "the supernet"))

    # 1. supernet training (gan.train.supernet.train_supernet) -----------------------------------
    trained = train_supernet(run, settings, quiet=quiet)
    trainer, supernet_s = trained.trainer, trained.seconds
    device = trainer.g.device
    teacher = teacher.to(device)
    if trainer.rank != 0:
        return {"rank": trainer.rank}

    # 2. evolutionary search ------------------------------------------------------------------
    supernet = trainer.generator.eval()
    x = _held_out(run, eval_items, seed).to(device)
    chunks = x.split(max(1, batch_size))
    with torch.no_grad():
        t = torch.cat([teacher(c) for c in chunks])

    def score(c) -> float:
        supernet.set_config(c)
        with torch.no_grad():
            s = torch.cat([supernet(xc) for xc in chunks])
        return float(F.l1_loss(s, t)) if metric == "l1" else -psnr(s, t)

    ecfg = EvolutionConfig(population=population, generations=generations, mutate_prob=mutate_prob,
                           weighted_sample=weighted_sample, seed=seed)
    bar = progress(total=generations, desc="evolution", quiet=quiet)

    def on_generation(rec):
        bar.update(1)
        bar.set_postfix(best=rec["best"], score=f"{rec['best_score']:.4f}", n=rec["evaluated"])

    t0 = time.perf_counter()
    try:
        res = evolution_search(supernet.choices, score, config_cost, target, ecfg, on_generation)
    finally:
        bar.close()
        supernet.set_config(None)
    search_s = time.perf_counter() - t0
    best_macs = supernet.macs(res.best)
    say(f"best config {res.best_key}: {best_macs / 1e6:.2f} M MACs ({best_macs / full:.1%}), "
        f"{metric} {res.best_score:.4f} ({res.evaluated} configs scored in {search_s:.1f} s)")

    # 3. equal MACs: the config grid is coarse, so the best config usually leaves budget unused; spend
    # it by widening its groups (fill_counts; first-k slices of any width are valid sub-nets), so every
    # method is compared at the same MACs ---------------------------------------------------------
    counts = supernet.counts(res.best)
    mm = MacsModel(supernet.net, supernet.size)
    if fill:
        counts = fill_counts(mm if lm is None else lm, counts, target)
    spec = {n: sorted(supernet.order[n][:k]) for n, k in counts.items()}
    macs = int(mm.macs(counts))
    extra_latency = {} if lm is None else {"latency_target_ms": target, "predicted_latency_ms": lm.predicted_ms(counts)}
    if lm is not None:
        target = macs  # the MACs the latency budget bought

    # 4. export ------------------------------------------------------------------------------------
    sdir = supernet.save(out / "supernet", discriminator=trainer.discriminator, feature_distill=feature_distill)
    result = {
        "spec": {"generator": spec}, "config": key(res.best), "filled_counts": counts,
        "macs": macs, "config_macs": best_macs, "score": res.best_score, "metric": metric, "target_macs": target,
        "teacher_macs": full, "search_s": search_s, "supernet_s": supernet_s, "history": res.history,
        "train_history": trainer.history, "init_generator": str(sdir / "generator"),
        "init_discriminator": str(sdir / "discriminator"), "supernet": str(sdir), "feature_distill": feature_distill,
        **extra_latency,
        "extra": {"config": key(res.best), "positions": supernet.position_names, "evaluated": res.evaluated,
                  "supernet_steps": supernet_steps, "population": population, "generations": generations,
                  "evolution": ecfg.to_dict(), "lambda_recon": lambda_recon, "lambda_distill": lambda_distill,
                  "config_macs": best_macs, "filled": fill, "feature_distill": feature_distill},
    }
    (sdir / "search.json").write_text(json.dumps(result, indent=1, default=float))
    return result
