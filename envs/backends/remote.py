"""Backend evaluations on a pool of Ray actors (``--backend-workers M``).

Why: an evaluation (weight inheritance + K fine-tune steps + held-out scores) costs seconds while an
env step costs microseconds, so the evaluations are the work to spread over a cluster.  Each
``BackendWorker`` builds the problem's real backend once (teacher G/D, fixed batches) and serves
``evaluate`` calls; every env (in any env runner, and the driver's greedy rollouts) routes a spec
pair to worker ``hash(pair) mod M``, so each pair is evaluated once cluster-wide and the workers'
caches stay exact.  Workers are named Ray actors (found by name from any process of the job),
restarted by Ray when they die; an evaluation is deterministic, so a retried call is safe.
"""
from __future__ import annotations

import ray

from envs.backends.base import Scores, spec_key


@ray.remote(max_restarts=-1, max_task_retries=3)
class BackendWorker:
    """One copy of the problem's backend in its own process."""

    def __init__(self, problem_config: dict):
        from envs.problem import build_problem

        self.backend = build_problem(local_config(problem_config)).backend

    def evaluate(self, g_spec: dict, d_spec: dict) -> dict:
        return self.backend.evaluate(g_spec, d_spec).to_dict()

    def stats(self) -> dict:
        return self.backend.stats()

    def ready(self) -> bool:
        return True


def local_config(problem_config: dict) -> dict:
    """The problem config a worker builds: the same problem, evaluated in-process."""
    return {**problem_config, "backend_pool": None, "backend_workers": 0}


def start_pool(problem_config: dict, name: str, workers: int, num_cpus: float = 1.0,
               num_gpus: float = 0.0) -> list:
    """Create (or find) the ``workers`` named actors and wait until each has built its backend."""
    actors = [BackendWorker.options(name=f"{name}-{i}", get_if_exists=True, num_cpus=num_cpus,
                                    num_gpus=num_gpus).remote(problem_config) for i in range(workers)]
    ray.get([a.ready.remote() for a in actors])
    return actors


class RemoteBackend:
    """The backend protocol, served by the pool ``name`` of ``workers`` actors."""

    def __init__(self, name: str, workers: int, inner_name: str = "local"):
        if workers < 1:
            raise ValueError(f"a backend pool needs ≥ 1 worker, got {workers}")
        self.pool, self.workers, self.name = name, workers, f"{inner_name}@{workers}-workers"
        self._actors = None

    def actors(self) -> list:
        if self._actors is None:
            self._actors = [ray.get_actor(f"{self.pool}-{i}") for i in range(self.workers)]
        return self._actors

    def route(self, g_spec: dict, d_spec: dict):
        return self.actors()[int(spec_key(g_spec, d_spec), 16) % self.workers]

    def submit(self, g_spec: dict, d_spec: dict):
        """The evaluation as a Ray object ref (many can be in flight: ``evaluate_many``)."""
        return self.route(g_spec, d_spec).evaluate.remote(g_spec, d_spec)

    def evaluate(self, g_spec: dict, d_spec: dict) -> Scores:
        return Scores(**ray.get(self.submit(g_spec, d_spec)))

    def evaluate_many(self, pairs: list[tuple[dict, dict]]) -> list[Scores]:
        return [Scores(**s) for s in ray.get([self.submit(g, d) for g, d in pairs])]

    def stats(self) -> dict:
        per = ray.get([a.stats.remote() for a in self.actors()])
        return {"backend": self.name, "workers": self.workers,
                **{k: sum(s[k] for s in per) for k in ("calls", "cache_hits")},
                "seconds": round(sum(s["seconds"] for s in per), 3)}
