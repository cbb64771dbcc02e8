"""Random search and evolution on marl's problem: the controls every learned search must beat at the same
number of evaluations (docs/methods.md, "Evaluation protocol")."""
from __future__ import annotations

from dataclasses import dataclass

from agents.methods.base import Found, Method, MethodOptionError, SearchContext, SearchRequest
from agents.methods.marl import search_problem
from agents.methods.search_backend import charge, prepare_backend


class RandomSearch(Method):
    name = "random"
    latency_budget = True
    uses_search_settings = True
    own_settings = ("evaluations",)

    def run_search(self, problem: dict, evaluations: int, request: SearchRequest, log) -> dict:
        """The search proper: ``random_search.random_search``'s result for ``evaluations`` candidates."""
        from agents.baselines.random_search import random_search

        return random_search(problem, evaluations, seed=request.seed, beta=request.search.beta, on_evaluation=log,
                             quiet=request.quiet)

    def search(self, request: SearchRequest, ctx: SearchContext) -> Found:
        """``evaluations`` distinct candidates (default what marl scores at most at the same settings:
        iterations × (episodes + 1)); same env, backend, items and pick rule as marl."""
        s = request.search
        evaluations = s.evaluations or s.iterations * (s.episodes + 1)
        setup = prepare_backend(request, ctx)
        problem = search_problem(request, setup)

        def log(i: int, rec: dict, best: dict) -> None:
            ctx.log_metrics({"generator_own": rec["own"]["generator"], "best_generator_own": best["own"]["generator"],
                             "psnr_vs_teacher": rec["scores"]["metrics"].get("psnr_vs_teacher", float("nan"))}, step=i)

        res = self.run_search(problem.to_dict(), evaluations, request, log)
        g_task, d_task = res["env"].problem.generator, res["env"].problem.discriminator
        ctx.log_params({"target_macs": g_task.target_macs, "teacher_macs": g_task.full_macs,
                        "problem": problem.to_dict(), "evaluations": evaluations, "beta": s.beta,
                        **{f"{self.name}_{k}": v for k, v in vars(request.options).items()}})
        best = res["best"]
        rate = round(res["episodes"] / res["search_s"], 3) if res["search_s"] > 0 else None
        if rate is not None:
            ctx.log_metrics({"search_episodes_per_s": rate})
        ctx.say(f"{self.name} search: {res['evaluations']} candidates, best at evaluation {best['evaluation']}: backend "
                f"score PSNR vs teacher {best['scores']['metrics'].get('psnr_vs_teacher', float('nan')):.2f} dB")
        extra = {"evaluations_requested": evaluations, "best_evaluation": best["evaluation"]}
        if "generations" in res:
            extra["generations"] = res["generations"]
        found = Found(generator=g_task.spec(best["generator_counts"]), discriminator=d_task.spec(best["discriminator_counts"]),
                      target_macs=g_task.target_macs, teacher_macs=g_task.full_macs, best=best,
                      search_s=res["search_s"], search_evaluations=res["evaluations"],
                      search_finetune_steps=s.backend_steps * res["evaluations"], search_cpu_s=round(res["cpu_s"], 2),
                      extra=extra, backend={"name": setup.name, "episodes": res["episodes"], "episodes_per_s": rate,
                                            "stats": res["env"].problem.backend.stats()})
        return charge(found, setup)


@dataclass(frozen=True)
class EvolutionOptions:
    """GAN Compression's evolution settings (docs/methods.md, "Evaluation protocol": evolution)."""

    population: int = 16       # per generation (GAN Compression: 100 on its 500-generation budget)
    levels: int = 9            # action values per decision, evenly spaced in [0, 1]
    mutate_prob: float = 0.3   # GAN Compression's pix2pix setting

    def __post_init__(self):  # checked with the other options, before any work
        if not (isinstance(self.population, int) and self.population >= 2 and isinstance(self.levels, int)
                and self.levels >= 2 and isinstance(self.mutate_prob, (int, float)) and 0 <= self.mutate_prob <= 1):
            raise MethodOptionError(f"--method evolution needs whole numbers population ≥ 2 and levels ≥ 2 and "
                                    f"mutate_prob in [0, 1]; got population={self.population!r}, "
                                    f"levels={self.levels!r}, mutate_prob={self.mutate_prob!r}")


class EvolutionSearch(RandomSearch):
    """GAN Compression's evolution on marl's env, backend and budget (``agents.baselines.env_evolution``)."""

    name = "evolution"
    latency_budget = True
    Options = EvolutionOptions

    def run_search(self, problem: dict, evaluations: int, request: SearchRequest, log) -> dict:
        from agents.baselines.env_evolution import evolution_env_search

        o = request.options
        return evolution_env_search(problem, evaluations, seed=request.seed, beta=request.search.beta,
                                    population=o.population, levels=o.levels, mutate_prob=o.mutate_prob,
                                    on_evaluation=log, quiet=request.quiet)
