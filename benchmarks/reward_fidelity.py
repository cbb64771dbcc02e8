"""Does the reward predict the result? (issue #13 item 5)

The search ranks (G spec, D spec) pairs by the ``local`` backend's generator score: inherit the
teacher's weights, K fine-tune steps, score on search items carved from the *train* split
(``gan.data.splits``). What a user reads is the test-split PSNR vs the teacher after the full
fine-tune. This benchmark measures how well the first ranks the second, at one MACs target:

* candidates (all at the same target, deduplicated, each labelled with its source): the uniform
  pair (one keep ratio per network), the L1 pair (one global filter-L1 threshold per network: the
  ``l1`` action prior replayed with constant action 0.5), the MARL best and greedy pairs of a
  finished ``ganprune prune --method marl`` run (``--marl-run``), and random pairs
  (``envs.problem.random_spec_pairs``, what a fresh policy proposes) up to ``--candidates``;
* per candidate and per K in ``--ks``: the backend's own scores (``Scores.generator`` = r_G, the
  reward the search maximises, and its ``psnr_vs_teacher``), one backend per K reused across
  candidates (search items only);
* per candidate: the full fine-tune (``orchestration.finetune.finetune``), whose before/after PSNR
  vs the teacher is measured on the test split (``finetune.json``'s ``eval_split``);
* per K: Spearman ρ and Kendall τ (with p-values) between the backend's signal and the final test
  PSNR, whether the backend's best candidate is the final best, the final rank of its pick, and the
  regret (final PSNR of the true best − final PSNR of the backend's pick).

    python benchmarks/reward_fidelity.py --out runs/reward_fidelity            # cached tiny teacher
    python benchmarks/reward_fidelity.py --teacher runs/teacher --marl-run runs/marl \\
        --candidates 16 --ks 0,4,20 --finetune-steps 200 --out runs/reward_fidelity [--resume]

Reading it: the MARL best pair was chosen by a backend score among every pair the search scored, so
its backend score is optimistically biased (winner's curse); the other candidates are not. Random
pairs with the default ``l1`` prior stay within ×2 of the L1 keep ratios: the final PSNRs of such a
set are close, and the correlation measures the fine discrimination a search around the prior needs
(``--random-prior none`` spreads them much wider). ``uniform`` does not spend the budget the single
ratio leaves (as ``prune --method uniform``), but unlike that method its D is pruned at D's MACs target.

Every candidate's results are written to ``out/candidates/<label>-<hash>/result.json`` as they
finish (atomically); ``--resume`` reuses those whose settings match and continues an unfinished
fine-tune from its newest checkpoint. Results: ``out/reward_fidelity.json``, ``out/reward_fidelity.png``
(x = backend score, y = final test PSNR, one panel per K) and a markdown table on stdout.
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from gan.progress import progress  # noqa: E402
from gan.train.distill import DEFAULT_OBJECTIVE, OBJECTIVES  # noqa: E402

#: backend signals whose ranking is compared with the final test PSNR: (key in the stored scores, name)
SIGNALS = {"reward": "r_G (backend reward)", "psnr": "backend PSNR vs teacher (dB)"}
#: the full fine-tune checkpoints this many times when it is long enough to be worth resuming
FINETUNE_CHECKPOINTS = 10


# ---------------------------------------------------------------------------------------------- inputs

def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", help="teacher run directory (teacher.json); default: the --marl-run's "
                    "teacher, else the cached tiny teacher (orchestration.teacher_cache.ensure_teacher)")
    ap.add_argument("--macs-target", type=float, default=None,
                    help="generator MACs target, fraction or count (default: the --marl-run's, else 0.25)")
    ap.add_argument("--candidates", type=int, default=16, help="candidate pairs in all (default 16)")
    ap.add_argument("--ks", default="0,4,20", help="backend fine-tune steps K, comma-separated (default 0,4,20)")
    ap.add_argument("--finetune-steps", type=int, default=200, help="steps of each full fine-tune (default 200)")
    ap.add_argument("--finetune-backend", choices=["deepspeed", "torch"], default="deepspeed")
    ap.add_argument("--objective", default=DEFAULT_OBJECTIVE, choices=OBJECTIVES,
                    help="objective of the K steps and the full fine-tune (default: the shipped one, l1)")
    ap.add_argument("--eval-items", type=int, default=None,
                    help="search items the backend scores on (default: the --marl-run's, else the teacher "
                    "preset's marl.eval_items, else 8)")
    ap.add_argument("--train-items", type=int, default=None,
                    help="train-split items of the backend's K steps (default: the --marl-run's, else 16)")
    ap.add_argument("--random-prior", choices=["l1", "none"], default=None,
                    help="action prior of the random pairs (default: the --marl-run's, else l1: what a fresh "
                    "MARL policy explores)")
    ap.add_argument("--marl-run", help="a finished 'ganprune prune --method marl' run directory: adds its best "
                    "and greedy pairs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, help="torch threads (default: gan.determinism.default_threads)")
    ap.add_argument("--out", default="runs/reward_fidelity", help="output directory")
    ap.add_argument("--resume", action="store_true", help="reuse the per-candidate results already in --out")
    ap.add_argument("--supernet", action="store_true",
                    help="also score every candidate with the supernet backend (a column 'supernet' beside the Ks): "
                    "the --marl-run's supernet and options when it searched with one, else the backend's defaults")
    args = ap.parse_args(argv)
    try:
        args.ks = sorted({int(k) for k in args.ks.split(",") if k.strip()})
    except ValueError:
        ap.error(f"--ks takes comma-separated integers, got {args.ks!r}")
    if not args.ks or min(args.ks) < 0:
        ap.error("--ks needs at least one K ≥ 0")
    if args.candidates < 2:
        ap.error("--candidates must be ≥ 2 (a rank correlation needs pairs)")
    if args.finetune_steps < 0:
        ap.error("--finetune-steps must be ≥ 0")
    return args


def load_marl_run(run_dir) -> dict:
    """The search state of a MARL run: problem config, best pair (best_spec.json, else the checkpoint's
    best record) and the final policies' greedy pick (the checkpoint's greedy record, else the
    last iteration's greedy keep ratios)."""
    from agents.marl import checkpoints

    d = Path(run_dir)
    found = checkpoints(d)
    if not found:
        raise SystemExit(f"--marl-run {d}: no checkpoints/iter_N/search_state.json; pass a 'ganprune prune "
                         "--method marl' run directory")
    state = json.loads((found[-1] / "search_state.json").read_text())
    history = state.get("history") or []
    if (d / "history.json").is_file():
        history = json.loads((d / "history.json").read_text()) or history
    best_spec = json.loads((d / "best_spec.json").read_text()) if (d / "best_spec.json").is_file() else None
    return {"dir": str(d.resolve()), "checkpoint": str(found[-1]), "problem": state.get("problem", {}),
            "iteration": state.get("iteration"), "best": state.get("best"), "greedy": state.get("greedy"),
            "history": history, "best_spec": best_spec}


def _preset_eval_items(teacher_dir: Path) -> int | None:
    try:
        from orchestration.config import load_preset

        preset = json.loads((teacher_dir / "teacher.json").read_text()).get("preset")
        return int(load_preset(preset).marl.eval_items) if preset else None
    except Exception:  # a test teacher's made-up preset name: fall back to the backend's default
        return None


# ---------------------------------------------------------------------------------------------- candidates

def _counts(spec: dict) -> dict:
    return {k: len(v) for k, v in spec.items()}


def constant_pair(g_task, d_task, action: float, fill: bool) -> tuple[dict, dict]:
    """Both networks' specs from one constant action for every group (``envs.episode.GroupEpisode``)."""
    from envs.episode import GroupEpisode

    specs = []
    for task in (g_task, d_task):
        ep = GroupEpisode(task, fill)
        while not ep.done:
            ep.act([action])
        specs.append(task.spec(ep.final_counts()))
    return specs[0], specs[1]


def build_candidates(problem, marl: dict | None, n: int, seed: int) -> list[dict]:
    """Uniform, L1, MARL best/greedy, then random pairs up to ``n`` in all, deduplicated by spec hash."""
    from envs.backends.base import spec_key
    from envs.problem import random_spec_pairs
    from envs.task import PruningTask
    from gan.pruning.targets import uniform_spec

    gt, dt, cfg, size = problem.generator, problem.discriminator, problem.config, problem.size
    structured = []
    # uniform: the largest single keep ratio per network under its MACs target
    ug, ur = uniform_spec(gt.model, gt.target_macs, size, criterion=gt.criterion, multiple=gt.multiple)
    ud, udr = uniform_spec(dt.model, dt.target_macs, size, criterion=dt.criterion, multiple=dt.multiple)
    structured.append(("uniform", f"one keep ratio per network (G {ur:.3f}, D {udr:.3f})", ug, ud))
    # L1: the l1 prior's allocation (one global mean-|w| threshold per network), replayed by action 0.5
    if gt.prior == "l1":
        lg_task, ld_task = gt, dt
    else:
        lg_task = PruningTask(gt.model, size, gt.target_macs, gt.criterion, cfg.min_ratio, gt.multiple, "l1")
        ld_task = PruningTask(dt.model, size, dt.target_macs, dt.criterion, cfg.min_ratio, dt.multiple, "l1")
    lg, ld = constant_pair(lg_task, ld_task, 0.5, cfg.fill_budget)
    structured.append(("l1", "global filter-L1 threshold per network (l1 prior, action 0.5)", lg, ld))
    if marl is not None:
        bs = marl["best_spec"]
        if bs and bs.get("generator") and bs.get("discriminator"):
            it = (bs.get("best") or {}).get("iteration")
            structured.append(("marl-best", f"MARL best pair (best_spec.json, iteration {it})",
                               bs["generator"], bs["discriminator"]))
        elif marl["best"]:
            b = marl["best"]
            structured.append(("marl-best", f"MARL best pair (search state, iteration {b.get('iteration')})",
                               gt.spec(b["generator_counts"]), dt.spec(b["discriminator_counts"])))
        greedy = marl["greedy"]
        if greedy and greedy.get("generator_counts"):
            structured.append(("marl-greedy", f"MARL final policies' greedy pick (iteration {greedy.get('iteration')})",
                               gt.spec(greedy["generator_counts"]), dt.spec(greedy["discriminator_counts"])))
        elif marl["history"] and "generator_greedy_ratios" in marl["history"][-1]:
            h = marl["history"][-1]
            counts = [{g.name: int(round(h[f"{a}_greedy_ratios"][g.name] * g.size)) for g in task.groups}
                      for a, task in (("generator", gt), ("discriminator", dt))]
            structured.append(("marl-greedy", f"MARL greedy pick of iteration {h.get('iteration')} (from its "
                               "keep ratios)", gt.spec(counts[0]), dt.spec(counts[1])))
    cands, seen = [], {}

    def add(label, source, g, d):
        key = spec_key(g, d)
        if key in seen:
            seen[key].setdefault("same_as", []).append(label)
            return False
        c = {"label": label, "source": source, "key": key, "generator": g, "discriminator": d,
             "generator_macs_ratio": gt.macs(_counts(g)) / gt.full_macs,
             "discriminator_macs_ratio": dt.macs(_counts(d)) / dt.full_macs}
        seen[key] = c
        cands.append(c)
        return True

    for s in structured:
        add(*s)
    want = max(0, n - len(cands))
    if want:
        # random_spec_pairs draws sequentially from one seeded generator: a longer list has the same
        # prefix, so the pairs used do not depend on how many extra were drawn for the duplicates
        pool = random_spec_pairs(problem, 2 * want + 8, seed)
        i = 0
        for g, d in pool:
            if add(f"random-{i:02d}", f"random actions (prior {gt.prior}, seed {seed})", g, d):
                i += 1
            if i >= want:
                break
    return cands


# ---------------------------------------------------------------------------------------------- results

def _read(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def score_backend(backend, cands: list[dict], k: int, settings: dict, cdir, bar) -> None:
    """Every candidate's backend scores at this K (stored in its result.json as soon as it has them)."""
    from orchestration.rundir import write_json

    for c in cands:
        if k in c["backend"]:
            bar.update(1)
            continue
        s = backend.evaluate(c["generator"], c["discriminator"])
        m = s.metrics
        c["backend"][k] = {"reward": float(s.generator), "discriminator": float(s.discriminator),
                           "psnr": float(m["psnr_vs_teacher"]), "density": float(m.get("density", float("nan"))),
                           "rec_l1": float(m.get("rec_l1", float("nan"))), "cost_s": float(s.cost_s), "cached": bool(s.cached),
                           "settings": settings}
        write_json(cdir(c) / "result.json", _record(c))
        bar.set_postfix(cand=c["label"], r_g=f"{s.generator:.3f}", psnr=f"{m['psnr_vs_teacher']:.2f}")
        bar.update(1)


def _record(c: dict) -> dict:
    out = {k: v for k, v in c.items() if k not in ("generator", "discriminator", "backend")}
    out["backend"] = {str(k): v for k, v in c["backend"].items()}
    out["generator_counts"], out["discriminator_counts"] = _counts(c["generator"]), _counts(c["discriminator"])
    return out


def full_finetune(c: dict, teacher: Path, args, settings: dict, cdir) -> None:
    """The candidate's full fine-tune (test-split before/after); resumes an unfinished one."""
    from gan.train import checkpoint as ckpt
    from orchestration.finetune import finetune
    from orchestration.requests import FinetuneRequest
    from orchestration.rundir import write_json

    d = cdir(c)
    spec_path = d / "spec.json"
    write_json(spec_path, {"generator": c["generator"], "discriminator": c["discriminator"]})
    ft_dir = d / "finetune"
    resume = ckpt.latest(ft_dir) is not None and not (ft_dir / "finetune.json").is_file()
    if ft_dir.exists() and not resume:
        shutil.rmtree(ft_dir)
    steps = args.finetune_steps
    every = max(1, steps // FINETUNE_CHECKPOINTS) if steps >= 5 * FINETUNE_CHECKPOINTS else 0
    t0 = time.perf_counter()
    r = finetune(FinetuneRequest(teacher, spec_path, ft_dir, objective=args.objective, steps=steps,
                                 backend=args.finetune_backend, quiet=True, export_onnx=False, seed=args.seed,
                                 threads=args.threads, resume=resume, ckpt_every=every))
    wall = time.perf_counter() - t0
    if r.get("eval_split") not in ("test", "val"):
        raise RuntimeError(f"{ft_dir}: the fine-tune reported on split {r.get('eval_split')!r}, expected test")
    shutil.rmtree(ft_dir / "checkpoints", ignore_errors=True)  # only a resume needed them
    c["final"] = {"before": r["before"], "after": r["after"], "eval_split": r["eval_split"],
                  "eval_items": r.get("eval_items"), "macs": r["macs"], "teacher_macs": r["teacher_macs"],
                  "train_seconds": float(r["train_seconds"]), "wall_seconds": wall, "resumed": resume,
                  "steps_per_sec": r.get("steps_per_sec"), "settings": settings}
    write_json(d / "result.json", _record(c))


# ---------------------------------------------------------------------------------------------- statistics

def _spearman_perm_p(x, y, resamples: int = 9999) -> float:
    """Two-sided permutation p-value of Spearman's ρ: every pairing for n ≤ 8, else ``resamples``
    seeded random ones ((hits + 1) / (resamples + 1))."""
    import itertools

    from scipy.stats import rankdata

    rx, ry = rankdata(x), rankdata(y)
    rx, ry = (rx - rx.mean()) / np.linalg.norm(rx - rx.mean()), (ry - ry.mean()) / np.linalg.norm(ry - ry.mean())
    rho = abs(float(rx @ ry)) - 1e-12
    n = len(rx)
    if n <= 8:
        perms = np.array(list(itertools.permutations(range(n))))
        return float(np.mean(np.abs(ry[perms] @ rx) >= rho))
    rng = np.random.default_rng(0)
    perms = np.argsort(rng.random((resamples, n)), axis=1)
    return float((np.sum(np.abs(ry[perms] @ rx) >= rho) + 1) / (resamples + 1))


def rank_stats(x, y, labels) -> dict:
    """How well ranking by ``x`` (backend) ranks by ``y`` (final test PSNR)."""
    from scipy import stats

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    labels = [lab for lab, o in zip(labels, ok) if o]
    n = int(len(x))
    out = {"n": n, "spearman": math.nan, "spearman_p": math.nan, "spearman_p_permutation": math.nan,
           "kendall": math.nan, "kendall_p": math.nan}
    if n == 0:
        return out
    if n >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
        rho, p = stats.spearmanr(x, y)
        tau, pt = stats.kendalltau(x, y)  # exact p for small n without ties
        # spearmanr's p is asymptotic (a t approximation: 0 for a perfect ρ at n = 4); the permutation
        # p of the same statistic is exact up to n = 8 and Monte Carlo (9999 resamples) above
        out.update(spearman=float(rho), spearman_p=float(p), spearman_p_permutation=_spearman_perm_p(x, y),
                   kendall=float(tau), kendall_p=float(pt))
    pick, best = int(np.argmax(x)), int(np.argmax(y))
    out.update(pick=labels[pick], best=labels[best], pick_final_psnr=float(y[pick]), best_final_psnr=float(y[best]),
               top1_agrees=bool(y[pick] >= y[best]), pick_final_rank=int(1 + np.sum(y > y[pick])),
               regret_db=float(y[best] - y[pick]), final_psnr_range_db=float(np.ptp(y)))
    return out


def _fmt(v, spec=".3f"):
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def _stat_row(k, name: str, s: dict, cost) -> str:
    rho = (f"{_fmt(s['spearman'], '+.3f')} ({_fmt(s['spearman_p'], '.3g')} / "
           f"{_fmt(s['spearman_p_permutation'], '.3g')})")
    tau = f"{_fmt(s['kendall'], '+.3f')} ({_fmt(s['kendall_p'], '.3g')})"
    return (f"| {k} | {name} | {s['n']} | {rho} | {tau} | {s.get('pick', '—')} | "
            f"{s.get('pick_final_rank', '—')} / {s['n']} | {'yes' if s.get('top1_agrees') else 'no'} | "
            f"{_fmt(s.get('regret_db'), '.2f')} | {_fmt(cost, '.2f')} |")


def markdown(result: dict) -> str:
    ks, rows = result["settings"]["ks"], []
    rows.append("| K | signal | n | Spearman ρ (p asymptotic / permutation) | Kendall τ (p) | backend's pick | "
                "its final rank | top-1 agrees | regret (dB) | s / evaluation |")
    rows.append("|---|---|---|---|---|---|---|---|---|---|")
    for k in ks:
        for sig, name in SIGNALS.items():
            rows.append(_stat_row(k, name, result["per_k"][str(k)][sig],
                                  result["cost"]["backend_s_per_eval"].get(str(k))))
    rows.append(_stat_row("—", "reference: test PSNR before fine-tune",
                          result["reference"]["test_psnr_before_finetune"], None))
    rows.append("")
    head = "| candidate | source | G MACs | D MACs | " + " | ".join(f"K={k}: r_G / PSNR" for k in ks) + \
        " | final test PSNR before → after (dB) |"
    rows += [head, "|" + "---|" * (5 + len(ks))]
    for c in sorted(result["candidates"], key=lambda c: -(c.get("final") or {}).get("after", {}).get(
            "psnr_vs_teacher", -math.inf)):
        f = c.get("final") or {}
        ba = (f"{f['before']['psnr_vs_teacher']:.2f} → **{f['after']['psnr_vs_teacher']:.2f}**" if f else "—")
        cells = []
        for k in ks:
            b = c["backend"].get(str(k))
            cells.append(f"{b['reward']:.3f} / {b['psnr']:.2f}" if b else "—")
        label = c["label"] + (f" (= {', '.join(c['same_as'])})" if c.get("same_as") else "")
        rows.append(f"| {label} | {c['source']} | {100 * c['generator_macs_ratio']:.1f} % | "
                    f"{100 * c['discriminator_macs_ratio']:.1f} % | " + " | ".join(cells) + f" | {ba} |")
    return "\n".join(rows)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = result["settings"]["ks"]
    fig, axes = plt.subplots(1, len(ks), figsize=(4.2 * len(ks), 3.8), squeeze=False)
    for ax, k in zip(axes[0], ks):
        pts = [(c["backend"][str(k)]["reward"], c["final"]["after"]["psnr_vs_teacher"], c["label"])
               for c in result["candidates"] if str(k) in c["backend"] and c.get("final")]
        for x, y, lab in pts:
            rnd = lab.startswith("random")
            ax.scatter([x], [y], c="tab:gray" if rnd else "tab:red", s=18 if rnd else 36, zorder=2 if rnd else 3)
            if not rnd:
                ax.annotate(lab, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        s = result["per_k"][str(k)]["reward"]
        ax.set_title(f"K = {k}: ρ = {_fmt(s['spearman'], '+.2f')}, τ = {_fmt(s['kendall'], '+.2f')} (n = {s['n']})",
                     fontsize=9)
        ax.set_xlabel("backend reward r_G (search items, train split)", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"PSNR vs teacher after {result['settings']['finetune_steps']} steps "
                          f"({result['settings'].get('eval_split') or 'test'} split, dB)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- main

def main(argv=None) -> dict:
    args = parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "python benchmarks/reward_fidelity.py " + " ".join(shlex.quote(str(a)) for a in argv)
    from tqdm.auto import tqdm

    from envs.problem import ProblemConfig, build_problem
    from gan.data.splits import SEARCH_SPLIT
    from gan.determinism import ProcessSettings, controlled
    from orchestration.rundir import write_json

    t_start = time.perf_counter()
    marl = load_marl_run(args.marl_run) if args.marl_run else None
    mp = (marl or {}).get("problem") or {}
    mb = mp.get("backend_config") or {}
    if args.teacher:
        teacher = Path(args.teacher)
    elif mp.get("teacher"):
        teacher = Path(mp["teacher"])
    else:
        from orchestration.teacher_cache import ensure_teacher

        teacher = ensure_teacher("tiny")
    teacher = teacher.resolve()
    macs_target = args.macs_target if args.macs_target is not None else float(mp.get("macs_target", 0.25))
    eval_items = args.eval_items or mb.get("eval_items") or _preset_eval_items(teacher) or 8
    train_items = args.train_items or mb.get("train_items") or 16
    prior = args.random_prior or mp.get("prior") or "l1"
    notes = []
    if marl is not None:
        if mp.get("teacher") and Path(mp["teacher"]).resolve() != teacher:
            notes.append(f"the MARL run searched teacher {mp['teacher']}, not {teacher}")
        if "macs_target" in mp and float(mp["macs_target"]) != macs_target:
            notes.append(f"the MARL run's MACs target is {mp['macs_target']}, this benchmark's {macs_target}")

    out = Path(args.out)
    cands_root = out / "candidates"
    if not args.resume and cands_root.is_dir() and any(cands_root.glob("*/result.json")):
        raise SystemExit(f"{out} already holds candidate results; pass --resume to reuse them or choose another --out")
    cands_root.mkdir(parents=True, exist_ok=True)

    def cdir(c):
        return cands_root / f"{c['label']}-{c['key'][:10]}"

    problem_base = {"teacher": str(teacher), "macs_target": macs_target, "prior": prior, "seed": args.seed,
                    **{k: mp[k] for k in ("criterion", "min_ratio", "multiple", "fill_budget", "d_macs_target")
                       if k in mp}}

    def problem_at(k):
        return build_problem(ProblemConfig(**problem_base, backend="local", backend_config={
            "finetune_steps": k, "eval_items": eval_items, "train_items": train_items, "objective": args.objective}))

    #: the supernet column: the marl run's supernet backend (its cached supernet, its options), or the defaults
    sn_config = {**(mb if mp.get("backend") == "supernet" else {}), "eval_items": eval_items, "finetune_steps": 0}

    def backend_settings(k):
        if k == "supernet":
            return {"teacher": str(teacher), "backend": "supernet", **sn_config, "seed": args.seed,
                    "split": SEARCH_SPLIT}
        return {"teacher": str(teacher), "finetune_steps": k, "eval_items": eval_items, "train_items": train_items,
                "objective": args.objective, "seed": args.seed, "split": SEARCH_SPLIT}

    sources = [*args.ks, *(["supernet"] if args.supernet else [])]

    final_settings = {"teacher": str(teacher), "steps": args.finetune_steps, "objective": args.objective,
                      "backend": args.finetune_backend, "seed": args.seed}

    with controlled(args.seed, ProcessSettings.default(args.threads)) as process:
        first = problem_at(args.ks[0])
        size = first.size
        cands = build_candidates(first, marl, args.candidates, args.seed)
        reused = {"backend": 0, "final": 0}
        for c in cands:  # --resume: what an earlier run with the same settings already measured
            c["backend"], c["final"] = {}, None
            old = _read(cdir(c) / "result.json") if args.resume else None
            if old:
                for k in sources:
                    b = old.get("backend", {}).get(str(k))
                    if b and b.get("settings") == backend_settings(k):
                        c["backend"][k] = b
                        reused["backend"] += 1
                f = old.get("final")
                if f and f.get("settings") == final_settings:
                    c["final"] = f
                    reused["final"] += 1
            cdir(c).mkdir(parents=True, exist_ok=True)
            write_json(cdir(c) / "result.json", _record(c))
        write_json(out / "candidates.json", [_record(c) for c in cands])
        print(f"{len(cands)} candidates at {macs_target:g} of the teacher's generator MACs ({teacher}, {size}²): "
              + ", ".join(c["label"] for c in cands)
              + (f"; reusing {reused['backend']} backend scores and {reused['final']} fine-tunes" if args.resume else ""),
              flush=True)

        with progress(total=len(cands) * len(sources), desc="backend scores") as bar:
            for k in sources:
                if all(k in c["backend"] for c in cands):
                    bar.update(len(cands))
                    continue
                if k == "supernet":
                    problem = build_problem(ProblemConfig(**problem_base, backend="supernet", backend_config=sn_config))
                else:
                    problem = first if k == args.ks[0] else problem_at(k)
                score_backend(problem.backend, cands, k, backend_settings(k), cdir, bar)
                del problem

        todo = [c for c in cands if c["final"] is None]
        with progress(total=len(cands), initial=len(cands) - len(todo), desc="full fine-tunes") as bar:
            for c in todo:
                bar.set_postfix(cand=c["label"])
                full_finetune(c, teacher, args, final_settings, cdir)
                f = c["final"]
                tqdm.write(f"  {c['label']}: {f['eval_split']} PSNR vs teacher {f['before']['psnr_vs_teacher']:.2f} → "
                           f"{f['after']['psnr_vs_teacher']:.2f} dB ({f['wall_seconds']:.0f} s)")
                bar.update(1)

    records = [_record(c) for c in cands]
    labels = [c["label"] for c in cands]
    final = [c["final"]["after"]["psnr_vs_teacher"] for c in cands]
    splits = sorted({c["final"]["eval_split"] for c in cands})
    per_k = {str(k): {sig: rank_stats([c["backend"][k][sig] for c in cands], final, labels) for sig in SIGNALS}
             for k in sources}
    reference = {"test_psnr_before_finetune": rank_stats(
        [c["final"]["before"]["psnr_vs_teacher"] for c in cands], final, labels)}

    def mean(xs):
        xs = [x for x in xs if x is not None]
        return float(np.mean(xs)) if xs else None

    cost = {"backend_s_per_eval": {str(k): mean([c["backend"][k]["cost_s"] for c in cands
                                                  if not c["backend"][k].get("cached")]) for k in sources},
            "finetune_wall_s": mean([c["final"]["wall_seconds"] for c in cands if not c["final"]["resumed"]]),
            "finetune_train_s": mean([c["final"]["train_seconds"] for c in cands if not c["final"]["resumed"]]),
            "total_s_this_invocation": time.perf_counter() - t_start}
    if splits != ["test"]:
        notes.append(f"the fine-tunes reported on split(s) {splits}: the dataset has no test split")
    result = {
        "command": command,
        "settings": {"teacher": str(teacher), "size": size, "macs_target": macs_target, "ks": sources,
                     "candidates": len(cands), "finetune_steps": args.finetune_steps,
                     "finetune_backend": args.finetune_backend, "objective": args.objective, "seed": args.seed,
                     "eval_items": eval_items, "train_items": train_items, "random_prior": prior,
                     "backend_split": SEARCH_SPLIT, "eval_split": splits[0] if len(splits) == 1 else splits,
                     "finetune_eval_items": records[0]["final"].get("eval_items"),
                     "problem": problem_base, "marl_run": marl and {k: marl[k] for k in ("dir", "checkpoint", "iteration")}},
        "process": process, "cost": cost, "notes": notes, "per_k": per_k, "reference": reference,
        "candidates": records,
    }
    write_json(out / "reward_fidelity.json", result)
    plot(result, out / "reward_fidelity.png")

    print(f"\n## Reward fidelity: backend score (search items, {SEARCH_SPLIT} split) vs PSNR vs teacher after a "
          f"{args.finetune_steps}-step fine-tune ({result['settings']['eval_split']} split)\n")
    print(f"command: `{command}`\n")
    s = result["settings"]
    print(f"teacher {teacher} ({size}²), MACs target {macs_target:g}, {len(cands)} candidates "
          f"({', '.join(sorted({lab.split('-')[0] for lab in labels}))}), backend K ∈ {args.ks} on {eval_items} "
          f"search items (+{train_items} train items for the K steps), full fine-tune {args.finetune_steps} steps "
          f"({args.objective}, {args.finetune_backend}) scored on {s['finetune_eval_items']} {s['eval_split']} items, "
          f"seed {args.seed}, {process['threads']} torch threads\n")
    print(markdown(result))
    print("\ncost: " + ", ".join(f"K={k}: {_fmt(v, '.2f')} s / evaluation" for k, v in cost["backend_s_per_eval"].items())
          + f"; full fine-tune {_fmt(cost['finetune_wall_s'], '.1f')} s wall ({_fmt(cost['finetune_train_s'], '.1f')} s "
          f"training) each; this invocation {cost['total_s_this_invocation']:.0f} s")
    for n in notes:
        print(f"note: {n}")
    print(f"wrote {out / 'reward_fidelity.json'} and {out / 'reward_fidelity.png'}")
    return result


if __name__ == "__main__":
    from gan.determinism import pin_hash_seed

    pin_hash_seed()  # no RLlib here, but the same convention as the ganprune entry point
    main()
