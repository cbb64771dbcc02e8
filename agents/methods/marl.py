"""The two agents' search (docs/methods.md, "MARL search"): ``marl`` fine-tunes the best pair seen,
``marl-greedy`` the final policies' deterministic pick of the same search (learning told apart from
best-of-N selection).  A finished search of another run with the same problem and settings is reused
(``search_from``)."""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from agents.methods.base import Found, Method, SearchContext, SearchRequest
from agents.methods.search_backend import BackendSetup, charge, prepare_backend

#: MarlConfig fields that place the search on a cluster without changing what it finds
PLACEMENT = ("num_env_runners", "num_cpus_per_env_runner", "num_gpus_per_env_runner", "backend_workers",
             "num_cpus_per_backend_worker", "num_gpus_per_backend_worker", "num_gpus_per_learner", "address")


def search_problem(request: SearchRequest, backend: BackendSetup):
    """The problem marl and random search share: same teacher, target, prior, backend and items;
    ``backend``: ``search_backend.prepare_backend``'s."""
    from envs.problem import ProblemConfig

    latency = asdict(request.latency_target) if request.latency_target is not None else {}
    return ProblemConfig(teacher=request.teacher, macs_target=request.macs_target, seed=request.seed,
                         prior=request.search.prior, backend=backend.name, backend_config=backend.config,
                         latency=latency, multiple=request.align)


def marl_config(request: SearchRequest):
    from agents.marl import MarlConfig

    s, p = request.search, request.placement
    return MarlConfig(iterations=s.iterations, beta=s.beta, episodes_per_iteration=s.episodes,
                      num_env_runners=p.num_env_runners, address=p.address, seed=request.seed,
                      num_cpus_per_env_runner=p.cpus_per_env_runner, num_gpus_per_learner=p.gpus_per_learner,
                      backend_workers=p.backend_workers, num_cpus_per_backend_worker=p.cpus_per_backend_worker,
                      num_gpus_per_env_runner=p.gpus_per_env_runner,
                      num_gpus_per_backend_worker=p.gpus_per_backend_worker, peer_observation=s.peer_observation)


def _scalars(d: dict) -> dict:
    return {k: v for k, v in d.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _found(result: dict, problem, pick: str, search_s: float, beta: float) -> Found:
    """A finished marl search's pick (spec, scores, cost)."""
    chosen = result[pick]
    g_task, d_task = problem.generator, problem.discriminator
    steps = int(problem.config.backend_config.get("finetune_steps", 0))
    return Found(generator=g_task.spec(chosen["generator_counts"]),
                 discriminator=d_task.spec(chosen["discriminator_counts"]), best=chosen, search_s=search_s,
                 target_macs=g_task.target_macs, teacher_macs=g_task.full_macs,
                 search_evaluations=result["evaluations"], search_finetune_steps=steps * result["evaluations"],
                 search_cpu_s=round(result["cpu_s"], 2),
                 extra={"iterations": result["iterations"], "beta": beta, "pick": pick,
                        "best_iteration": chosen["iteration"]})


def _reuse(src: Path, problem, cfg, pick: str) -> Found | None:
    """The finished search state of the marl run ``src`` when it searched this problem with these
    settings (placement aside); None otherwise (the caller searches itself)."""
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
    out = _found(result, build_problem(problem), pick, sum(h["train_s"] for h in state["history"]), cfg.beta)
    out.extra["search_from"] = str(src)
    return out


def relog(history: list[dict], written: Path, log_iteration) -> int:
    """After a kill between a checkpoint and its MLflow logging, log the iterations the checkpoint
    holds but ``history.json`` (written after MLflow) does not; returns how many."""
    done = {h["iteration"] for h in json.loads(written.read_text())} if written.is_file() else set()
    missing = [h for h in history if h["iteration"] not in done]
    for h in missing:
        log_iteration(h)
    return len(missing)


class Marl(Method):
    name = "marl"
    latency_budget = True
    pick = "best"
    uses_search_settings = True
    uses_search_placement = True
    own_settings = ("search_from",)

    @property
    def agents(self) -> tuple[str, ...]:  # type: ignore[override]
        from envs.multi_agent import AGENTS

        return tuple(AGENTS)

    def search(self, request: SearchRequest, ctx: SearchContext) -> Found:
        from agents.marl import MarlSearch, checkpoints

        out, s = request.out, request.search
        setup = prepare_backend(request, ctx)
        problem, cfg = search_problem(request, setup), marl_config(request)
        resumed = request.resume_from is not None
        if s.search_from and not resumed:
            reused = _reuse(Path(s.search_from), problem, cfg, self.pick)
            if reused is not None:
                ctx.log_params({"target_macs": reused.target_macs, "teacher_macs": reused.teacher_macs,
                                "marl": cfg.to_dict(), "problem": problem.to_dict(), "search_from": s.search_from})
                ctx.say(f"reusing the finished marl search of {s.search_from} (same problem and settings)")
                return charge(reused, setup)
        search = MarlSearch(problem.to_dict(), cfg, out, quiet=request.quiet)
        runs = ctx.agent_runs

        def log_iteration(h: dict) -> None:
            it, scalars = h["iteration"], _scalars(h)
            ctx.log_metrics({k: v for k, v in scalars.items() if not any(k.startswith(a + "_") for a in runs)
                             or k.endswith(("_return", "_own"))}, step=it)
            for a, r in runs.items():
                r.log_metrics({k[len(a) + 1:]: v for k, v in scalars.items() if k.startswith(a + "_")}, step=it)
                r.log_metrics({f"keep.{g}": v for g, v in h[f"{a}_mean_ratios"].items()}, step=it)
                r.log_metrics({f"greedy_keep.{g}": v for g, v in h[f"{a}_greedy_ratios"].items()}, step=it)

        def write_history() -> None:
            """history.json and the plots, written after MLflow has the iteration (see ``relog``)."""
            ctx.write_json(out / "history.json", search.history)
            ctx.plot_history(search.history, out)

        def on_iteration(h: dict) -> None:
            log_iteration(h)
            write_history()

        search.on_iteration = on_iteration
        try:
            search.setup(resume=resumed)
            if resumed and relog(search.history, out / "history.json", log_iteration):
                write_history()
            problem_obj = search.driver_env.problem
            g_task = problem_obj.generator
            ctx.log_params({"target_macs": g_task.target_macs, "teacher_macs": g_task.full_macs,
                            "marl": cfg.to_dict(), "problem": problem.to_dict()})
            for a, r in runs.items():
                r.log_params({"agent": a, "beta": s.beta, "groups": ",".join(getattr(problem_obj, a).names)})
            ctx.say(f"MARL search: {s.iterations} iterations × {s.episodes} episodes, β = {s.beta}, generator "
                    f"target {g_task.target_macs / 1e6:.2f} M MACs ({g_task.target_macs / g_task.full_macs:.1%} of "
                    f"{g_task.full_macs / 1e6:.2f} M)"
                    + (f", resuming after iteration {search.iteration}" if resumed else ""))
            t0 = time.perf_counter()
            result = search.run()
            search_s = time.perf_counter() - t0
            best = result["best"]
            ctx.say(f"best pair (iteration {best['iteration']}): generator {best['generator_macs_ratio']:.1%} of "
                    f"the teacher's MACs; backend score PSNR vs teacher "
                    f"{best['scores']['metrics']['psnr_vs_teacher']:.2f} dB")
            for f in ("history.json", "keep_ratios.png", "gd_balance.png"):
                if (out / f).is_file():
                    ctx.log_artifact(out / f)
            ckpts = checkpoints(out)
            if ckpts:
                ctx.log_artifacts(ckpts[-1], f"policies/{ckpts[-1].name}")
            found = _found(result, problem_obj, self.pick, search_s, s.beta)
            episodes = sum(h["episodes"] for h in result["history"])
            found.backend = {"name": problem_obj.backend.name, "episodes": episodes,
                             "episode_seconds": round(sum(h["backend_s"] for h in result["history"]), 2),
                             "episode_cache_hits": sum(h["backend_cached"] for h in result["history"]),
                             "greedy_replays": problem_obj.backend.stats()}
            train_s = sum(h["train_s"] for h in result["history"])
            found.backend["episodes_per_s"] = round(episodes / train_s, 3) if train_s > 0 else None
            if train_s > 0:
                ctx.log_metrics({"search_episodes_per_s": episodes / train_s})
            return charge(found, setup)
        finally:
            search.close()


class MarlGreedy(Marl):
    name = "marl-greedy"
    pick = "greedy"


