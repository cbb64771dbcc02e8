"""Which discriminator should the winning generator be fine-tuned with? (issue #15 item 3)

For each seed, the generator that a finished ``prune --method marl`` search picked (its
``best_spec.json``) is fine-tuned the same way three times, with three choices of D:

* ``agent``: the D agent's own pick (MGGC: the two agents prune G and D together);
* ``teacher-width``: the teacher's D, unpruned;
* ``g-ratio``: D pruned to G's overall keep ratio, uniform by L1 saliency (``finetune``'s default).

It reports the fidelity on the test split (PSNR/SSIM vs the teacher, fid_proxy) and the stability of the
G/D dynamics from every step's losses (``gan.metrics.stability.balance``: the D/G loss ratio's drift and
late variance, D's accuracy and how many steps it saturates), as mean ± standard error over seeds and
the paired difference to ``agent``. Plots the ratio and D's accuracy per choice (mean over seeds) and
logs every run, its per-step curves and the plot to MLflow (experiment ``d-choice``).

    python benchmarks/d_choice.py --teacher ~/.cache/ganprune/teachers/tiny-labels2textures-c8fb5a74 \\
        --search-run 'runs/bench-supernet/marl/seed{seed}' --seeds 0,1,2 --steps 200 --out runs/d-choice

Runs finished with the same settings are kept on a rerun (``--resume``); ``--search-run`` is a path
with ``{seed}`` in it (one search per seed) or one path (the same G for every seed).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root

from gan.metrics.stability import balance  # noqa: E402
from orchestration.benchmark import mean_std_se  # noqa: E402
from orchestration.finetune import finetune  # noqa: E402
from orchestration.requests import FinetuneRequest  # noqa: E402
from orchestration.tracking import Tracker  # noqa: E402

CHOICES = ("agent", "teacher-width", "g-ratio")
FIDELITY = ("psnr_vs_teacher", "ssim_vs_teacher", "fid_proxy")
STABILITY = ("ratio_mean", "ratio_drift_per_100", "ratio_var_late", "d_acc_mean", "d_saturated_steps")


def spec_for(choice: str, best: dict, teacher_dir) -> dict:
    """The fine-tune spec of one D choice around the search's G."""
    if choice == "agent":
        if not best.get("discriminator"):
            raise SystemExit("the search run has no D spec of its own (best_spec.json without 'discriminator'); "
                             "give a --method marl run")
        return {"generator": best["generator"], "discriminator": best["discriminator"]}
    if choice == "teacher-width":
        from gan.teacher_run import load_teacher_run

        disc = load_teacher_run(teacher_dir).discriminator
        return {"generator": best["generator"],
                "discriminator": {g.name: list(range(g.size)) for g in disc.channel_groups()}}
    return {"generator": best["generator"]}  # finetune prunes D to G's keep ratio


def mean_se(values) -> tuple[float, float]:
    """(mean, standard error) of the values that exist (``orchestration.benchmark.mean_std_se``)."""
    r = mean_std_se([v for v in values if v is not None])
    return r["mean"], r["se"]


def run_one(args, seed: int, choice: str, search: Path, out: Path, tracker_uri: str | None) -> dict:
    settings = {"teacher": str(args.teacher), "search": str(search), "steps": args.steps, "seed": seed,
                "choice": choice, "backend": args.backend}
    done = out / "row.json"
    if args.resume and done.is_file():
        row = json.loads(done.read_text())
        if row["settings"] == settings:
            return row
    best = json.loads((search / "best_spec.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    spec = out / "spec.json"
    spec.write_text(json.dumps(spec_for(choice, best, args.teacher)))
    r = finetune(FinetuneRequest(str(args.teacher), str(spec), str(out / "finetune"), steps=args.steps,
                                 backend=args.backend, seed=seed, log_every=1, export_onnx=False, overwrite=True,
                                 quiet=True, threads=args.threads))
    row = {"settings": settings, "after": r["after"], "balance": balance(r["history"]),
           "discriminator_spec": r["discriminator_spec"], "train_seconds": r["train_seconds"],
           "curves": [[h["step"], h["loss_d"] / h["loss_g"], h.get("d_acc")] for h in r["history"]]}
    with Tracker("d-choice", run_name=f"{choice}-seed{seed}", tracking_uri=tracker_uri) as t:
        t.log_params(settings)
        t.log_metrics({**row["after"], **{k: v for k, v in row["balance"].items() if v is not None}})
        for step, ratio, acc in row["curves"]:
            t.log_metrics({"dg_loss_ratio": ratio, **({} if acc is None else {"d_acc": acc})}, step=step)
    done.write_text(json.dumps(row, default=float))
    return row


def plot(rows: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for choice, per_seed in rows.items():
        curves = np.array([r["curves"] for r in per_seed.values()], dtype=float)  # seeds × steps × 3
        steps = curves[0, :, 0]
        ax1.plot(steps, np.nanmean(curves[:, :, 1], 0), label=choice)
        ax2.plot(steps, np.nanmean(curves[:, :, 2], 0), label=choice)
    ax1.set(xlabel="fine-tune step", ylabel="loss_D / loss_G", title="D/G loss ratio (mean over seeds)")
    ax2.set(xlabel="fine-tune step", ylabel="D accuracy", title="D accuracy (1 = saturated)", ylim=(0, 1.02))
    ax1.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher", required=True, help="teacher run directory")
    ap.add_argument("--search-run", required=True, help="a prune --method marl output dir; {seed} is replaced")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=200, help="fine-tune steps (default 200, the benchmark's)")
    ap.add_argument("--backend", choices=["torch", "deepspeed"], default="torch")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tracking-uri", default=None, help="MLflow store (default: sqlite:///<cwd>/mlflow.db)")
    ap.add_argument("--resume", action="store_true", help="keep rows finished with the same settings")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    searches = {s: Path(args.search_run.format(seed=s)) for s in seeds}
    missing = [str(p) for p in searches.values() if not (p / "best_spec.json").is_file()]
    if missing:
        ap.error(f"no best_spec.json in {missing[0]}; give a finished prune --method marl run")
    out = Path(args.out)
    rows = {c: {} for c in CHOICES}
    for seed in seeds:
        for choice in CHOICES:
            r = run_one(args, seed, choice, searches[seed], out / choice / f"seed{seed}", args.tracking_uri)
            rows[choice][seed] = r
            b = r["balance"]
            print(f"{choice} seed {seed}: PSNR vs teacher {r['after']['psnr_vs_teacher']:.2f} dB, D/G ratio "
                  f"{b['ratio_mean']:.3f} (drift {b['ratio_drift_per_100']:+.3f}/100 steps), D acc "
                  f"{b['d_acc_mean']:.2f}, saturated {b['d_saturated_steps']} steps", flush=True)

    summary = {}
    for choice, per_seed in rows.items():
        fid = {k: [per_seed[s]["after"][k] for s in seeds] for k in FIDELITY}
        stab = {k: [per_seed[s]["balance"][k] for s in seeds] for k in STABILITY}
        summary[choice] = {
            **{k: mean_se(v) for k, v in fid.items()},
            **{k: mean_se(v) for k, v in stab.items()},
            "d_vs_agent_psnr": mean_se([per_seed[s]["after"]["psnr_vs_teacher"]
                                        - rows["agent"][s]["after"]["psnr_vs_teacher"] for s in seeds])}
    lines = ["| D choice | PSNR vs teacher (dB) | Δ vs agent (paired) | SSIM vs teacher | fid_proxy | D/G loss ratio "
             "| ratio drift / 100 steps | ratio variance (2nd half) | D accuracy | D-saturated steps |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for choice, m in summary.items():
        f = lambda k, d=2: f"{m[k][0]:.{d}f} ± {m[k][1]:.{d}f}"  # noqa: E731
        lines.append(f"| {choice} | {f('psnr_vs_teacher')} | {m['d_vs_agent_psnr'][0]:+.2f} ± "
                     f"{m['d_vs_agent_psnr'][1]:.2f} | {f('ssim_vs_teacher', 3)} | {f('fid_proxy', 3)} | "
                     f"{f('ratio_mean', 3)} | {f('ratio_drift_per_100', 3)} | {f('ratio_var_late', 4)} | "
                     f"{f('d_acc_mean')} | {f('d_saturated_steps', 0)} |")
    table = "\n".join(lines)
    png = plot(rows, out / "d_choice.png")
    with Tracker("d-choice", run_name="summary", tracking_uri=args.tracking_uri) as t:
        t.log_params({"seeds": args.seeds, "steps": args.steps, "teacher": args.teacher,
                      "search_run": args.search_run})
        t.log_artifact(png)
    (out / "d_choice.md").write_text(table + "\n")
    (out / "d_choice.json").write_text(json.dumps({"summary": summary, "seeds": seeds, "steps": args.steps},
                                                  default=float, indent=1))
    print(table)
    return summary


if __name__ == "__main__":
    main()
