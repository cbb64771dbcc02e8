"""Density objective vs plain L1-to-teacher distillation at equal MACs and equal steps.

Every run starts from the same teacher, the same uniform L1-saliency spec at the MACs target (25 % by
default) and the same seed; only the objective (gan.train.distill) and its knobs differ. Prints PSNR /
SSIM vs the teacher and fid_proxy (the dataset's report split: test when it has one) before and after
each, train wall time and steps/s, and each run's difference to the "l1" run of the same seed, as mean
± standard error over seeds (measured in this one process).

    python benchmarks/density_objective.py                      # trains a tiny teacher first
    python benchmarks/density_objective.py --teacher runs/teacher --steps 300 --backend deepspeed \\
        --variant dens_x4:lambda_dens=4 --variant k8:k_neighbors=8 --seeds 0,1
    python benchmarks/density_objective.py --teacher ~/.cache/ganprune/teachers/tiny-labels2textures-c8fb5a74 \
        --steps 200 --seeds 0,1,2 --variant jitter:neighbors=jitter --out runs/density-memory
        # the README table with today's defaults (it ran as --variant memory:neighbors=memory when jitter was the default)

A variant is NAME:key=value,...; keys are fields of ``DistillConfig`` (lambda_*) or ``DensityConfig``
(k_neighbors, bandwidth_factor, gamma, feature, ...); its objective is "density" unless objective=l1.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: gan, orchestration, tests

import torch  # noqa: E402

from gan import export as gexport  # noqa: E402
from gan.losses.density import DensityConfig  # noqa: E402
from gan.pruning.targets import resolve_macs_target, uniform_spec  # noqa: E402
from gan.train.distill import DistillConfig  # noqa: E402
from orchestration.benchmark import mean_std_se  # noqa: E402
from orchestration.finetune import finetune, read_teacher  # noqa: E402
from orchestration.requests import FinetuneRequest  # noqa: E402
from tests.teachers import tiny_teacher  # noqa: E402

METRICS = ("psnr_vs_teacher", "ssim_vs_teacher", "fid_proxy")


def parse_variant(text: str) -> tuple[str, dict, dict, str]:
    """'NAME:k=v,k=v' → (name, distill overrides, density overrides, objective)."""
    name, _, body = text.partition(":")
    distill_keys = {f.name for f in dataclasses.fields(DistillConfig)}
    density_keys = {f.name for f in dataclasses.fields(DensityConfig)}
    dist, dens, objective = {}, {}, "density"
    for item in filter(None, body.split(",")):
        k, _, v = item.partition("=")
        k = k.strip()
        if k == "objective":
            objective = v.strip()
            continue
        try:
            val = json.loads(v)
        except json.JSONDecodeError:
            val = v.strip()
        if k in distill_keys:
            dist[k] = val
        elif k in density_keys:
            dens[k] = val
        else:
            raise SystemExit(f"variant {name!r}: unknown knob {k!r}; DistillConfig has "
                             f"{sorted(distill_keys)}, DensityConfig has {sorted(density_keys)}")
    return name, dist, dens, objective


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", help="teacher run directory (default: train a tiny one here)")
    ap.add_argument("--teacher-steps", type=int, default=200, help="steps of the tiny teacher")
    ap.add_argument("--size", type=int, default=32, help="image size of the tiny teacher")
    ap.add_argument("--macs-target", type=float, default=0.25)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--backend", choices=["torch", "deepspeed"], default="torch")
    ap.add_argument("--seeds", default="0", help="comma-separated fine-tuning seeds (default 0)")
    ap.add_argument("--variant", action="append", default=[],
                    help="extra run NAME:key=value,... (repeatable); see the module docstring")
    ap.add_argument("--no-default", action="store_true", help="skip the default 'density' run")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--out", help="work directory (default: a temporary one)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    work = Path(args.out or tempfile.mkdtemp(prefix="density_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tdir = Path(args.teacher) if args.teacher else tiny_teacher(
        work / "teacher", data_root=work / "data", size=args.size, steps=args.teacher_steps)
    teacher_s = time.perf_counter() - t0
    size = int(read_teacher(tdir)["size"])
    g = gexport.load(Path(tdir) / json.loads((Path(tdir) / "teacher.json").read_text())["generator"])
    spec, ratio = uniform_spec(g, resolve_macs_target(g, args.macs_target, size), size, criterion="l1")
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps({"spec": spec, "keep_ratio": ratio}))

    runs = [("l1", {}, {}, "l1")] + ([] if args.no_default else [("density", {}, {}, "density")])
    runs += [parse_variant(v) for v in args.variant]
    seeds = [int(s) for s in args.seeds.split(",")]
    rows: dict[str, dict] = {}
    for seed in seeds:
        for name, dist, dens, objective in runs:
            r = finetune(FinetuneRequest(tdir, spec_path, work / f"ft_{name}_s{seed}", objective=objective,
                                         steps=args.steps, backend=args.backend, overwrite=True, quiet=True,
                                         export_onnx=False, seed=seed, distill=dist, density=dens))
            row = rows.setdefault(name, {"objective": objective, "distill": dist, "density": dens,
                                         "macs": r["macs"], "teacher_macs": r["teacher_macs"], "seeds": {}})
            last = r["history"][-1] if r["history"] else {}
            row["seeds"][seed] = {"before": r["before"], "after": r["after"],
                                  "train_seconds": r["train_seconds"], "steps_per_sec": r["steps_per_sec"],
                                  "last": {k: v for k, v in last.items()
                                           if k.startswith(("density", "gan_nb", "loss_d", "l1"))}}
            if not args.json:
                a = r["after"]
                print(f"  {name} seed {seed}: PSNR_T {a['psnr_vs_teacher']:.2f} SSIM_T "
                      f"{a['ssim_vs_teacher']:.3f} fid_proxy {a['fid_proxy']:.2f} "
                      f"({r['train_seconds']:.0f} s, {r['steps_per_sec']:.2f} steps/s)", flush=True)

    def se(values) -> float:
        return mean_std_se(values)["se"]

    def mean(name, key, where="after"):
        return statistics.mean(s[where][key] if where else s[key] for s in rows[name]["seeds"].values())

    for name, row in rows.items():
        row["mean"] = {**{k: mean(name, k) for k in METRICS},
                       "before_psnr_vs_teacher": mean(name, "psnr_vs_teacher", "before"),
                       "train_seconds": mean(name, "train_seconds", None),
                       "steps_per_sec": mean(name, "steps_per_sec", None)}
        row["vs_l1"] = {  # per-seed differences to the l1 run, then averaged
            **{f"d_{k}": statistics.mean(row["seeds"][s]["after"][k] - rows["l1"]["seeds"][s]["after"][k]
                                         for s in seeds) for k in METRICS},
            **{f"se_d_{k}": se([row["seeds"][s]["after"][k] - rows["l1"]["seeds"][s]["after"][k] for s in seeds])
               for k in METRICS},
            "time_ratio": statistics.mean(row["seeds"][s]["train_seconds"]
                                          / rows["l1"]["seeds"][s]["train_seconds"] for s in seeds)}
        row["se"] = {k: se([s["after"][k] for s in row["seeds"].values()]) for k in METRICS}

    print(f"teacher {tdir} ({'trained here in %.0f s' % teacher_s if not args.teacher else 'given'}), "
          f"{size}², uniform keep ratio {ratio:.3f}, {args.steps} steps, backend {args.backend}, "
          f"seeds {seeds}, {torch.get_num_threads()} torch threads")
    print("| run | MACs % | PSNR vs teacher (dB), mean ± SE | Δ vs l1 (paired, ± SE) | SSIM vs teacher | Δ SSIM "
          "| fid_proxy | Δ fid_proxy | train s | time × l1 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        m, d, e = r["mean"], r["vs_l1"], r["se"]
        print(f"| {name} | {100 * r['macs'] / r['teacher_macs']:.1f} | {m['psnr_vs_teacher']:.2f} ± "
              f"{e['psnr_vs_teacher']:.2f} | {d['d_psnr_vs_teacher']:+.2f} ± {d['se_d_psnr_vs_teacher']:.2f} | "
              f"{m['ssim_vs_teacher']:.3f} | {d['d_ssim_vs_teacher']:+.3f} ± {d['se_d_ssim_vs_teacher']:.3f} | "
              f"{m['fid_proxy']:.3f} | {d['d_fid_proxy']:+.3f} ± {d['se_d_fid_proxy']:.3f} | "
              f"{m['train_seconds']:.1f} | {d['time_ratio']:.2f} |")
    result = {"teacher": str(tdir), "size": size, "keep_ratio": ratio, "steps": args.steps,
              "backend": args.backend, "seeds": seeds, "threads": torch.get_num_threads(), "results": rows}
    (work / "density_benchmark.json").write_text(json.dumps(result, indent=1, default=float))
    if args.json:
        print(json.dumps(result, default=float))
    return result


if __name__ == "__main__":
    main()
