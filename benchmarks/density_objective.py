"""Density objective vs plain L1-to-teacher distillation at equal MACs and equal steps.

Both runs start from the same teacher, the same uniform L1-saliency spec at the MACs target (25 % by
default) and the same seed; only the objective differs (gan.train.distill). Prints PSNR/SSIM vs the
teacher and fid_proxy (val split, 32 images) before and after each, plus wall time.

    python benchmarks/density_objective.py                      # trains a tiny teacher first
    python benchmarks/density_objective.py --teacher runs/teacher --steps 500 --backend deepspeed
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gan import export as gexport  # noqa: E402
from gan.pruning.targets import resolve_macs_target, uniform_spec  # noqa: E402
from orchestration.finetune import finetune, read_teacher, tiny_teacher  # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--teacher", help="teacher run directory (default: train a tiny one here)")
    ap.add_argument("--teacher-steps", type=int, default=200, help="steps of the tiny teacher")
    ap.add_argument("--size", type=int, default=32, help="image size of the tiny teacher")
    ap.add_argument("--macs-target", type=float, default=0.25)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--backend", choices=["torch", "deepspeed"], default="torch")
    ap.add_argument("--out", help="work directory (default: a temporary one)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

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

    rows = {}
    for objective in ("l1", "density"):
        t1 = time.perf_counter()
        r = finetune(tdir, spec_path, work / f"ft_{objective}", objective=objective, steps=args.steps,
                     backend=args.backend, overwrite=True, quiet=True, export_onnx=False)
        rows[objective] = {"before": r["before"], "after": r["after"], "seconds": time.perf_counter() - t1,
                           "train_seconds": r["train_seconds"], "macs": r["macs"],
                           "teacher_macs": r["teacher_macs"]}

    print(f"teacher {tdir} ({'trained here in %.0f s' % teacher_s if not args.teacher else 'given'}), "
          f"{size}², uniform keep ratio {ratio:.3f}, {args.steps} steps, backend {args.backend}")
    print(f"{'objective':<10}{'MACs %':>8}{'PSNR_T before':>15}{'PSNR_T after':>14}{'SSIM_T after':>14}"
          f"{'fid_proxy after':>17}{'train s':>9}")
    for name, r in rows.items():
        a, b = r["after"], r["before"]
        print(f"{name:<10}{100 * r['macs'] / r['teacher_macs']:>8.1f}{b['psnr_vs_teacher']:>15.2f}"
              f"{a['psnr_vs_teacher']:>14.2f}{a['ssim_vs_teacher']:>14.3f}{a['fid_proxy']:>17.2f}"
              f"{r['train_seconds']:>9.1f}")
    result = {"teacher": str(tdir), "size": size, "keep_ratio": ratio, "steps": args.steps,
              "backend": args.backend, "results": rows}
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
