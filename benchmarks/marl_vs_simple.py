"""MARL vs uniform vs L1-magnitude pruning at the same MACs target and the same fine-tune budget,
and the peer-exchange ablation (β = 0 vs β > 0).  One run; prints one table and ratios.

Every method goes through ``ganprune prune`` (orchestration.prune.prune) from the same teacher, so
each pruned pair is fine-tuned by the same density objective for the same steps and evaluated the
same way (PSNR/SSIM vs the teacher on its val split, fid_proxy).  Search costs are reported apart.

    python benchmarks/marl_vs_simple.py --preset small                 # trains/reuses the small teacher
    python benchmarks/marl_vs_simple.py --teacher runs/teacher --iterations 10 --finetune-steps 300
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestration.config import load_preset  # noqa: E402
from orchestration.prune import prune  # noqa: E402
from orchestration.teacher_cache import ensure_teacher  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--teacher", help="teacher run directory (default: the preset's cached teacher)")
    ap.add_argument("--teacher-steps", type=int, help="steps of the cached teacher (default per preset)")
    ap.add_argument("--macs-target", type=float, default=0.25)
    ap.add_argument("--iterations", type=int, help="MARL iterations (default per preset)")
    ap.add_argument("--episodes", type=int, help="MARL episodes per iteration (default per preset)")
    ap.add_argument("--backend-steps", type=int, help="fine-tune steps per candidate (default per preset)")
    ap.add_argument("--finetune-steps", type=int, help="fine-tune steps of every method's pair (default per preset)")
    ap.add_argument("--beta", type=float, default=0.5, help="peer weight of the MARL run (the ablation uses 0)")
    ap.add_argument("--methods", default="uniform,l1,marl,marl-beta0",
                    help="uniform, l1, marl, marl-beta0 (no peer exchange), marl-noprior (absolute actions)")
    ap.add_argument("--out", help="keep the runs here (default: a temp dir)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    pre = load_preset(args.preset)
    teacher = args.teacher or str(ensure_teacher(args.preset, steps=args.teacher_steps))
    root = Path(args.out or tempfile.mkdtemp(prefix="marl_vs_simple_"))
    common = dict(teacher=teacher, preset=args.preset, macs_target=args.macs_target, quiet=True, track=False,
                  finetune_steps=args.finetune_steps if args.finetune_steps is not None else pre.marl.finetune_steps,
                  export_onnx=False)
    rows = {}
    for m in args.methods.split(","):
        method = "marl" if m.startswith("marl") else m
        kw = dict(iterations=args.iterations, episodes=args.episodes, backend_steps=args.backend_steps,
                  beta=0.0 if m == "marl-beta0" else args.beta,
                  prior="none" if m == "marl-noprior" else "l1") if method == "marl" else {}
        t0 = time.perf_counter()
        s = prune(method, out=root / m, overwrite=True, **common, **kw)
        rows[m] = {"macs_ratio": s["macs_ratio"], "params": s["params"], "latency_ms": s["latency_ms"],
                   "before": s["fidelity_before_finetune"], "after": s["fidelity"], "search_s": s["search_s"],
                   "finetune_s": s["finetune_s"], "wall_s": round(time.perf_counter() - t0, 1),
                   "generator_keep": s["generator_keep"]}
        print(f"{m}: PSNR vs teacher {s['fidelity_before_finetune']['psnr_vs_teacher']:.2f} → "
              f"{s['fidelity']['psnr_vs_teacher']:.2f} dB at {s['macs_ratio']:.1%} MACs "
              f"(search {s['search_s']:.0f} s, fine-tune {s['finetune_s']:.0f} s)", flush=True)

    base = rows.get("uniform")
    print(f"\nteacher {teacher}, preset {args.preset}, MACs target {args.macs_target:g}, "
          f"fine-tune {common['finetune_steps']} steps (density objective) for every method")
    print(f"{'method':<12}{'MACs':>8}{'params':>9}{'ms':>8}{'PSNR_T pre':>12}{'PSNR_T':>9}{'SSIM_T':>8}"
          f"{'fid_proxy':>11}{'search s':>10}{'Δ PSNR_T vs uniform':>22}")
    for m, r in rows.items():
        a, b = r["after"], r["before"]
        delta = a["psnr_vs_teacher"] - base["after"]["psnr_vs_teacher"] if base else float("nan")
        print(f"{m:<12}{r['macs_ratio']:>8.1%}{r['params']:>9}{r['latency_ms']:>8.2f}{b['psnr_vs_teacher']:>12.2f}"
              f"{a['psnr_vs_teacher']:>9.2f}{a['ssim_vs_teacher']:>8.3f}{a.get('fid_proxy', float('nan')):>11.3f}"
              f"{r['search_s']:>10.0f}{delta:>+22.2f}")
    result = {"teacher": teacher, "preset": args.preset, "macs_target": args.macs_target,
              "finetune_steps": common["finetune_steps"], "rows": rows, "out": str(root)}
    if args.json:
        print(json.dumps(result, default=float))
    return result


if __name__ == "__main__":
    main()
