"""Random search: the control every learned search must beat at the same budget (issue #13).

Same env (``envs.multi_agent.MultiAgentPruningEnv``: the same action space, action prior, AMC clip and
budget fill), same backend, same scoring items, same pick rule (``agents.marl.better``), and the same
number of distinct candidate pairs scored (``evaluations``) as the MARL run it is compared with; only
the actions differ: uniform in [0, 1] per group, seeded. Repeats (possible after rounding) are served
by the backend's cache and do not count.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from agents.marl import better, candidate_key, run_episode
from envs.multi_agent import MultiAgentPruningEnv
from gan.progress import progress

#: give up after this many episodes per requested evaluation (a tiny problem may have few distinct pairs)
MAX_TRIES_PER_EVALUATION = 20


def random_episode(env: MultiAgentPruningEnv, rng: np.random.Generator) -> dict:
    """One episode with uniformly random actions; returns the env's record."""
    return run_episode(env, lambda agent, obs: rng.uniform(0.0, 1.0, (1,)).astype(np.float32))


def random_search(problem_config: dict, evaluations: int, seed: int = 0, beta: float = 0.5,
                  on_evaluation: Callable[[int, dict, dict], None] | None = None, quiet: bool = True) -> dict:
    """Score ``evaluations`` distinct random candidate pairs; returns the best by ``better``, the count,
    the trace of the best score after each evaluation, wall and CPU seconds, and the driver env (for
    its tasks).  ``on_evaluation(i, record, best)`` is called after each new candidate."""
    if evaluations < 1:
        raise ValueError(f"evaluations must be ≥ 1, got {evaluations}")
    env = MultiAgentPruningEnv({**problem_config, "beta": beta, "episode_log": None})
    rng = np.random.default_rng(seed)
    seen, best, trace, episodes = set(), None, [], 0
    t0, cpu0 = time.perf_counter(), time.process_time()
    with progress(total=evaluations, desc="random", quiet=quiet) as bar:
        for _ in range(evaluations * MAX_TRIES_PER_EVALUATION):
            if len(seen) >= evaluations:
                break
            rec = random_episode(env, rng)
            episodes += 1
            key = candidate_key(rec)
            if key in seen:
                continue
            seen.add(key)
            if better(rec, best):
                best = {**rec, "evaluation": len(seen)}
            trace.append(best["own"]["generator"])
            bar.update(1)
            if on_evaluation is not None:
                on_evaluation(len(seen), rec, best)
    return {"best": best, "evaluations": len(seen), "episodes": episodes, "trace": trace, "search_s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - cpu0, "env": env}
