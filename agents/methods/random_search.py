"""Random search on marl's problem: the control every learned search must beat at the same number of
evaluations (docs/methods.md, "Evaluation protocol")."""
from __future__ import annotations

from agents.methods.base import Found, Method, SearchContext, SearchRequest
from agents.methods.marl import search_problem
from agents.methods.search_backend import charge, prepare_backend


class RandomSearch(Method):
    name = "random"
    uses_search_settings = True
    own_settings = ("evaluations",)

    def search(self, request: SearchRequest, ctx: SearchContext) -> Found:
        """``evaluations`` distinct candidates (default what marl scores at most at the same settings:
        iterations × (episodes + 1)); same env, backend, items and pick rule as marl."""
        from agents.baselines.random_search import random_search

        s = request.search
        evaluations = s.evaluations or s.iterations * (s.episodes + 1)
        setup = prepare_backend(request, ctx)
        problem = search_problem(request, setup)

        def log(i: int, rec: dict, best: dict) -> None:
            ctx.log_metrics({"generator_own": rec["own"]["generator"], "best_generator_own": best["own"]["generator"],
                             "psnr_vs_teacher": rec["scores"]["metrics"].get("psnr_vs_teacher", float("nan"))}, step=i)

        res = random_search(problem.to_dict(), evaluations, seed=request.seed, beta=s.beta, on_evaluation=log,
                            quiet=request.quiet)
        g_task, d_task = res["env"].problem.generator, res["env"].problem.discriminator
        ctx.log_params({"target_macs": g_task.target_macs, "teacher_macs": g_task.full_macs,
                        "problem": problem.to_dict(), "evaluations": evaluations, "beta": s.beta})
        best = res["best"]
        rate = round(res["episodes"] / res["search_s"], 3) if res["search_s"] > 0 else None
        if rate is not None:
            ctx.log_metrics({"search_episodes_per_s": rate})
        ctx.say(f"random search: {res['evaluations']} candidates, best at evaluation {best['evaluation']}: backend "
                f"score PSNR vs teacher {best['scores']['metrics'].get('psnr_vs_teacher', float('nan')):.2f} dB")
        found = Found(generator=g_task.spec(best["generator_counts"]), discriminator=d_task.spec(best["discriminator_counts"]),
                      target_macs=g_task.target_macs, teacher_macs=g_task.full_macs, best=best,
                      search_s=res["search_s"], search_evaluations=res["evaluations"],
                      search_finetune_steps=s.backend_steps * res["evaluations"], search_cpu_s=round(res["cpu_s"], 2),
                      extra={"evaluations_requested": evaluations, "best_evaluation": best["evaluation"]},
                      backend={"name": setup.name, "episodes": res["episodes"], "episodes_per_s": rate,
                               "stats": res["env"].problem.backend.stats()})
        return charge(found, setup)
