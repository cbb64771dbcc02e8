"""What one local-backend evaluation costs, with and without the teacher memo (``envs.backends.local.TeacherMemo``).

The marl and random searches spend nearly all their time in these evaluations: prune the teacher
pair by a candidate spec, K density fine-tune steps on fixed train items, score on fixed search
items.  Candidates are uniform L1 specs at 100 / 90 / 80 % of the MACs target; the first
evaluation of the memo backend fills the memo.  Prints the wall time of each evaluation and
checks that both backends give the same scores (the memo is exact).  ``--supernet DIR`` (a supernet
the ``supernet`` search backend trained, e.g. ``$GANPRUNE_CACHE/supernets/<key>``) also times the
supernet backend on the same candidates: slicing + one forward pass (and with ``density=true``), no steps (docs/methods.md,
"Search backends").

    .venv/bin/python benchmarks/backend_evaluation.py [--teacher RUN | --preset small] [--steps 4] \\
        [--items 16] [--threads 1] [--supernet DIR] [--json]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from envs.backends.local import LocalBackend, LocalConfig
from gan.pruning.targets import resolve_macs_target, uniform_spec
from gan.teacher_run import load_teacher_run


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", help="teacher run directory (default: the preset's cached teacher)")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--macs-target", type=float, default=0.25)
    ap.add_argument("--steps", type=int, default=4, help="fine-tune steps per candidate (benchmark's --backend-steps)")
    ap.add_argument("--items", type=int, default=16, help="search items scored (the preset's eval_items)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--supernet", help="a trained supernet folder: time the supernet backend too")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.teacher:
        tdir = Path(args.teacher)
    else:
        from orchestration.teacher_cache import ensure_teacher

        tdir = ensure_teacher(args.preset)
    run = load_teacher_run(tdir)
    cfg = LocalConfig(finetune_steps=args.steps, eval_items=args.items, train_items=args.items)
    target = resolve_macs_target(run.generator, args.macs_target, run.size)
    specs = [uniform_spec(run.generator, int(target * f), run.size, criterion="l1")[0] for f in (1.0, 0.9, 0.8)]
    result = {"teacher": str(tdir), "size": run.size, "steps": args.steps, "items": args.items,
              "threads": args.threads}
    scores = {}
    for memo in (False, True):
        backend = LocalBackend.from_teacher_run(run, cfg, memo=memo)
        times = []
        for spec in specs:
            t0 = time.perf_counter()
            s = backend.evaluate(spec, {})
            times.append(round(time.perf_counter() - t0, 2))
            scores.setdefault(memo, []).append((s.generator, s.discriminator))
        result["memo" if memo else "plain"] = times
    result["same_scores"] = scores[True] == scores[False]
    result["speedup_after_first"] = round(sum(result["plain"][1:]) / sum(result["memo"][1:]), 2)
    print(f"per evaluation, teacher every time: {result['plain']} s; with the memo: {result['memo']} s "
          f"(×{result['speedup_after_first']} after the first); same scores: {result['same_scores']}")
    if args.supernet:
        from envs.backends.supernet import SupernetBackend, SupernetConfig

        for density in (True, False):  # the prune default (with the density term), and density=false
            backend = SupernetBackend.from_teacher_run(run, SupernetConfig(supernet=args.supernet, eval_items=args.items,
                                                                           density=density))
            backend.supernet  # loaded once, before the clock (the search loads it when its backend is built)
            times = []
            for spec in specs:
                t0 = time.perf_counter()
                backend.evaluate(spec, {})
                times.append(round(time.perf_counter() - t0, 4))
            key = "supernet_density" if density else "supernet"
            result[key] = times
            print(f"per evaluation, supernet backend (slice + score{', density term' if density else ''}): {times} s")
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
