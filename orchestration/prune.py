"""``ganprune prune --method marl``: search → fine-tune the best pair → export → evaluate, in MLflow.

Layout of ``out``::

    checkpoints/iter_N/     RLlib checkpoint of both policies + search state (newest two kept)
    history.json            one summary per iteration (returns, own scores, keep ratios, G/D balance)
    keep_ratios.png         per-group keep ratios over iterations, per agent (pruning dynamics)
    gd_balance.png          G/D balance and the agents' scores over iterations
    best_spec.json          the best (G spec, D spec) found, with its scores
    finetune/               ``ganprune finetune`` of that pair (the method's objective), checkpointed: a resume
                            continues it
    generator/              the exported pruned generator (= finetune/generator)
    prune.json              the summary (MACs, params, latency, fidelity, costs, MLflow run id)

MLflow: a parent run (experiment "prune") with params, per-iteration metrics, plots, sample grids,
the policy checkpoint and the exported generator (ONNX, registered); one nested run per agent.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

from gan.determinism import controlled_run
from orchestration.errors import UsageError
from orchestration.requests import FinetuneRequest, PruneRequest
from orchestration.attempts import AttemptLedger
from orchestration.rundir import write_json
from agents import methods
from agents.cluster import check_ray_address
from agents.methods import MethodOptionError, REGISTRY, SearchContext, SearchRequest
from gan import data as gdata, export as gexport
from gan.data.splits import report_split
from gan.determinism import seed_all
from gan.train.distill import DEFAULT_OBJECTIVE
from gan.metrics.image import psnr, ssim
from gan.latency_model import counts_spec, latency_budget, measure_counts
from gan.pruning.align import align_to_budget, resolve_block
from gan.pruning.macs import MacsModel
from gan.pruning.targets import resolve_macs_target
from gan.teacher_run import IMAGE_KINDS, load_teacher_run
from gan.train import checkpoint as ckpt
from gan.train.distill import OBJECTIVES
from orchestration import plots
from orchestration.config import load_preset
from orchestration.finetune import EVAL_ITEMS, _eval, finetune
from orchestration.launch import per_world
from orchestration.ray_finetune import finetune_on_ray
from orchestration.report import print_table
from orchestration.rundir import claim_run_dir, clear_run_dir
from orchestration.teacher_cache import ensure_teacher
from orchestration.tracking import Tracker, check_reachable, resolve_tracking_uri

EXPERIMENT = "prune"
REGISTERED_MODEL = "ganprune-generator"
#: the best pair's fine-tune checkpoints this many times (a kill then loses at most a tenth of it)
FINETUNE_CHECKPOINTS = 10


def latest_search_checkpoint(out: Path):
    """The newest search checkpoint in a run directory (the methods that checkpoint their search: marl),
    or None: what ``--resume`` continues from."""
    from agents.marl import checkpoints

    found = checkpoints(out)
    return found[-1] if found else None


@controlled_run
def prune(request: PruneRequest, process: dict | None = None) -> dict:
    """Find a (G spec, D spec) pair with the request's registered method (``agents.methods``; default
    ``agents.methods.DEFAULT``), fine-tune it with the method's objective (or the request's; ``vem``
    adds VEM's term), export, profile and log it.  The run works under
    ``gan.determinism.controlled(request.seed)`` with ``request.threads`` torch threads: the same
    request gives the same result whatever ran before in the process, and the process's settings
    are restored afterwards (``process`` is filled in with them).  ``<out>/request.json`` records
    the request (``ganprune prune --request`` runs it again)."""
    r = request
    m = method_of(r.method)
    objective = check_method(m.name, r.finetune.objective, r.finetune.vem, r.options)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    pre = load_preset(r.preset)
    settings, placement = r.search.resolve(pre), r.placement
    finetune_steps = r.finetune.resolved_steps(pre)
    check_request(m, settings, placement, finetune_steps)
    check_backend(m, r.search)
    block = check_align(m, r.align)
    if r.track:
        check_reachable(resolve_tracking_uri(r.tracking_uri))
    if m.uses_search_placement and placement.address:  # a dead --address fails now: Ray would retry it forever
        check_ray_address(placement.address)
    out = Path(r.out)
    last = claim_run_dir(out, r.resume, r.overwrite, latest_search_checkpoint, "pruning search")
    teacher = r.teacher
    if last is not None:
        teacher = json.loads((last / "search_state.json").read_text())["problem"]["teacher"]
    teacher = str(Path(teacher).resolve()) if teacher else str(ensure_teacher(
        r.preset, r.data, quiet=r.quiet, tracking_uri=r.tracking_uri))
    seed_all(r.seed)  # the search starts from the seed, whatever the checks and teacher loading drew
    run = load_teacher_run(teacher, kinds=m.kinds)
    m.check_teacher(run, REGISTRY, m.options(r.options))  # a generator class (or an option) the method
    # cannot take for this teacher: refused before any work
    latency = r.latency()
    if r.macs_cap is not None and latency is None:
        raise UsageError("--macs-cap caps MACs under a latency budget: add --latency-target, or give the MACs "
                         "budget alone as --macs-target")
    if latency is not None and not m.latency_budget:
        takers = [n for n, x in REGISTRY.items() if x.latency_budget]
        raise UsageError(f"--latency-target: {m.name} budgets MACs only; use --macs-target, or --method "
                         f"{', '.join(takers)}")
    if run.kind in IMAGE_KINDS and latency is None:  # an unreachable target fails before out/ is made
        resolve_macs_target(run.generator, r.macs_target, run.size)
    if run.kind in IMAGE_KINDS and latency is not None:  # measures the latency model once per machine (cached)
        _say(r.quiet, f"latency model: {latency.runtime}, {latency.threads or 'default'} threads, "
                      f"{latency.size or run.size}² "
                      "(measured once per machine, then cached)")
        latency_budget(run.generator, latency, run.size, quiet=r.quiet)
    clear_run_dir(out, r.overwrite, last, inputs=(teacher,))  # --overwrite: the old run goes now the inputs are good
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "request.json", r.to_dict())

    run_file = out / "run.json"
    ids = json.loads(run_file.read_text()) if last and run_file.is_file() else {}
    parent = Tracker(EXPERIMENT, run_name=f"{m.name}-{Path(r.preset).stem}-{r.macs_target:g}",
                     tracking_uri=r.tracking_uri, enabled=r.track,
                     tags={"ganprune.command": "prune", "ganprune.method": m.name,
                           "ganprune.out_dir": str(out.resolve())})
    parent.start(run_id=ids.get("parent"))
    children = {}
    status = "FAILED"
    # a resumed run's cost counts every attempt (orchestration/attempts.py)
    ledger = AttemptLedger(out, resumed=last is not None, cpu0=cpu_start, t0=t_start).start()
    try:
        children = {a: Tracker(EXPERIMENT, run_name=a, tracking_uri=r.tracking_uri, parent_run_id=parent.run_id,
                               enabled=r.track, tags={"ganprune.agent": a}).start(run_id=ids.get(a))
                    for a in m.agents}
        write_json(run_file, {"parent": parent.run_id, **{a: c.run_id for a, c in children.items()},
                              "tracking_uri": parent.tracking_uri if r.track else None})
        common = {"method": m.name, "teacher": teacher, "preset": r.preset, "macs_target": r.macs_target,
                  "finetune_steps": finetune_steps, "seed": r.seed, "objective": objective, "vem": r.finetune.vem,
                  "process": process}
        parent.log_params(common)
        if parent.active:
            _say(r.quiet, f"{m.name}: MLflow run {parent.run_id}")
        search_request = SearchRequest(run=run, teacher=teacher, out=out, macs_target=r.macs_target, seed=r.seed,
                                       latency_target=latency, align=block, deploy=r.deployment(),
                                       search=settings, placement=placement, options=m.options(r.options),
                                       finetune_steps=finetune_steps, finetune_backend=r.finetune.backend,
                                       export_onnx=r.finetune.export_onnx, preset=pre, resume_from=last,
                                       quiet=r.quiet)
        ctx = SearchContext(log_params=parent.log_params, log_metrics=parent.log_metrics,
                            log_artifact=parent.log_artifact, log_artifacts=parent.log_artifacts,
                            say=lambda msg: _say(r.quiet, msg), agent_runs=children, write_json=write_json,
                            plot_history=plots.search_history)
        cpu0 = time.process_time()
        found = m.search(search_request, ctx)
        aligned = None
        if block > 1 and found.generator is not None:
            found.generator, aligned = align_found(run, found, latency, block)
            state = "aligned" if aligned["aligned"] else "left as found (no aligned widths fit the budget)"
            _say(r.quiet, f"--align {block}: G widths {state}, cost {aligned['cost_before']:.4g} → "
                          f"{aligned.get('cost_after', aligned['cost_before']):.4g} (target {aligned['target']:.4g})")
            parent.log_params({"align": block})
        cost = found.cost()
        cost.setdefault("search_cpu_s", round(time.process_time() - cpu0, 2))
        if m.trains_itself:
            summary = _report_trained(found, run, out, parent)
        else:
            summary = _finish(found, search_request, parent, objective=objective,
                              add=("vem",) if r.finetune.vem else (), resumed=last is not None)
        if aligned is not None:
            summary["align"] = aligned
        if latency is not None and (found.generator is not None or found.generator_keep):
            summary["latency_budget"] = latency_report(run, latency, found.generator or
                                                       counts_spec(run.generator, found.generator_keep))
            note = over_target_note(summary["latency_budget"])
            if note:
                _say(r.quiet, note)
            parent.log_metrics({k: v for k, v in summary["latency_budget"].items() if k.endswith("_ms")})
        summary.update(common, **cost, resumed=last is not None, **ledger.totals(), mlflow_run_id=parent.run_id)
        parent.log_metrics({k: v for k, v in cost.items()} | {"cpu_s": summary["cpu_s"]})
        write_json(out / "prune.json", summary)
        parent.log_artifact(out / "prune.json")
        status = "FINISHED"
        return summary
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        ledger.stop()
        for c in children.values():
            c.end(status)
        parent.end(status)


def check_align(m, align) -> int:
    """``--align`` → the channel block (1: none), refused at once for a method that trains its own
    widths (its export is what it trained, nothing is left to round)."""
    try:
        block = resolve_block(align)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if block > 1 and m.trains_itself:
        raise UsageError(f"--align: {m.name} trains its own pruned generator, whose widths cannot be rounded "
                         "afterwards; drop --align or choose another --method")
    return block


def align_found(run, found, latency, block: int) -> tuple[dict, dict]:
    """The found G spec aligned to ``block`` within the run's budget (``gan.pruning.align``): predicted
    latency when the budget is latency, else MACs; channels ranked on the weights the fine-tune starts
    from (the method's ``init_generator``, else the teacher)."""
    if latency is not None:
        cost_model, target = latency_budget(run.generator, latency, run.size)
    else:
        cost_model, target = MacsModel(run.generator, run.size), found.target_macs
    start = gexport.load(found.init_generator) if found.init_generator else None
    return align_to_budget(run.generator, found.generator, cost_model, target, block, start=start)


def latency_report(run, latency, spec: dict) -> dict:
    """The latency budget against its outcome: target and predicted ms (the model the search budgeted), and the
    pruned architecture's and the teacher's latency measured now (exported to ONNX, same runtime and threads)."""
    lm, target = latency_budget(run.generator, latency, run.size)
    counts = lm.counts(spec)
    measured = measure_counts(run.generator, counts, lm.size, lm.runtime, lm.threads)
    teacher = measure_counts(run.generator, {}, lm.size, lm.runtime, lm.threads)
    return {"runtime": lm.runtime, "threads": lm.threads, "size": lm.size, "target_ms": target,
            "predicted_ms": lm.predicted_ms(counts), "measured_ms": measured, "teacher_predicted_ms": lm.full_ms,
            "teacher_measured_ms": teacher, "speedup": teacher / measured,
            "over_target": measured > OVER_TARGET * target,
            **({"macs_cap_fraction": lm.describe()["macs_cap_fraction"]} if latency.macs_cap is not None else {})}


#: a pick measured this much over its latency target is reported (a single measurement on a busy
#: machine wanders ±15 %: docs/methods.md, "Latency budgets", Measuring)
OVER_TARGET = 1.10


def over_target_note(b: dict) -> str | None:
    """One line for a pick measured over its latency target, saying what to do; None when within."""
    if not b.get("over_target"):
        return None
    return (f"note: the pick measured {b['measured_ms']:.2f} ms, {b['measured_ms'] / b['target_ms'] - 1:+.0%} over "
            f"the {b['target_ms']:.2f} ms target (predicted {b['predicted_ms']:.2f} ms): the latency model "
            "under-predicts this spec, or the machine was busy; measure again with `ganprune profile`, or "
            "prune to a lower --latency-target")


def method_of(name: str | None):
    """The registered method ``name`` (``agents.methods.DEFAULT`` when None), as a one-line usage error
    when it is unknown."""
    try:
        return methods.get(name or methods.DEFAULT)
    except methods.UnknownMethodError as e:
        raise UsageError(str(e)) from None


def check_method(method: str, objective: str | None = None, vem: bool = False,
                 options: dict | None = None) -> str | None:
    """A method with its options, checked before any work (``benchmark`` checks every one first);
    returns the fine-tune objective it will use."""
    m = method_of(method)
    if m.objective is None:
        if objective is not None or vem:
            raise UsageError(f"--method {m.name} trains with its own objective; drop --objective/--vem "
                             f"(or drop {m.name} from --methods)")
    else:
        objective = objective or m.objective
        if objective not in OBJECTIVES:
            raise UsageError(f"unknown --objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    try:
        m.options(options)
    except MethodOptionError as e:
        raise UsageError(str(e)) from None
    return objective


def check_request(m, settings, placement, finetune_steps: int) -> None:
    """The settings and placement ``prune`` was given make sense for the method ``m`` (one line each)."""
    for name, v in (("--iterations", settings.iterations), ("--episodes", settings.episodes)):
        if v < 1:
            raise UsageError(f"{name} must be ≥ 1, got {v}")
    if placement.backend_workers < 0 or placement.num_env_runners < 0:
        raise UsageError("--backend-workers and --num-env-runners must be ≥ 0")
    if not m.uses_search_placement and (placement.backend_workers or placement.num_env_runners):
        raise UsageError(f"--backend-workers and --num-env-runners serve the multi-agent search; drop them for "
                         f"--method {m.name}")
    if finetune_steps < 0 or settings.backend_steps < 0:
        raise UsageError("--finetune-steps and --backend-steps must be ≥ 0")
    if not 0 <= settings.beta <= 10:
        raise UsageError(f"--peer-beta must be in [0, 10], got {settings.beta}")
    for field, flag in (("evaluations", "--evaluations"), ("search_from", "--search-from")):
        takers = [n for n, x in methods.REGISTRY.items() if field in x.own_settings]
        if getattr(settings, field) is not None and field not in m.own_settings:
            raise UsageError(f"{flag} is a setting of --method {' / '.join(takers)}, not of {m.name}")
    if settings.evaluations is not None and settings.evaluations < 1:
        raise UsageError(f"--evaluations must be ≥ 1 (candidate pairs to score), got {settings.evaluations}")
    if settings.search_from and not (Path(settings.search_from) / "checkpoints").is_dir():
        raise UsageError(f"--search-from {settings.search_from}: give a finished search's run directory "
                         f"(with checkpoints/)")


def check_backend(m, flags) -> None:
    """``--backend``/``--backend-option`` (``flags``: the request's ``SearchFlags``) only for a method that
    scores candidates with an environment backend."""
    if not m.uses_search_settings and (flags.backend != "local" or flags.backend_options):
        takers = [n for n, x in methods.REGISTRY.items() if x.uses_search_settings]
        raise UsageError(f"--backend and --backend-option set the search backend of --method {' / '.join(takers)}; "
                         f"{m.name} does not score candidates with one: drop them")


def _say(quiet: bool, msg: str) -> None:
    if not quiet:
        print(msg, flush=True)


def _finish(found, request, parent, objective: str = DEFAULT_OBJECTIVE, add=(), resumed: bool = False) -> dict:
    """best_spec.json → fine-tune (the method's objective; in ``finetune_workers`` Ray Train workers
    when > 0) → generator/ export → profile → MLflow.  ``request``: the method's ``SearchRequest``;
    ``resumed``: a resumed run continues an unfinished fine-tune from its newest checkpoint (the best
    pair is the same: it comes from the search's)."""
    out, steps, workers = request.out, request.finetune_steps, request.placement.finetune_workers
    spec = {k: v for k, v in found.spec.items() if v is not None}  # no D spec: D pruned to G's keep ratio
    write_json(out / "best_spec.json", {**spec, "best": found.best})
    parent.log_artifact(out / "best_spec.json")
    ft_dir = out / "finetune"
    resume = resumed and ckpt.latest(ft_dir) is not None and not (ft_dir / "finetune.json").is_file()
    if ft_dir.exists() and not resume:
        shutil.rmtree(ft_dir)
    ft_request = FinetuneRequest(request.teacher, str(out / "best_spec.json"), str(ft_dir), objective=objective,
                                 add=tuple(add), steps=steps, backend=request.finetune_backend, quiet=request.quiet,
                                 seed=request.seed, export_onnx=request.export_onnx,
                                 init_generator=found.init_generator, init_discriminator=found.init_discriminator,
                                 resume=resume, ckpt_every=max(1, steps // FINETUNE_CHECKPOINTS))
    if workers > 0:
        ft = finetune_on_ray(workers, replace(ft_request, batch_size=per_world(ft_request.batch_size, workers)),
                             address=request.placement.address)
    else:
        ft = finetune(ft_request)
    for member in ("generator", "discriminator"):
        if (out / member).exists():
            shutil.rmtree(out / member)
        shutil.copytree(ft_dir / member, out / member)
    return _report(found, request.run, request.teacher, out, parent, before=ft["before"], after=ft["after"],
                   finetune_s=ft["train_seconds"], generator_keep=ft["generator_spec"],
                   discriminator_keep=ft["discriminator_spec"])


def _report(found, run, teacher: str, out: Path, parent, *, before: dict, after: dict, finetune_s: float,
            generator_keep: dict, discriminator_keep: dict | None) -> dict:
    """Profile ``out/generator`` against the teacher's, log the final metrics and the model: the summary."""
    prof_t = gexport.profile_export(Path(teacher) / run.meta["generator"], size=run.size, runs=20)
    prof_p = gexport.profile_export(out / "generator", size=run.size, runs=20)
    summary = {
        "out": str(out), "size": run.size, "target_macs": found.target_macs,
        "teacher_macs": found.teacher_macs, "macs": prof_p["macs"], "macs_ratio": prof_p["macs"] / prof_t["macs"],
        "params": prof_p["params"], "teacher_params": prof_t["params"],
        "latency_ms": prof_p["torch_latency"]["median_ms"], "teacher_latency_ms": prof_t["torch_latency"]["median_ms"],
        "fidelity_before_finetune": before, "fidelity": after,
        "search_s": round(found.search_s, 2), "finetune_s": round(finetune_s, 1),
        "backend": found.backend, **found.extra,
        "generator_keep": generator_keep, "discriminator_keep": discriminator_keep,
        "profile": {"teacher": prof_t, "pruned": prof_p},
    }
    parent.log_metrics({"final_macs": summary["macs"], "final_macs_ratio": summary["macs_ratio"],
                        "final_params": summary["params"], "final_latency_ms": summary["latency_ms"],
                        "teacher_latency_ms": summary["teacher_latency_ms"], "search_s": found.search_s,
                        "finetune_s": finetune_s, **{f"final_{k}": v for k, v in after.items()}})
    if (out / "generator" / "samples.png").is_file():
        parent.log_artifact(out / "generator" / "samples.png", "samples")
    parent.log_artifacts(out / "generator", "generator")
    _log_model(parent, out / "generator")
    return summary


def _report_trained(found, run, out: Path, parent) -> dict:
    """A method that trained its own student (``trains_itself``): its export becomes ``out/generator``,
    scored on the report split like every fine-tuned one."""
    if (out / "generator").exists():
        shutil.rmtree(out / "generator")
    shutil.copytree(found.trained / "generator", out / "generator")
    after = _fidelity_vs_teacher(run, out / "generator")
    return _report(found, run, str(run.dir), out, parent, before={}, after=after, finetune_s=found.finetune_s,
                   generator_keep=found.generator_keep, discriminator_keep=None)


def _fidelity_vs_teacher(run, export: Path) -> dict:
    """PSNR/SSIM vs the teacher on the report split (pix2pix; CycleGAN: + fid_proxy vs real B), or on
    fixed (z, y) draws (conditional)."""
    import torch


    model, teacher = gexport.load(export).eval(), run.generator.eval()
    if run.kind != "conditional":
        root = gdata.resolve_dataset(run.data, size=run.size)

        return _eval(model, teacher, gdata.open_dataset(root, size=run.size, split=report_split(root)))
    z, y = teacher.example_inputs(batch=EVAL_ITEMS, size=run.size)
    with torch.no_grad():
        t, s = teacher(z, y), model(z, y)
    return {"psnr_vs_teacher": float(psnr(s, t)), "ssim_vs_teacher": float(ssim(s, t))}


def _log_model(tracker, export: Path) -> None:
    """The exported generator as an MLflow ONNX model, registered as ``ganprune-generator``."""
    if not tracker.active or not (export / "generator.onnx").is_file():
        return
    import mlflow
    import mlflow.onnx
    import onnx

    mlflow.set_tracking_uri(tracker.tracking_uri)
    with mlflow.start_run(run_id=tracker.run_id):
        mlflow.onnx.log_model(onnx.load(str(export / "generator.onnx")), name="generator_onnx",
                              registered_model_name=REGISTERED_MODEL,
                              pip_requirements=["onnx", "onnxruntime"])


def print_summary(s: dict) -> None:
    """Teacher vs pruned: MACs, params, CPU latency, fidelity."""
    f, f0 = s["fidelity"], s["fidelity_before_finetune"]
    cols = ["model", "MACs", "params", "CPU ms", "PSNR vs teacher (dB)", "fid_proxy"]
    rows = [{"model": "teacher", "MACs": f"{s['teacher_macs'] / 1e6:.2f} M",
             "params": f"{s['teacher_params'] / 1e3:.1f} k", "CPU ms": f"{s['teacher_latency_ms']:.2f}",
             "PSNR vs teacher (dB)": "—",
             "fid_proxy": f"{f['fid_proxy_teacher']:.3f}" if "fid_proxy_teacher" in f else "—"},
            {"model": f"pruned ({s['method']} + fine-tune)",
             "MACs": f"{s['macs'] / 1e6:.2f} M ({s['macs_ratio']:.1%})", "params": f"{s['params'] / 1e3:.1f} k",
             "CPU ms": f"{s['latency_ms']:.2f} (×{s['teacher_latency_ms'] / s['latency_ms']:.2f})",
             "PSNR vs teacher (dB)": f"{f0.get('psnr_vs_teacher', float('nan')):.2f} → "
                                     f"{f.get('psnr_vs_teacher', float('nan')):.2f}",
             "fid_proxy": f"{f.get('fid_proxy', float('nan')):.3f}"}]
    print_table("teacher vs pruned", rows, cols)
    if s.get("latency_budget"):
        b = s["latency_budget"]
        print(f"latency budget ({b['runtime']}, {b['threads']} threads, {b['size']}²): target {b['target_ms']:.2f} ms, "
              f"predicted {b['predicted_ms']:.2f} ms, measured {b['measured_ms']:.2f} ms; teacher measured "
              f"{b['teacher_measured_ms']:.2f} ms (×{b['speedup']:.2f})")
