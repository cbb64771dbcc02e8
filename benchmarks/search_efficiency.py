"""Which search finds the best-scoring pair at the same number of evaluations? MARL (β 0.5), MARL β 0,
MARL with learning rate 0 (its initial policies: sampling, no learning), random search and evolution on one
supernet backend, per seed (issue #15 item 2).

Search-side only: every search scores candidates on the same seeded *search* items of the train split
with the same backend (the supernet of that seed, as ``prune --backend supernet`` trains or reuses it),
the same env and pick rule; random and evolution get exactly the number of distinct candidates the
seed's first marl search scored.  Reported per search × seed: the best pair's generator own score
(higher is better; r_G = −(density + 10·L1 to the teacher)) and its backend PSNR vs the teacher on the
search items, the final greedy policies' own score (marl), evaluations, wall and CPU seconds; then mean
± SE over seeds and the paired difference to random.  These are scores the searches optimise, not a
fidelity claim: the test-split comparison after fine-tuning is ``ganprune benchmark --search-backend
supernet --methods marl,marl-beta0,random,evolution`` (README).  ``--ppo KEY=VALUE`` overrides a
``agents.marl.MarlConfig`` field of every marl search (e.g. lr=3e-4, entropy_coeff=0.01); results
are written per search × seed and kept on a rerun with the same settings (``--resume``).

    .venv/bin/python benchmarks/search_efficiency.py --preset tiny --evaluations 1000 --episodes 32 \\
        --seeds 0,1,2 --searches marl,marl-beta0,marl-lr0,random,evolution --out runs/search-efficiency
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np

from orchestration.benchmark import mean_std_se

SEARCHES = ("marl", "marl-beta0", "marl-lr0", "random", "evolution")


def _typed(field: dataclasses.Field, text: str):
    for kind in (int, float):
        if field.type in (kind.__name__, kind):
            return kind(text)
    if field.type in ("bool", bool):
        return text.lower() in ("1", "true", "yes")
    if field.type in ("tuple", tuple):
        return tuple(int(x) for x in text.split(","))
    return json.loads(text) if text[:1] in "[{" else text


def ppo_overrides(pairs: list[str]) -> dict:
    from agents.marl import MarlConfig

    fields = {f.name: f for f in dataclasses.fields(MarlConfig)}
    out = {}
    for p in pairs:
        k, sep, v = p.partition("=")
        if not sep or k not in fields:
            raise SystemExit(f"--ppo {p!r}: give KEY=VALUE with KEY one of {', '.join(fields)}")
        out[k] = _typed(fields[k], v)
    return out


def problem_config(run, tdir: Path, seed: int, args) -> tuple[dict, dict]:
    """The problem ``prune --backend supernet`` builds for this seed, and the supernet's cost."""
    from envs.backends.options import SupernetOptions
    from envs.problem import ProblemConfig
    from gan.train.supernet import DEFAULT_FRACTIONS, SupernetSettings, cached_supernet

    o = SupernetOptions()
    settings = SupernetSettings(steps=args.supernet_steps, batch_size=o.batch_size, lr=o.lr,
                                lambda_distill=o.lambda_distill, fractions=tuple(DEFAULT_FRACTIONS), seed=seed,
                                backend=o.trainer)
    path, cost = cached_supernet(run, settings)
    cfg = ProblemConfig(teacher=str(tdir), macs_target=args.macs_target, seed=seed, prior="l1", backend="supernet",
                        backend_config={"supernet": str(path), "finetune_steps": 0, "eval_items": args.eval_items,
                                        "density": not args.no_density})
    return cfg.to_dict(), cost


def run_marl(problem: dict, seed: int, beta: float, args, out: Path, lr: float | None = None) -> dict:
    import shutil

    from agents.marl import MarlConfig, MarlSearch

    iterations = math.ceil(args.evaluations / (args.episodes + 1))
    cfg = MarlConfig(iterations=iterations, episodes_per_iteration=args.episodes, beta=beta, seed=seed,
                     ckpt_every=0, **{**args.ppo, **({} if lr is None else {"lr": lr})})
    shutil.rmtree(out, ignore_errors=True)
    search = MarlSearch(problem, cfg, out, quiet=True)
    t0 = time.perf_counter()
    try:
        search.setup()
        res = search.run()
    finally:
        search.close()
    hist = res["history"]
    return {"best_own": res["best"]["own"]["generator"],
            "best_psnr": res["best"]["scores"]["metrics"].get("psnr_vs_teacher"),
            "greedy_own": res["greedy"]["own"]["generator"],
            "greedy_psnr": res["greedy"]["scores"]["metrics"].get("psnr_vs_teacher"),
            "evaluations": res["evaluations"], "wall_s": time.perf_counter() - t0, "cpu_s": res["cpu_s"],
            "trace": [[h["evaluations"], h["best_generator_own"]] for h in hist],
            "greedy_trace": [[h["evaluations"], h["generator_greedy_own"]] for h in hist],
            "entropy_trace": [[h["evaluations"], h.get("generator_entropy"), h.get("discriminator_entropy")]
                              for h in hist],
            "config": cfg.to_dict()}


def run_control(name: str, problem: dict, seed: int, evaluations: int) -> dict:
    from agents.baselines.env_evolution import evolution_env_search
    from agents.baselines.random_search import random_search

    t0 = time.perf_counter()
    fn = random_search if name == "random" else evolution_env_search
    res = fn(problem, evaluations, seed=seed, beta=0.5)
    best = res["best"]
    return {"best_own": best["own"]["generator"], "best_psnr": best["scores"]["metrics"].get("psnr_vs_teacher"),
            "evaluations": res["evaluations"], "wall_s": time.perf_counter() - t0, "cpu_s": res["cpu_s"],
            "trace": [[i + 1, v] for i, v in enumerate(res["trace"])]}


def mean_se(xs) -> tuple[float, float]:
    """(mean, standard error) of the values that exist (``orchestration.benchmark.mean_std_se``)."""
    xs = [float(x) for x in xs if x is not None]
    if not xs:
        return float("nan"), float("nan")
    r = mean_std_se(xs)
    return r["mean"], r["se"]


def summarize(rows: list[dict], searches: list[str], seeds: list[int]) -> dict:
    by = {(r["search"], r["seed"]): r for r in rows}
    out = {}
    for s in searches:
        rs = [by[(s, k)] for k in seeds if (s, k) in by]
        d = {"seeds": len(rs)}
        for key in ("best_own", "best_psnr", "greedy_own", "evaluations", "wall_s", "cpu_s"):
            vals = [r.get(key) for r in rs if r.get(key) is not None]
            if vals:
                d[key] = mean_se(vals)
        for base in ("random", "evolution"):
            pairs = [by[(s, k)]["best_own"] - by[(base, k)]["best_own"] for k in seeds
                     if (s, k) in by and (base, k) in by]
            if s != base and pairs:
                d[f"delta_vs_{base}"] = mean_se(pairs)
        out[s] = d
    return out


def plot(rows: list[dict], searches: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s in searches:
        for i, r in enumerate(x for x in rows if x["search"] == s):
            t = np.asarray(r["trace"], dtype=float)
            ax.plot(t[:, 0], t[:, 1], color=f"C{searches.index(s)}", alpha=0.8, label=s if i == 0 else None)
            if "greedy_trace" in r:
                g = np.asarray(r["greedy_trace"], dtype=float)
                ax.plot(g[:, 0], g[:, 1], color=f"C{searches.index(s)}", alpha=0.4, ls=":",
                        label=f"{s} greedy policy" if i == 0 else None)
    ax.set_xlabel("distinct candidates scored")
    ax.set_ylabel("generator own score (search items)")
    ax.set_title("best pair found so far, per seed")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", help="teacher run directory (default: the preset's cached teacher)")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--macs-target", type=float, default=0.25)
    ap.add_argument("--evaluations", type=int, default=1000, help="marl's budget: iterations = ⌈N / (episodes + 1)⌉")
    ap.add_argument("--episodes", type=int, default=32, help="marl episodes per PPO iteration")
    ap.add_argument("--eval-items", type=int, default=None, help="search items (default: the preset's)")
    ap.add_argument("--supernet-steps", type=int, default=None, help="default: the preset's supernet_steps")
    ap.add_argument("--no-density", action="store_true", help="score r_G without the density term")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--searches", default=",".join(SEARCHES))
    ap.add_argument("--ppo", action="append", default=[], metavar="KEY=VALUE", help="a MarlConfig field, repeatable")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/search-efficiency")
    ap.add_argument("--resume", action="store_true", help="keep results written with the same settings")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    args.ppo = ppo_overrides(args.ppo)
    searches = args.searches.split(",")
    bad = sorted(set(searches) - set(SEARCHES))
    if bad:
        raise SystemExit(f"--searches {bad[0]!r}: choose from {', '.join(SEARCHES)}")
    seeds = [int(s) for s in args.seeds.split(",")]

    import torch

    from gan.determinism import controlled, ProcessSettings
    from gan.teacher_run import load_teacher_run
    from orchestration.config import load_preset

    torch.set_num_threads(args.threads)
    preset = load_preset(args.preset)
    args.eval_items = args.eval_items or preset.marl.eval_items
    args.supernet_steps = args.supernet_steps if args.supernet_steps is not None else \
        preset.gan_compression.supernet_steps
    if args.teacher:
        tdir = Path(args.teacher)
    else:
        from orchestration.teacher_cache import ensure_teacher

        tdir = ensure_teacher(args.preset)
    run = load_teacher_run(tdir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"teacher": str(tdir), "macs_target": args.macs_target, "evaluations": args.evaluations,
                "episodes": args.episodes, "eval_items": args.eval_items, "supernet_steps": args.supernet_steps,
                "density": not args.no_density, "ppo": args.ppo}
    rows = []
    order = [s for s in searches if s.startswith("marl")] + [s for s in searches if not s.startswith("marl")]
    for seed in seeds:
        problem, supernet_cost = problem_config(run, tdir, seed, args)
        budget = None
        for s in order:
            f = out / f"{s}-seed{seed}.json"
            if args.resume and f.is_file():
                prev = json.loads(f.read_text())
                if prev.get("settings") == settings:
                    rows.append(prev["row"])
                    budget = budget or (prev["row"]["evaluations"] if s.startswith("marl") else None)
                    print(f"{s} seed {seed}: kept", flush=True)
                    continue
            with controlled(seed, ProcessSettings.default(args.threads)):
                if s.startswith("marl"):
                    r = run_marl(problem, seed, 0.0 if s == "marl-beta0" else 0.5, args, out / f"{s}-seed{seed}",
                                 lr=0.0 if s == "marl-lr0" else None)
                    budget = budget or r["evaluations"]
                else:
                    r = run_control(s, problem, seed, budget or args.evaluations)
            r.update(search=s, seed=seed, supernet_cpu_s=supernet_cost["cpu_s"])
            rows.append(r)
            f.write_text(json.dumps({"settings": settings, "row": r}, default=float))
            print(f"{s} seed {seed}: best own {r['best_own']:.4f} (PSNR {r['best_psnr']:.2f} dB on search items)"
                  + (f", greedy {r['greedy_own']:.4f}" if "greedy_own" in r else "")
                  + f", {r['evaluations']} evaluations, {r['wall_s']:.0f} s", flush=True)
    summary = summarize(rows, searches, seeds)
    plot(rows, searches, out / "search_efficiency.png")
    lines = ["| search | best own score | Δ vs random | Δ vs evolution | best PSNR (search items) | greedy own | "
             "evaluations | wall s |", "|---|---|---|---|---|---|---|---|"]

    def pm(v, nd=4):
        return "—" if v is None else f"{v[0]:.{nd}f} ± {v[1]:.{nd}f}"

    for s in searches:
        d = summary[s]
        lines.append(f"| {s} | {pm(d.get('best_own'))} | {pm(d.get('delta_vs_random'))} | "
                     f"{pm(d.get('delta_vs_evolution'))} | {pm(d.get('best_psnr'), 2)} | {pm(d.get('greedy_own'))} | "
                     f"{pm(d.get('evaluations'), 0)} | {pm(d.get('wall_s'), 0)} |")
    table = "\n".join(lines)
    print(table)
    (out / "search_efficiency.md").write_text(table + "\n")
    result = {"settings": settings, "rows": rows, "summary": summary}
    (out / "search_efficiency.json").write_text(json.dumps(result, default=float, indent=1))
    if args.json:
        print(json.dumps({"summary": summary, "settings": settings}, default=float))
    return result


if __name__ == "__main__":
    main()
