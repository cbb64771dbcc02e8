"""``ganprune prune --method marl``: search → fine-tune the best pair → export → evaluate, in MLflow.

Layout of ``out``::

    checkpoints/iter_N/     RLlib checkpoint of both policies + search state (newest two kept)
    history.json            one summary per iteration (returns, own scores, keep ratios, G/D balance)
    keep_ratios.png         per-group keep ratios over iterations, per agent (pruning dynamics)
    gd_balance.png          G/D balance and the agents' scores over iterations
    best_spec.json          the best (G spec, D spec) found, with its scores
    finetune/               ``ganprune finetune`` of that pair (density objective), checkpointed: a resume
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
from pathlib import Path

from gan.determinism import controlled_run
from orchestration.errors import UsageError
from orchestration.rundir import write_json

EXPERIMENT = "prune"
REGISTERED_MODEL = "ganprune-generator"
#: the best pair's fine-tune checkpoints this many times (a kill then loses at most a tenth of it)
FINETUNE_CHECKPOINTS = 10


def _latest_search_checkpoint(out: Path):
    from agents.marl import checkpoints

    found = checkpoints(out)
    return found[-1] if found else None


@controlled_run
def prune(method: str | None = None, teacher: str | None = None, preset: str = "tiny", data: str | None = None,
          macs_target: float = 0.25, out="runs/marl", iterations: int | None = None,
          beta: float = 0.5, resume: bool = False, overwrite: bool = False,
          tracking_uri: str | None = None, episodes: int | None = None, backend_steps: int | None = None,
          finetune_steps: int | None = None, finetune_backend: str = "deepspeed", finetune_workers: int = 0,
          num_env_runners: int = 0, address: str | None = None, seed: int = 0,
          cpus_per_env_runner: float = 1, gpus_per_learner: float = 0.0, backend_workers: int = 0,
          cpus_per_backend_worker: float = 1, gpus_per_env_runner: float = 0.0, gpus_per_backend_worker: float = 0.0,
          peer_observation: bool = True, prior: str = "l1", quiet: bool = False, track: bool = True,
          export_onnx: bool = True, objective: str | None = None, vem: bool = False,
          options: dict | None = None, evaluations: int | None = None, search_from: str | None = None,
          threads: int | None = None, process: dict | None = None) -> dict:
    """Find a (G spec, D spec) pair with the registered ``method`` (``agents.methods``; default
    ``agents.methods.DEFAULT``), fine-tune it with the method's objective (or ``objective``; ``vem``
    adds VEM's term), export, profile and log it.  ``options``: the method's ``--method-option``
    settings (its options dataclass refuses unknown keys).  ``evaluations``: random search's
    candidates; ``search_from``: a marl run directory whose finished search marl/marl-greedy reuse.
    ``threads``: torch threads for this run (default ``gan.determinism.default_threads``); the run
    works under ``gan.determinism.controlled(seed)``: the same seed gives the same result whatever
    ran before in the process, and the process's settings are restored afterwards (``process`` is
    filled in with them)."""
    from agents.methods import Placement, SearchContext, SearchRequest, SearchSettings
    from gan.determinism import seed_all
    from gan.teacher_run import load_teacher_run
    from orchestration import plots
    from orchestration.config import load_preset
    from orchestration.rundir import claim_run_dir, clear_run_dir
    from orchestration.teacher_cache import ensure_teacher
    from orchestration.tracking import Tracker, check_reachable, resolve_tracking_uri

    m = method_of(method)
    objective = check_method(m.name, objective, vem, options)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    pre = load_preset(preset)
    settings = SearchSettings(
        iterations=pre.marl.iterations if iterations is None else int(iterations),
        episodes=pre.marl.episodes_per_iteration if episodes is None else int(episodes),
        backend_steps=pre.marl.backend_steps if backend_steps is None else int(backend_steps),
        eval_items=pre.marl.eval_items, beta=beta, prior=prior, peer_observation=peer_observation,
        evaluations=evaluations, search_from=search_from)
    placement = Placement(address=address, num_env_runners=num_env_runners, cpus_per_env_runner=cpus_per_env_runner,
                          gpus_per_env_runner=gpus_per_env_runner, backend_workers=backend_workers,
                          cpus_per_backend_worker=cpus_per_backend_worker,
                          gpus_per_backend_worker=gpus_per_backend_worker, gpus_per_learner=gpus_per_learner,
                          finetune_workers=finetune_workers)
    finetune_steps = pre.marl.finetune_steps if finetune_steps is None else int(finetune_steps)
    check_request(m, settings, placement, finetune_steps)
    if track:
        check_reachable(resolve_tracking_uri(tracking_uri))
    if m.uses_search_placement and address:  # a dead --address fails now: Ray would retry it forever
        from agents.cluster import check_ray_address

        check_ray_address(address)
    out = Path(out)
    last = claim_run_dir(out, resume, overwrite, _latest_search_checkpoint, "pruning search")
    if last is not None:
        teacher = json.loads((last / "search_state.json").read_text())["problem"]["teacher"]
    teacher = str(Path(teacher).resolve()) if teacher else str(ensure_teacher(
        preset, data, quiet=quiet, tracking_uri=tracking_uri))
    seed_all(seed)  # the search starts from the seed, whatever the checks and teacher loading drew
    run = load_teacher_run(teacher, kinds=m.kinds)
    if run.meta.get("kind", "pix2pix") == "pix2pix":  # an unreachable target fails before out/ is made
        from gan.pruning.targets import resolve_macs_target

        resolve_macs_target(run.generator, macs_target, run.size)
    clear_run_dir(out, overwrite, last, inputs=(teacher,))  # --overwrite: the old run goes now the inputs are good
    out.mkdir(parents=True, exist_ok=True)

    run_file = out / "run.json"
    ids = json.loads(run_file.read_text()) if last and run_file.is_file() else {}
    parent = Tracker(EXPERIMENT, run_name=f"{m.name}-{Path(preset).stem}-{macs_target:g}",
                     tracking_uri=tracking_uri, enabled=track,
                     tags={"ganprune.command": "prune", "ganprune.method": m.name,
                           "ganprune.out_dir": str(out.resolve())})
    parent.start(run_id=ids.get("parent"))
    children = {}
    status = "FAILED"
    try:
        children = {a: Tracker(EXPERIMENT, run_name=a, tracking_uri=tracking_uri, parent_run_id=parent.run_id,
                               enabled=track, tags={"ganprune.agent": a}).start(run_id=ids.get(a))
                    for a in m.agents}
        write_json(run_file, {"parent": parent.run_id, **{a: c.run_id for a, c in children.items()},
                              "tracking_uri": parent.tracking_uri if track else None})
        common = {"method": m.name, "teacher": teacher, "preset": preset, "macs_target": macs_target,
                  "finetune_steps": finetune_steps, "seed": seed, "objective": objective, "vem": vem,
                  "process": process}
        parent.log_params(common)
        if parent.active:
            _say(quiet, f"{m.name}: MLflow run {parent.run_id}")
        request = SearchRequest(run=run, teacher=teacher, out=out, macs_target=macs_target, seed=seed,
                                search=settings, placement=placement, options=m.options(options),
                                finetune_steps=finetune_steps, finetune_backend=finetune_backend,
                                export_onnx=export_onnx, preset=pre, resume_from=last, quiet=quiet)
        ctx = SearchContext(log_params=parent.log_params, log_metrics=parent.log_metrics,
                            log_artifact=parent.log_artifact, log_artifacts=parent.log_artifacts,
                            say=lambda msg: _say(quiet, msg), agent_runs=children, write_json=write_json,
                            plot_history=plots.search_history)
        cpu0 = time.process_time()
        found = m.search(request, ctx)
        cost = found.cost()
        cost.setdefault("search_cpu_s", round(time.process_time() - cpu0, 2))
        if m.trains_itself:
            summary = _report_trained(found, run, out, parent)
        else:
            summary = _finish(found, run, teacher, out, parent, finetune_steps, finetune_backend, seed, quiet,
                              export_onnx, objective=objective, add=("vem",) if vem else (),
                              workers=finetune_workers, address=address, resume=last is not None)
        summary.update(common, **cost, total_s=round(time.perf_counter() - t_start, 1),
                       cpu_s=round(time.process_time() - cpu_start, 2), mlflow_run_id=parent.run_id)
        parent.log_metrics({k: v for k, v in cost.items()} | {"cpu_s": summary["cpu_s"]})
        write_json(out / "prune.json", summary)
        parent.log_artifact(out / "prune.json")
        status = "FINISHED"
        return summary
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        for c in children.values():
            c.end(status)
        parent.end(status)


def method_of(name: str | None):
    """The registered method ``name`` (``agents.methods.DEFAULT`` when None), as a one-line usage error
    when it is unknown."""
    from agents import methods

    try:
        return methods.get(name or methods.DEFAULT)
    except methods.UnknownMethodError as e:
        raise UsageError(str(e)) from None


def check_method(method: str, objective: str | None = None, vem: bool = False,
                 options: dict | None = None) -> str | None:
    """A method with its options, checked before any work (``benchmark`` checks every one first);
    returns the fine-tune objective it will use."""
    from agents.methods import MethodOptionError
    from gan.train.distill import OBJECTIVES

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
    from agents import methods

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


def _say(quiet: bool, msg: str) -> None:
    if not quiet:
        print(msg, flush=True)


def _finish(found, run, teacher: str, out: Path, parent, finetune_steps: int, finetune_backend: str,
            seed: int, quiet: bool, export_onnx: bool, objective: str = "density", add=(), workers: int = 0,
            address: str | None = None, resume: bool = False) -> dict:
    """best_spec.json → fine-tune (the method's objective; in ``workers`` Ray Train workers when > 0)
    → generator/ export → profile → MLflow.  ``resume``: a resumed run continues an unfinished
    fine-tune from its newest checkpoint (the best pair is the same: it comes from the search's)."""
    from gan.train import checkpoint as ckpt
    from orchestration.finetune import DEFAULT_BATCH, finetune

    spec = {k: v for k, v in found.spec.items() if v is not None}  # no D spec: D pruned to G's keep ratio
    write_json(out / "best_spec.json", {**spec, "best": found.best})
    parent.log_artifact(out / "best_spec.json")
    ft_dir = out / "finetune"
    resume = resume and ckpt.latest(ft_dir) is not None and not (ft_dir / "finetune.json").is_file()
    if ft_dir.exists() and not resume:
        shutil.rmtree(ft_dir)
    kw = dict(objective=objective, add=add, steps=finetune_steps, backend=finetune_backend, quiet=quiet, seed=seed,
              export_onnx=export_onnx, init_generator=found.init_generator,
              init_discriminator=found.init_discriminator, resume=resume,
              ckpt_every=max(1, finetune_steps // FINETUNE_CHECKPOINTS))
    if workers > 0:
        from orchestration.launch import per_world
        from orchestration.ray_finetune import finetune_on_ray

        ft = finetune_on_ray(workers, address=address, teacher_dir=teacher, spec_path=out / "best_spec.json",
                             out=ft_dir, batch_size=per_world(DEFAULT_BATCH, workers), **kw)
    else:
        ft = finetune(teacher, out / "best_spec.json", ft_dir, **kw)
    for member in ("generator", "discriminator"):
        if (out / member).exists():
            shutil.rmtree(out / member)
        shutil.copytree(ft_dir / member, out / member)
    return _report(found, run, teacher, out, parent, before=ft["before"], after=ft["after"],
                   finetune_s=ft["train_seconds"], generator_keep=ft["generator_spec"],
                   discriminator_keep=ft["discriminator_spec"])


def _report(found, run, teacher: str, out: Path, parent, *, before: dict, after: dict, finetune_s: float,
            generator_keep: dict, discriminator_keep: dict | None) -> dict:
    """Profile ``out/generator`` against the teacher's, log the final metrics and the model: the summary."""
    from gan import export as gexport

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
    """PSNR/SSIM vs the teacher on the report split (pix2pix), or on fixed (z, y) draws (conditional)."""
    import torch

    from gan import export as gexport
    from gan.metrics.image import psnr, ssim
    from orchestration.finetune import EVAL_ITEMS, _eval

    model, teacher = gexport.load(export).eval(), run.generator.eval()
    if run.meta.get("kind", "pix2pix") == "pix2pix":
        from gan import data as gdata

        root = gdata.resolve_dataset(run.data, size=run.size)
        from gan.data.splits import report_split

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
    from orchestration.report import print_table

    f, f0 = s["fidelity"], s["fidelity_before_finetune"]
    cols = ["model", "MACs", "params", "CPU ms", "PSNR vs teacher (dB)", "fid_proxy"]
    rows = [{"model": "teacher", "MACs": f"{s['teacher_macs'] / 1e6:.2f} M",
             "params": f"{s['teacher_params'] / 1e3:.1f} k", "CPU ms": f"{s['teacher_latency_ms']:.2f}",
             "PSNR vs teacher (dB)": "—", "fid_proxy": "—"},
            {"model": f"pruned ({s['method']} + fine-tune)",
             "MACs": f"{s['macs'] / 1e6:.2f} M ({s['macs_ratio']:.1%})", "params": f"{s['params'] / 1e3:.1f} k",
             "CPU ms": f"{s['latency_ms']:.2f} (×{s['teacher_latency_ms'] / s['latency_ms']:.2f})",
             "PSNR vs teacher (dB)": f"{f0.get('psnr_vs_teacher', float('nan')):.2f} → "
                                     f"{f.get('psnr_vs_teacher', float('nan')):.2f}",
             "fid_proxy": f"{f.get('fid_proxy', float('nan')):.3f}"}]
    print_table("teacher vs pruned", rows, cols)
