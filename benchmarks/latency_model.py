"""How well does the per-layer latency model predict measured latency? (issue #17 must-show: median error
within ±10 % over 20 random specs, ONNX Runtime, 2 threads.)

Builds (or reuses from the cache) the latency model of a generator at a deployment size, then exports and
measures 20 random pruned specs it was not calibrated on (``gan.latency_model.model_error``).  The generator:
a teacher run's (``--teacher DIR``) or a random-weight ResNet (``--ngf 64 --blocks 9``: the reference
pix2pix/CycleGAN generator; latency depends on shapes only).  Needs idle cores: timings shared with other
work are noise.

    .venv/bin/python benchmarks/latency_model.py --ngf 64 --blocks 9 --size 256 --threads 2 [--specs 20] [--json]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from gan.latency_model import LatencyModel, model_error
from gan.models import ResnetGenerator
from gan.teacher_run import load_teacher_run
from orchestration.plots import latency_model_error


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", help="a teacher run directory (default: a random-weight ResNet)")
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=9)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "torch"])
    ap.add_argument("--specs", type=int, default=20)
    ap.add_argument("--plot", help="predicted vs measured PNG")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = load_teacher_run(args.teacher).generator if args.teacher else \
        ResnetGenerator(ngf=args.ngf, n_blocks=args.blocks)
    t0 = time.perf_counter()
    lm = LatencyModel(model.eval(), args.size, runtime=args.runtime, threads=args.threads, quiet=False)
    build_s = time.perf_counter() - t0
    err = model_error(model, lm, n=args.specs, quiet=False)
    for r in err["rows"]:
        print(f"MACs {r['macs_ratio']:6.1%}  predicted {r['predicted_ms']:8.2f} ms  measured {r['measured_ms']:8.2f} ms"
              f"  error {r['error']:+6.1%}")
    print(f"{args.runtime}, {lm.threads} threads, {args.size}²: median |error| {err['median_abs_error']:.1%} (median "
          f"{err['median_error']:+.1%}, worst {err['max_abs_error']:.1%}) over {args.specs} random specs; model built "
          f"in {build_s:.0f} s ({lm.describe()['points']} layer timings; α {lm.coef[0]:.2f}, β {lm.coef[1]:.3g}, "
          f"γ {lm.coef[2]:.3g}); teacher predicted {lm.full:.2f} ms")
    if args.plot:
        latency_model_error(err["rows"], args.plot, title=f"{args.runtime}, {lm.threads} threads, {args.size}²")
    if args.json:
        print(json.dumps({**err, "model": lm.describe(), "build_s": build_s}))


if __name__ == "__main__":
    main()
