"""How the search and the fine-tune scale with Ray workers on this machine: env steps per second of
the MARL search with 1 vs 2 env runners, backend evaluations per second with 1 vs 2 backend
workers, fine-tune steps per second with 1 vs 2 Ray Train workers.  One run, measured back to back
on one local Ray instance; prints the three ratios.

* env runners: ``MarlSearch`` (the real PPO search, evaluations inside the runners) for
  ``--iterations`` iterations of ``--episodes`` episodes; the first iteration (actor start-up, first
  evaluations) is left out; env steps = agent decisions (one per channel group of G and of D).
* backend workers: ``--evaluations`` distinct random (G, D) spec pairs (what a fresh policy
  proposes) scored by a pool of Ray actors (``envs.backends.remote``), all submitted at once.

* Ray Train workers: the DeepSpeed fine-tune of a uniform pair at the target (``--finetune-steps``
  steps, global batch 4 split over the workers) in 1 vs 2 ``TorchTrainer`` workers (gloo): training
  steps per second as rank 0 measures them, and the whole ``fit`` with worker start-up.

Every worker gets 1 CPU, so torch runs one thread in each: 2 workers can at best double the rate on
2 cores.  Run it on an idle machine; other jobs on the cores lower the ratios.

    python benchmarks/scaling.py --preset tiny                 # trains/reuses the tiny teacher
    python benchmarks/scaling.py --teacher runs/teacher --backend-steps 4
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.marl import MarlConfig, MarlSearch  # noqa: E402
from envs.backends.remote import start_pool  # noqa: E402
from envs.problem import ProblemConfig, build_problem, problem_backend, random_spec_pairs  # noqa: E402
from orchestration.config import load_preset  # noqa: E402
from orchestration.teacher_cache import ensure_teacher  # noqa: E402


def env_steps_per_s(problem: dict, runners: int, iterations: int, episodes: int, out: Path) -> dict:
    cfg = MarlConfig(iterations=iterations, episodes_per_iteration=episodes, num_env_runners=runners,
                     ckpt_every=0)
    search = MarlSearch(problem, cfg, out, quiet=True)
    try:
        search.setup()
        p = search.driver_env.problem
        steps_per_episode = len(p.generator.names) + len(p.discriminator.names)
        history = [search.step() for _ in range(iterations)]
    finally:
        search.close()
    timed = history[1:]
    steps = sum(h["episodes"] for h in timed) * steps_per_episode
    seconds = sum(h["train_s"] for h in timed)
    return {"env_runners": runners, "env_steps": steps, "seconds": round(seconds, 2),
            "env_steps_per_s": steps / seconds, "episodes": sum(h["episodes"] for h in timed),
            "cache_hits": sum(h["backend_cached"] for h in timed)}


def evaluations_per_s(problem: dict, workers: int, pairs: list) -> dict:
    import ray

    name = f"ganprune-scaling-{os.getpid()}-{workers}"
    actors = start_pool(problem, name, workers, build=problem_backend)
    try:
        backend = build_problem({**problem, "backend_workers": workers, "backend_pool": name}).backend
        t0 = time.perf_counter()
        scores = backend.evaluate_many(pairs)
        seconds = time.perf_counter() - t0
    finally:
        for a in actors:
            ray.kill(a, no_restart=True)
    assert not any(s.cached for s in scores), "the pairs must be distinct"
    return {"workers": workers, "evaluations": len(pairs), "seconds": round(seconds, 2),
            "evaluations_per_s": len(pairs) / seconds}


def finetune_steps_per_s(teacher: str, macs_target: float, workers: int, steps: int, tmp: Path) -> dict:
    import json as _json

    from gan.pruning.targets import resolve_macs_target, uniform_spec
    from gan.teacher_run import load_teacher_run
    from orchestration.ray_finetune import finetune_on_ray
    from orchestration.requests import FinetuneRequest

    run = load_teacher_run(teacher)
    target = resolve_macs_target(run.generator, macs_target, run.size)
    spec, ratio = uniform_spec(run.generator, target, run.size, criterion="l1")
    spec_path = tmp / "spec.json"
    spec_path.write_text(_json.dumps({"spec": spec, "keep_ratio": ratio}))
    res = finetune_on_ray(workers, FinetuneRequest(teacher, spec_path, tmp / f"ft{workers}", steps=steps,
                                                   batch_size=4, quiet=True, export_onnx=False))
    return {"workers": workers, "steps": steps, "train_seconds": round(res["train_seconds"], 2),
            "steps_per_s": res["steps_per_sec"], "ray_fit_seconds": res["ray_fit_seconds"]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--teacher", help="teacher run directory (default: the preset's cached teacher)")
    ap.add_argument("--macs-target", type=float, default=0.25)
    ap.add_argument("--backend-steps", type=int, help="fine-tune steps per evaluation (default per preset)")
    ap.add_argument("--iterations", type=int, default=4, help="MARL iterations per runner count (first not timed)")
    ap.add_argument("--episodes", type=int, default=8, help="episodes per iteration")
    ap.add_argument("--evaluations", type=int, default=16, help="distinct spec pairs per worker count")
    ap.add_argument("--finetune-steps", type=int, default=60, help="fine-tune steps per Ray Train worker count")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import ray

    pre = load_preset(args.preset)
    teacher = args.teacher or str(ensure_teacher(args.preset))
    steps = pre.marl.backend_steps if args.backend_steps is None else args.backend_steps
    problem = ProblemConfig(teacher=str(Path(teacher).resolve()), macs_target=args.macs_target,
                            backend_config={"finetune_steps": steps, "eval_items": pre.marl.eval_items}).to_dict()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        pairs = random_spec_pairs(build_problem(problem), args.evaluations, seed=1)
        with tempfile.TemporaryDirectory(prefix="scaling_") as tmp:
            runners = [env_steps_per_s(problem, n, args.iterations, args.episodes, Path(tmp) / f"r{n}")
                       for n in (1, 2)]
        workers = [evaluations_per_s(problem, n, pairs) for n in (1, 2)]
        with tempfile.TemporaryDirectory(prefix="scaling_ft_") as tmp:
            train = [finetune_steps_per_s(problem["teacher"], args.macs_target, n, args.finetune_steps, Path(tmp))
                     for n in (1, 2)]
    finally:
        ray.shutdown()

    print(f"teacher {teacher}, {steps} fine-tune steps per evaluation, {os.cpu_count()} CPUs, 1 CPU per worker")
    for r in runners:
        print(f"env runners {r['env_runners']}: {r['env_steps']} env steps ({r['episodes']} episodes) in "
              f"{r['seconds']:.1f} s = {r['env_steps_per_s']:.1f} env steps/s")
    for w in workers:
        print(f"backend workers {w['workers']}: {w['evaluations']} evaluations in {w['seconds']:.1f} s = "
              f"{w['evaluations_per_s']:.2f} evaluations/s")
    for t in train:
        print(f"Ray Train workers {t['workers']}: {t['steps']} fine-tune steps in {t['train_seconds']:.1f} s = "
              f"{t['steps_per_s']:.2f} steps/s (TorchTrainer.fit {t['ray_fit_seconds']:.1f} s)")
    result = {"teacher": teacher, "backend_steps": steps, "runners": runners, "workers": workers, "train": train,
              "env_runner_ratio": runners[1]["env_steps_per_s"] / runners[0]["env_steps_per_s"],
              "backend_worker_ratio": workers[1]["evaluations_per_s"] / workers[0]["evaluations_per_s"],
              "train_worker_ratio": train[1]["steps_per_s"] / train[0]["steps_per_s"]}
    print(f"2 vs 1 env runners: ×{result['env_runner_ratio']:.2f} env steps/s; "
          f"2 vs 1 backend workers: ×{result['backend_worker_ratio']:.2f} evaluations/s; "
          f"2 vs 1 Ray Train workers: ×{result['train_worker_ratio']:.2f} fine-tune steps/s")
    if args.json:
        print(json.dumps(result, default=float))
    return result


if __name__ == "__main__":
    main()
