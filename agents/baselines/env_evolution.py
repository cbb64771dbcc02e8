"""GAN Compression's evolutionary search run on the marl environment: the third search beside MARL and
random search at the same budget (issue #15; docs/methods.md, "Evaluation protocol").

Same env (``envs.multi_agent.MultiAgentPruningEnv``: action space, L1 action prior, AMC clip, budget
fill), backend, search items, pick rule (``agents.marl.better``) and budget (distinct candidate pairs)
as MARL and random search.  A config is one action per decision (the generator's groups, then the
discriminator's), each one of ``levels`` evenly spaced values in [0, 1] (odd ``levels`` include 0.5,
the L1 prior's allocation), evolved by ``agents.baselines.evolution.evolution_search``: GAN
Compression's mutation and crossover, the best quarter carried over.  Fitness = −(generator own score).
Every config is within the MACs budget by construction (the env's clip and fill), so the evolution's
own budget check passes them all.  A config whose candidate pair was already scored (two configs can
round to the same counts) costs nothing and does not count.
"""
from __future__ import annotations

import math
import time
from typing import Callable

from agents.baselines.evolution import EvolutionConfig, evolution_search
from agents.marl import better, candidate_key, run_episode
from envs.episode import GroupEpisode
from envs.multi_agent import AGENTS, MultiAgentPruningEnv
from gan.progress import progress


def _pair_key(env: MultiAgentPruningEnv, actions: dict[str, list[float]]) -> str:
    """``candidate_key`` of the pair these actions decide, without scoring it (the counts depend on
    the actions alone: the clip and the fill, not the observations)."""
    counts = {}
    for a in AGENTS:
        ep = GroupEpisode(getattr(env.problem, a), env.problem.config.fill_budget)
        for x in actions[a]:
            ep.act(x)
        counts[f"{a}_counts"] = ep.final_counts()
    return candidate_key(counts)


def evolution_env_search(problem_config: dict, evaluations: int, seed: int = 0, beta: float = 0.5,
                         population: int = 16, levels: int = 9, mutate_prob: float = 0.3,
                         on_evaluation: Callable[[int, dict, dict], None] | None = None, quiet: bool = True) -> dict:
    """Score ``evaluations`` distinct candidate pairs bred by evolution; returns what
    ``random_search.random_search`` returns (best, evaluations, episodes, trace, search_s, cpu_s, env)
    plus the generations run."""
    if evaluations < 1:
        raise ValueError(f"evaluations must be ≥ 1, got {evaluations}")
    if levels < 2:
        raise ValueError(f"levels must be ≥ 2, got {levels}")
    env = MultiAgentPruningEnv({**problem_config, "beta": beta, "episode_log": None})
    n = {a: len(getattr(env.problem, a).names) for a in AGENTS}
    scored: dict[str, dict] = {}
    state = {"best": None, "episodes": 0}
    trace: list[float] = []
    t0, cpu0 = time.perf_counter(), time.process_time()
    bar = progress(total=evaluations, desc="evolution", quiet=quiet)

    def split(cfg) -> dict[str, list[float]]:
        acts = [c / (levels - 1) for c in cfg]
        return {"generator": acts[:n["generator"]], "discriminator": acts[n["generator"]:]}

    def score(cfg) -> float:
        actions = split(cfg)
        key = _pair_key(env, actions)
        if key not in scored:
            if len(scored) >= evaluations:
                return math.inf  # over the budget: not scored, never picked
            step = dict.fromkeys(AGENTS, 0)

            def act(agent, obs):
                step[agent] += 1
                return [actions[agent][step[agent] - 1]]

            rec = run_episode(env, act)
            state["episodes"] += 1
            scored[key] = rec
            if better(rec, state["best"]):
                state["best"] = {**rec, "evaluation": len(scored)}
            trace.append(state["best"]["own"]["generator"])
            bar.update(1)
            if on_evaluation is not None:
                on_evaluation(len(scored), rec, state["best"])
        return -scored[key]["own"]["generator"]

    cfg = EvolutionConfig(population=population, generations=max(2, evaluations), mutate_prob=mutate_prob, seed=seed)
    try:
        result = evolution_search([range(levels)] * sum(n.values()), score, lambda c: 0, 0.0, cfg,
                                  spent=lambda: len(scored) >= evaluations)
    finally:
        bar.close()
    return {"best": state["best"], "evaluations": len(scored), "episodes": state["episodes"], "trace": trace,
            "generations": len(result.history), "search_s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - cpu0, "env": env}

