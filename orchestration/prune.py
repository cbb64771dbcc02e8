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
METHODS = ("marl", "marl-greedy", "random", "uniform", "l1", "cat", "gan-compression", "ppcd")
#: methods whose search is the two agents' (marl-greedy fine-tunes the final policies' deterministic pick
#: instead of the best pair seen: learning told apart from best-of-N selection)
MARL_METHODS = ("marl", "marl-greedy")
#: each method's own fine-tune objective (gan.train.distill.OBJECTIVES); --objective overrides it.
#: PPCD trains its masked student with its own objective (attention distillation) instead.
OBJECTIVE = {"marl": "density", "marl-greedy": "density", "random": "density", "uniform": "density", "l1": "density",
             "cat": "gka", "gan-compression": "distill", "ppcd": None}
REGISTERED_MODEL = "ganprune-generator"
#: the best pair's fine-tune checkpoints this many times (a kill then loses at most a tenth of it)
FINETUNE_CHECKPOINTS = 10


def _scalars(d: dict) -> dict:
    return {k: v for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _latest_search_checkpoint(out: Path):
    from agents.marl import checkpoints

    found = checkpoints(out)
    return found[-1] if found else None


@controlled_run
def prune(method: str = "marl", teacher: str | None = None, preset: str = "tiny", data: str | None = None,
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
    """Find a (G spec, D spec) pair with ``method``, fine-tune it with the method's objective (``OBJECTIVE``,
    or ``objective``; ``vem`` adds VEM's term), export, profile and log it.  ``marl`` searches with the
    two agents; ``uniform`` and ``l1`` are the simple baselines (one keep ratio everywhere; one global
    filter-L1 threshold), D pruned to G's keep ratio; ``cat`` is CAT's one-step |γ| threshold + GKA.
    ``options``: method-specific keyword arguments (e.g. GAN Compression's supernet steps).
    ``random``: random search over the marl action space with ``evaluations`` distinct candidates (default
    what marl scores at most at the same settings: iterations × (episodes + 1)).  ``search_from``: a marl
    run directory whose finished search (same problem and settings) marl/marl-greedy reuse.
    ``threads``: torch threads for this run (default ``gan.determinism.default_threads``); the run
    works under ``gan.determinism.controlled(seed)``: the same seed gives the same result whatever
    ran before in the process, and the process's settings are restored afterwards (``process`` is
    filled in with them)."""
    from gan.determinism import seed_all
    from gan.teacher_run import load_teacher_run
    from orchestration.config import load_preset
    from orchestration.rundir import claim_run_dir, clear_run_dir
    from orchestration.teacher_cache import ensure_teacher
    from orchestration.tracking import Tracker, check_reachable, resolve_tracking_uri

    objective = check_method(method, objective, vem, options)
    options = dict(options or {})
    t_start, cpu_start = time.perf_counter(), time.process_time()
    pre = load_preset(preset)
    iterations = pre.marl.iterations if iterations is None else int(iterations)
    episodes = pre.marl.episodes_per_iteration if episodes is None else int(episodes)
    backend_steps = pre.marl.backend_steps if backend_steps is None else int(backend_steps)
    finetune_steps = pre.marl.finetune_steps if finetune_steps is None else int(finetune_steps)
    for name, v in (("--iterations", iterations), ("--episodes", episodes)):
        if v < 1:
            raise UsageError(f"{name} must be ≥ 1, got {v}")
    if backend_workers < 0 or num_env_runners < 0:
        raise UsageError("--backend-workers and --num-env-runners must be ≥ 0")
    if method not in MARL_METHODS and (backend_workers or num_env_runners):
        raise UsageError(f"--backend-workers and --num-env-runners serve the marl search; drop them for "
                         f"--method {method}")
    if finetune_steps < 0 or backend_steps < 0:
        raise UsageError("--finetune-steps and --backend-steps must be ≥ 0")
    if not 0 <= beta <= 10:
        raise UsageError(f"--peer-beta must be in [0, 10], got {beta}")
    if track:
        check_reachable(resolve_tracking_uri(tracking_uri))
    if evaluations is not None and method != "random":
        raise UsageError(f"--evaluations sets random search's budget; use it with --method random, not {method}")
    if evaluations is not None and evaluations < 1:
        raise UsageError(f"--evaluations must be ≥ 1 (candidate pairs to score), got {evaluations}")
    if search_from and (method not in MARL_METHODS or not (Path(search_from) / "checkpoints").is_dir()):
        raise UsageError(f"--search-from {search_from}: give a marl run directory (with checkpoints/) to "
                         f"--method marl or marl-greedy")
    if method in MARL_METHODS and address:  # a dead --address fails now: Ray would retry it forever
        from agents.cluster import check_ray_address

        check_ray_address(address)
    out = Path(out)
    last = claim_run_dir(out, resume, overwrite, _latest_search_checkpoint, "pruning search")
    if last is not None:
        teacher = json.loads((last / "search_state.json").read_text())["problem"]["teacher"]
    teacher = str(Path(teacher).resolve()) if teacher else str(ensure_teacher(
        preset, data, quiet=quiet, tracking_uri=tracking_uri))
    seed_all(seed)  # the search starts from the seed, whatever the checks and teacher loading drew
    run = load_teacher_run(teacher, kinds=("pix2pix", "conditional") if method == "ppcd" else ("pix2pix",))
    if run.meta.get("kind", "pix2pix") == "pix2pix":  # an unreachable target fails before out/ is made
        from gan.pruning.targets import resolve_macs_target

        resolve_macs_target(run.generator, macs_target, run.size)
    clear_run_dir(out, overwrite, last, inputs=(teacher,))  # --overwrite: the old run goes now the inputs are good
    out.mkdir(parents=True, exist_ok=True)

    run_file = out / "run.json"
    ids = json.loads(run_file.read_text()) if last and run_file.is_file() else {}
    parent = Tracker(EXPERIMENT, run_name=f"{method}-{Path(preset).stem}-{macs_target:g}",
                     tracking_uri=tracking_uri, enabled=track,
                     tags={"ganprune.command": "prune", "ganprune.method": method,
                           "ganprune.out_dir": str(out.resolve())})
    parent.start(run_id=ids.get("parent"))
    children = {}
    status = "FAILED"
    try:
        if method in MARL_METHODS:
            from agents.marl import AGENTS

            children = {a: Tracker(EXPERIMENT, run_name=a, tracking_uri=tracking_uri, parent_run_id=parent.run_id,
                                   enabled=track, tags={"ganprune.agent": a}).start(run_id=ids.get(a))
                        for a in AGENTS}
        write_json(run_file, {"parent": parent.run_id, **{a: c.run_id for a, c in children.items()},
                              "tracking_uri": parent.tracking_uri if track else None})
        common = {"method": method, "teacher": teacher, "preset": preset, "macs_target": macs_target,
                  "finetune_steps": finetune_steps, "seed": seed, "objective": objective, "vem": vem,
                  "process": process}
        cpu0 = time.process_time()
        if method in MARL_METHODS:
            found = _search_marl(run, teacher, out, last, parent, children, common, iterations=iterations,
                                 episodes=episodes, backend_steps=backend_steps, beta=beta,
                                 num_env_runners=num_env_runners, address=address, seed=seed,
                                 cpus_per_env_runner=cpus_per_env_runner, gpus_per_learner=gpus_per_learner,
                                 backend_workers=backend_workers, cpus_per_backend_worker=cpus_per_backend_worker,
                                 gpus_per_env_runner=gpus_per_env_runner, gpus_per_backend_worker=gpus_per_backend_worker,
                                 peer_observation=peer_observation, prior=prior, quiet=quiet,
                                 eval_items=pre.marl.eval_items, pick="greedy" if method == "marl-greedy" else "best",
                                 search_from=search_from)
        elif method == "random":
            found = _search_random(teacher, parent, common, seed=seed, prior=prior, beta=beta, quiet=quiet,
                                   backend_steps=backend_steps, eval_items=pre.marl.eval_items,
                                   evaluations=evaluations or iterations * (episodes + 1))
        elif method == "ppcd":
            found = None
        elif method == "gan-compression":
            found = _search_gan_compression(run, out, parent, common, pre, finetune_backend, seed, quiet, options)
        elif method == "cat":
            from agents.baselines.cat import cat

            found = cat(run, macs_target, quiet=quiet, **options)
            parent.log_params({**common, "target_macs": found["target_macs"], "teacher_macs": found["teacher_macs"]})
        else:
            found = _search_simple(method, run, macs_target, parent, common, quiet)
        cost = {"search_evaluations": 0, "search_finetune_steps": 0, **(found or {}).get("cost", {})}
        cost.setdefault("search_cpu_s", round(time.process_time() - cpu0, 2))
        if method == "ppcd":
            summary = _train_ppcd(run, out, parent, common, finetune_steps, finetune_backend, seed, quiet,
                                  export_onnx, options)
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


def check_method(method: str, objective: str | None = None, vem: bool = False,
                 options: dict | None = None) -> str | None:
    """A method with its options, checked before any work (``benchmark`` checks every one first);
    returns the fine-tune objective it will use."""
    from gan.train.distill import OBJECTIVES

    if method not in METHODS:
        raise UsageError(f"unknown --method {method!r}; available: {', '.join(METHODS)}")
    objective = objective or OBJECTIVE[method]
    if method == "ppcd":
        if objective is not None or vem:
            raise UsageError("--method ppcd trains with its own attention-distillation objective; drop "
                             "--objective/--vem (or drop ppcd from --methods)")
    elif objective not in OBJECTIVES:
        raise UsageError(f"unknown --objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    _check_options(method, dict(options or {}))
    return objective


def _check_options(method: str, options: dict) -> None:
    """Method options must be settings the method has (one line naming the unknown key otherwise)."""
    import dataclasses
    import inspect

    if not options:
        return
    if method == "gan-compression":
        from agents.baselines.gan_compression import gan_compression

        known = [n for n, p in inspect.signature(gan_compression).parameters.items()
                 if p.kind == p.KEYWORD_ONLY and n not in ("seed", "backend", "quiet")]
    elif method == "ppcd":
        from agents.baselines.ppcd import PPCDConfig

        known = [f.name for f in dataclasses.fields(PPCDConfig)]
    else:
        known = []
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise UsageError(f"unknown --method-option {unknown[0]!r} for --method {method}; "
                         + (f"known: {', '.join(known)}" if known else "this method takes none"))


def _say(quiet: bool, msg: str) -> None:
    if not quiet:
        print(msg, flush=True)


def _search_simple(method: str, run, macs_target: float, parent, common: dict, quiet: bool) -> dict:
    """uniform: one keep ratio for every group; l1: one global threshold on mean filter |w|."""
    from gan.pruning.targets import global_threshold_spec, resolve_macs_target, spec_macs, uniform_spec

    g, size = run.generator, run.size
    t0 = time.perf_counter()
    target = resolve_macs_target(g, macs_target, size)
    if method == "uniform":
        spec, knob = uniform_spec(g, target, size, criterion="l1")
    else:
        spec, knob = global_threshold_spec(g, target, size, criterion="l1")
    full = spec_macs(g, {}, size)
    parent.log_params({**common, "target_macs": target, "teacher_macs": full})
    _say(quiet, f"{method}: generator target {target / 1e6:.2f} M MACs ({target / full:.1%} of {full / 1e6:.2f} M)")
    return {"spec": {"generator": spec}, "search_s": time.perf_counter() - t0, "target_macs": target,
            "teacher_macs": full, "extra": {"keep_ratio" if method == "uniform" else "threshold": knob}}


def _search_gan_compression(run, out: Path, parent, common: dict, pre, backend: str, seed: int, quiet: bool,
                            options: dict) -> dict:
    """Train the once-for-all supernet (distillation from the teacher), evolve a config under the
    budget; the fine-tune then starts from the supernet's weights (``init_generator``) with the
    teacher's D as trained along (``init_discriminator``, not pruned, as GAN Compression)."""
    from agents.baselines.gan_compression import gan_compression

    gc = pre.gan_compression
    kw = {"supernet_steps": gc.supernet_steps, "population": gc.population, "generations": gc.generations,
          "eval_items": pre.marl.eval_items, **options}
    found = gan_compression(run, common["macs_target"], out, seed=seed, backend=backend, quiet=quiet, **kw)
    found["spec"] = {"generator": found["spec"]["generator"], "discriminator": {}}
    found["search_s"] = found["search_s"] + found["supernet_s"]  # the supernet is part of the search cost
    found["cost"] = {"search_evaluations": found["extra"]["evaluated"],
                     "search_finetune_steps": found["extra"]["supernet_steps"]}
    parent.log_params({**common, "target_macs": found["target_macs"], "teacher_macs": found["teacher_macs"],
                       "gan_compression": kw})
    for i, h in enumerate(found.get("history", [])):
        if isinstance(h, dict) and isinstance(h.get("best_score"), (int, float)):
            parent.log_metrics({"evolution_best_score": h["best_score"]}, step=i)
    return found


def search_problem(teacher: str, macs_target: float, seed: int, prior: str, backend_steps: int, eval_items: int):
    """The problem marl and random search share: same teacher, target, prior, backend and items."""
    from envs.problem import ProblemConfig

    return ProblemConfig(teacher=teacher, macs_target=macs_target, seed=seed, prior=prior,
                         backend_config={"finetune_steps": backend_steps, "eval_items": eval_items})


def _search_marl(run, teacher, out, last, parent, children, common, *, iterations, episodes, backend_steps,
                 beta, num_env_runners, address, seed, peer_observation, prior, quiet, eval_items,
                 cpus_per_env_runner=1, gpus_per_learner=0.0, backend_workers=0, cpus_per_backend_worker=1,
                 gpus_per_env_runner=0.0, gpus_per_backend_worker=0.0, pick="best", search_from=None) -> dict:
    """The two agents' search (or, with ``search_from``, the finished one of that marl run when its
    problem and settings are these); ``pick``: "best" pair seen or the final policies' "greedy" pick."""
    from agents.marl import MarlConfig, MarlSearch
    from orchestration import plots

    problem = search_problem(teacher, common["macs_target"], seed, prior, backend_steps, eval_items)
    cfg = MarlConfig(iterations=iterations, beta=beta, episodes_per_iteration=episodes,
                     num_env_runners=num_env_runners, address=address, seed=seed,
                     num_cpus_per_env_runner=cpus_per_env_runner, num_gpus_per_learner=gpus_per_learner,
                     backend_workers=backend_workers, num_cpus_per_backend_worker=cpus_per_backend_worker,
                     num_gpus_per_env_runner=gpus_per_env_runner, num_gpus_per_backend_worker=gpus_per_backend_worker,
                     peer_observation=peer_observation)
    if search_from and last is None:
        reused = _reuse_search(Path(search_from), problem, cfg, parent, common, pick)
        if reused is not None:
            _say(quiet, f"reusing the finished marl search of {search_from} (same problem and settings)")
            return reused
    search = MarlSearch(problem.to_dict(), cfg, out, quiet=quiet)

    def log_iteration(s: dict) -> None:
        it = s["iteration"]
        scalars = _scalars(s)
        parent.log_metrics({k: v for k, v in scalars.items() if not any(k.startswith(a + "_") for a in children)
                            or k.endswith(("_return", "_own"))}, step=it)
        for a, c in children.items():
            c.log_metrics({k[len(a) + 1:]: v for k, v in scalars.items() if k.startswith(a + "_")}, step=it)
            c.log_metrics({f"keep.{g}": r for g, r in s[f"{a}_mean_ratios"].items()}, step=it)
            c.log_metrics({f"greedy_keep.{g}": r for g, r in s[f"{a}_greedy_ratios"].items()}, step=it)

    def write_history() -> None:
        """history.json and the plots, written after MLflow has the iteration (see ``_relog``)."""
        write_json(out / "history.json", search.history)
        plots.keep_ratios(search.history, out / "keep_ratios.png")
        plots.gd_balance(search.history, out / "gd_balance.png")

    def on_iteration(s: dict) -> None:
        log_iteration(s)
        write_history()

    search.on_iteration = on_iteration
    try:
        search.setup(resume=last is not None)
        if last is not None and _relog(search.history, out / "history.json", log_iteration):
            write_history()
        problem_obj = search.driver_env.problem
        g_task = problem_obj.generator
        parent.log_params({**common, "target_macs": g_task.target_macs, "teacher_macs": g_task.full_macs,
                           "marl": cfg.to_dict(), "problem": problem.to_dict()})
        for a, c in children.items():
            c.log_params({"agent": a, "beta": beta, "groups": ",".join(getattr(problem_obj, a).names)})
        _say(quiet, f"MARL search: {iterations} iterations × {episodes} episodes, β = {beta}, generator target "
             f"{g_task.target_macs / 1e6:.2f} M MACs ({g_task.target_macs / g_task.full_macs:.1%} of "
             f"{g_task.full_macs / 1e6:.2f} M)" + (f", resuming after iteration {search.iteration}" if last else "")
             + (f"; MLflow run {parent.run_id}" if parent.active else ""))
        t0 = time.perf_counter()
        result = search.run()
        search_s = time.perf_counter() - t0
        best = result["best"]
        _say(quiet, f"best pair (iteration {best['iteration']}): generator {best['generator_macs_ratio']:.1%} of "
             f"the teacher's MACs; backend score PSNR vs teacher "
             f"{best['scores']['metrics']['psnr_vs_teacher']:.2f} dB")
        for f in ("history.json", "keep_ratios.png", "gd_balance.png"):
            if (out / f).is_file():
                parent.log_artifact(out / f)
        last_ckpt = _latest_search_checkpoint(out)
        if last_ckpt is not None:
            parent.log_artifacts(last_ckpt, f"policies/{last_ckpt.name}")
        found = _marl_found(result, problem_obj, pick, search_s, beta)
        found["backend"] = {"name": problem_obj.backend.name,
                            "episodes": sum(h["episodes"] for h in result["history"]),
                            "episode_seconds": round(sum(h["backend_s"] for h in result["history"]), 2),
                            "episode_cache_hits": sum(h["backend_cached"] for h in result["history"]),
                            "greedy_replays": problem_obj.backend.stats()}
        return found
    finally:
        search.close()


def _marl_found(result: dict, problem, pick: str, search_s: float, beta: float) -> dict:
    """A finished marl search's pick as ``prune``'s ``found`` (spec, scores, cost)."""
    chosen = result[pick]
    g_task, d_task = problem.generator, problem.discriminator
    steps = int(problem.config.backend_config.get("finetune_steps", 0))
    return {"spec": {"generator": g_task.spec(chosen["generator_counts"]),
                     "discriminator": d_task.spec(chosen["discriminator_counts"])},
            "best": chosen, "search_s": search_s, "target_macs": g_task.target_macs, "teacher_macs": g_task.full_macs,
            "cost": {"search_evaluations": result["evaluations"],
                     "search_finetune_steps": steps * result["evaluations"],
                     "search_cpu_s": round(result["cpu_s"], 2)},
            "extra": {"iterations": result["iterations"], "beta": beta, "pick": pick,
                      "best_iteration": chosen["iteration"]}}


#: MarlConfig fields that place the search on a cluster without changing what it finds
PLACEMENT = ("num_env_runners", "num_cpus_per_env_runner", "num_gpus_per_env_runner", "backend_workers",
             "num_cpus_per_backend_worker", "num_gpus_per_backend_worker", "num_gpus_per_learner", "address")


def _reuse_search(src: Path, problem, cfg, parent, common: dict, pick: str) -> dict | None:
    """The finished search state of the marl run ``src`` when it searched this problem with these
    settings (placement aside), as ``found``; None otherwise (the caller searches itself)."""
    from agents.marl import checkpoints
    from envs.problem import build_problem

    found = checkpoints(src)
    if not found:
        return None
    state = json.loads((found[-1] / "search_state.json").read_text())
    mine, theirs = cfg.to_dict(), state["config"]
    same_cfg = all(mine.get(k) == theirs.get(k) for k in set(mine) | set(theirs) if k not in PLACEMENT)
    problem_d = {k: v for k, v in problem.to_dict().items() if k not in ("backend_workers", "backend_pool")}
    same_problem = problem_d == {k: v for k, v in state["problem"].items() if k in problem_d}
    if not (same_cfg and same_problem and state["iteration"] >= cfg.iterations and state.get("greedy")):
        return None
    result = {**state, "iterations": state["iteration"], "evaluations": len(state.get("scored", []))}
    out = _marl_found(result, build_problem(problem), pick, sum(h["train_s"] for h in state["history"]), cfg.beta)
    out["extra"]["search_from"] = str(src)
    parent.log_params({**common, "target_macs": out["target_macs"], "teacher_macs": out["teacher_macs"],
                       "marl": cfg.to_dict(), "problem": problem.to_dict(), "search_from": str(src)})
    return out


def _search_random(teacher: str, parent, common: dict, *, seed: int, prior: str, beta: float, quiet: bool,
                   backend_steps: int, eval_items: int, evaluations: int) -> dict:
    """Random search (``agents.baselines.random_search``) on marl's problem: same env, backend, items,
    pick rule; ``evaluations`` distinct candidates.  MLflow: the best own score after each."""
    from agents.baselines.random_search import random_search

    problem = search_problem(teacher, common["macs_target"], seed, prior, backend_steps, eval_items)

    def log(i: int, rec: dict, best: dict) -> None:
        parent.log_metrics({"generator_own": rec["own"]["generator"], "best_generator_own": best["own"]["generator"],
                            "psnr_vs_teacher": rec["scores"]["metrics"].get("psnr_vs_teacher", float("nan"))}, step=i)

    res = random_search(problem.to_dict(), evaluations, seed=seed, beta=beta, on_evaluation=log, quiet=quiet)
    g_task, d_task = res["env"].problem.generator, res["env"].problem.discriminator
    parent.log_params({**common, "target_macs": g_task.target_macs, "teacher_macs": g_task.full_macs,
                       "problem": problem.to_dict(), "evaluations": evaluations, "beta": beta})
    best = res["best"]
    _say(quiet, f"random search: {res['evaluations']} candidates, best at evaluation {best['evaluation']}: backend "
         f"score PSNR vs teacher {best['scores']['metrics'].get('psnr_vs_teacher', float('nan')):.2f} dB")
    return {"spec": {"generator": g_task.spec(best["generator_counts"]),
                     "discriminator": d_task.spec(best["discriminator_counts"])},
            "best": best, "search_s": res["search_s"], "target_macs": g_task.target_macs,
            "teacher_macs": g_task.full_macs,
            "cost": {"search_evaluations": res["evaluations"],
                     "search_finetune_steps": backend_steps * res["evaluations"],
                     "search_cpu_s": round(res["cpu_s"], 2)},
            "extra": {"evaluations_requested": evaluations, "best_evaluation": best["evaluation"]}}


def _relog(history: list[dict], written: Path, log_iteration) -> int:
    """After a kill between a checkpoint and its MLflow logging, log the iterations the checkpoint
    holds but ``history.json`` (written after MLflow) does not; returns how many."""
    done = {h["iteration"] for h in json.loads(written.read_text())} if written.is_file() else set()
    missing = [h for h in history if h["iteration"] not in done]
    for h in missing:
        log_iteration(h)
    return len(missing)


def _finish(found: dict, run, teacher: str, out: Path, parent, finetune_steps: int, finetune_backend: str,
            seed: int, quiet: bool, export_onnx: bool, objective: str = "density", add=(), workers: int = 0,
            address: str | None = None, resume: bool = False) -> dict:
    """best_spec.json → fine-tune (the method's objective; in ``workers`` Ray Train workers when > 0)
    → generator/ export → profile → MLflow.  ``resume``: a resumed run continues an unfinished
    fine-tune from its newest checkpoint (the best pair is the same: it comes from the search's)."""
    from gan.train import checkpoint as ckpt
    from orchestration.finetune import DEFAULT_BATCH, finetune

    spec = found["spec"]
    write_json(out / "best_spec.json", {**spec, "best": found.get("best")})
    parent.log_artifact(out / "best_spec.json")
    ft_dir = out / "finetune"
    resume = resume and ckpt.latest(ft_dir) is not None and not (ft_dir / "finetune.json").is_file()
    if ft_dir.exists() and not resume:
        shutil.rmtree(ft_dir)
    kw = dict(objective=objective, add=add, steps=finetune_steps, backend=finetune_backend, quiet=quiet, seed=seed,
              export_onnx=export_onnx, init_generator=found.get("init_generator"),
              init_discriminator=found.get("init_discriminator"), resume=resume,
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


def _report(found: dict, run, teacher: str, out: Path, parent, *, before: dict, after: dict, finetune_s: float,
            generator_keep: dict, discriminator_keep: dict | None) -> dict:
    """Profile ``out/generator`` against the teacher's, log the final metrics and the model: the summary."""
    from gan import export as gexport

    prof_t = gexport.profile_export(Path(teacher) / run.meta["generator"], size=run.size, runs=20)
    prof_p = gexport.profile_export(out / "generator", size=run.size, runs=20)
    summary = {
        "out": str(out), "size": run.size, "target_macs": found["target_macs"],
        "teacher_macs": found["teacher_macs"], "macs": prof_p["macs"], "macs_ratio": prof_p["macs"] / prof_t["macs"],
        "params": prof_p["params"], "teacher_params": prof_t["params"],
        "latency_ms": prof_p["torch_latency"]["median_ms"], "teacher_latency_ms": prof_t["torch_latency"]["median_ms"],
        "fidelity_before_finetune": before, "fidelity": after,
        "search_s": round(found["search_s"], 2), "finetune_s": round(finetune_s, 1),
        "backend": found.get("backend"), **found.get("extra", {}),
        "generator_keep": generator_keep, "discriminator_keep": discriminator_keep,
        "profile": {"teacher": prof_t, "pruned": prof_p},
    }
    parent.log_metrics({"final_macs": summary["macs"], "final_macs_ratio": summary["macs_ratio"],
                        "final_params": summary["params"], "final_latency_ms": summary["latency_ms"],
                        "teacher_latency_ms": summary["teacher_latency_ms"], "search_s": found["search_s"],
                        "finetune_s": finetune_s, **{f"final_{k}": v for k, v in after.items()}})
    if (out / "generator" / "samples.png").is_file():
        parent.log_artifact(out / "generator" / "samples.png", "samples")
    parent.log_artifacts(out / "generator", "generator")
    _log_model(parent, out / "generator")
    return summary


def _train_ppcd(run, out: Path, parent, common: dict, finetune_steps: int, finetune_backend: str, seed: int,
                quiet: bool, export_onnx: bool, options: dict) -> dict:
    """PPCD has no separate search: its masked student trains for the fine-tune budget while the masks
    shrink it to the target, then the dense export (masks dropped) is the result."""
    from agents.baselines.ppcd import PPCDConfig, ppcd

    train_dir = out / "ppcd"
    if train_dir.exists():
        shutil.rmtree(train_dir)
    cfg = PPCDConfig(**{"onnx": export_onnx, **options})
    res = ppcd(run, common["macs_target"], train_dir, steps=finetune_steps, seed=seed, backend=finetune_backend,
               quiet=quiet, config=cfg)
    parent.log_params({**common, "target_macs": res["target_macs"], "teacher_macs": res["full_macs"],
                       "ppcd": res["config"]})
    for rec in res.get("sparsity_history", []):  # the progressive schedule, for the MLflow curve
        parent.log_metrics({k: rec[k] for k in ("sparsity", "target_sparsity", "macs")}, step=rec["step"])
    if (out / "generator").exists():
        shutil.rmtree(out / "generator")
    shutil.copytree(train_dir / "generator", out / "generator")
    after = _fidelity_vs_teacher(run, out / "generator")
    found = {"search_s": 0.0, "target_macs": res["target_macs"], "teacher_macs": res["full_macs"],
             "extra": {"final_sparsity": res["final_sparsity"], "kind": res["kind"]}}
    return _report(found, run, str(run.dir), out, parent, before={}, after=after, finetune_s=res["train_s"],
                   generator_keep={k: len(v) for k, v in res["spec"].items()}, discriminator_keep=None)


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
