"""Backend evaluations on a pool of Ray actors (``--backend-workers M``).

Why: an evaluation (weight inheritance + K fine-tune steps + held-out scores) costs seconds while an
env step costs microseconds, so the evaluations are the work to spread over a cluster.  Each
``BackendWorker`` builds the problem's real backend once (teacher G/D, fixed batches) and serves
``evaluate`` calls; one ``ScoreCache`` actor holds every finished score, so a pair is evaluated once
cluster-wide whichever worker gets it and the calls can go to any worker: round robin from each
process, and a batch (``evaluate_many``) to whichever worker is free next.  Workers are named Ray
actors (found by name from any process of the job), restarted by Ray when they die; an evaluation
is deterministic, so a retried call is safe.
"""
from __future__ import annotations

import os

import ray
from ray.util import ActorPool

from envs.backends.base import Scores, spec_key


@ray.remote(num_cpus=0)
class ScoreCache:
    """Scores by spec-pair hash, shared by the pool's workers."""

    def __init__(self):
        self.scores: dict[str, dict] = {}

    def get(self, key: str) -> dict | None:
        return self.scores.get(key)

    def put(self, key: str, scores: dict) -> None:
        self.scores[key] = scores


@ray.remote(max_restarts=-1, max_task_retries=3)
class BackendWorker:
    """One copy of the problem's backend in its own process."""

    def __init__(self, build, problem_config: dict, cache_name: str):
        self.backend = build(local_config(problem_config))
        self.cache = ray.get_actor(cache_name)
        self.calls = self.hits = 0

    def evaluate(self, g_spec: dict, d_spec: dict) -> dict:
        self.calls += 1
        key = spec_key(g_spec, d_spec)
        done = ray.get(self.cache.get.remote(key))
        if done is not None:
            self.hits += 1
            return {**done, "cost_s": 0.0, "cached": True}
        scores = self.backend.evaluate(g_spec, d_spec).to_dict()
        self.cache.put.remote(key, scores)
        return scores

    def stats(self) -> dict:
        return {"calls": self.calls, "cache_hits": self.hits, "seconds": self.backend.seconds}

    def ready(self) -> int:
        """The worker's process id, once its backend is built."""
        return os.getpid()


def local_config(problem_config: dict) -> dict:
    """The problem config a worker builds: the same problem, evaluated in-process."""
    return {**problem_config, "backend_pool": None, "backend_workers": 0}


def start_pool(problem_config: dict, name: str, workers: int, num_cpus: float = 1.0,
               num_gpus: float = 0.0, *, build) -> list:
    """Create (or find) the pool's cache and ``workers`` named actors and wait until each has built
    its backend with ``build(problem config) -> backend`` (``envs.problem.problem_backend``: handed in,
    so this module does not import the problem that imports it); returns every actor (the cache last)
    so the caller keeps them alive and can kill them."""
    cache = ScoreCache.options(name=f"{name}-cache", get_if_exists=True).remote()
    actors = [BackendWorker.options(name=f"{name}-{i}", get_if_exists=True, num_cpus=num_cpus,
                                    num_gpus=num_gpus).remote(build, problem_config, f"{name}-cache")
              for i in range(workers)]
    ray.get([a.ready.remote() for a in actors])
    return actors + [cache]


class RemoteBackend:
    """The backend protocol, served by the pool ``name`` of ``workers`` actors."""

    def __init__(self, name: str, workers: int, inner_name: str = "local"):
        if workers < 1:
            raise ValueError(f"a backend pool needs ≥ 1 worker, got {workers}")
        self.pool, self.workers, self.name = name, workers, f"{inner_name}@{workers}-workers"
        self._actors = None
        self._next = os.getpid()  # processes start their round robin at different workers

    def actors(self) -> list:
        if self._actors is None:
            self._actors = [ray.get_actor(f"{self.pool}-{i}") for i in range(self.workers)]
        return self._actors

    def evaluate(self, g_spec: dict, d_spec: dict) -> Scores:
        self._next += 1
        return Scores(**ray.get(self.actors()[self._next % self.workers].evaluate.remote(g_spec, d_spec)))

    def evaluate_many(self, pairs: list[tuple[dict, dict]]) -> list[Scores]:
        """All pairs in flight at once, each handed to the next free worker; results in order."""
        pool = ActorPool(self.actors())
        return [Scores(**s) for s in pool.map(lambda a, pair: a.evaluate.remote(*pair), list(pairs))]

    def stats(self) -> dict:
        per = ray.get([a.stats.remote() for a in self.actors()])
        return {"backend": self.name, "workers": self.workers,
                **{k: sum(s[k] for s in per) for k in ("calls", "cache_hits")},
                "seconds": round(sum(s["seconds"] for s in per), 3)}
