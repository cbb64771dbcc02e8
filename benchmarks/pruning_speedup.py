"""Does physical pruning buy real CPU speed?  ResNet-9 (ngf 64) pruned to 25 % and 10 % of its MACs.

For each resolution and target: MACs ratio, measured torch CPU latency ratio (median of N runs after
warm-up) and ONNX Runtime latency ratio (the minimum over fresh sessions of each one's median, as the latency
model and the sweeps measure; teacher / pruned, same process, same threads).
Channels are picked by filter L1 with one uniform keep ratio, rounded up to multiples of ``--multiples``
(default 8; ``--multiples 1 8 16`` compares what the CPU kernels' channel blocking makes of rounding).
``--aligned`` adds one row per target with L1's widths aligned per group to this CPU's kernel block
(``gan.pruning.align``: the same MACs budget, what ``prune --align auto`` does). ``--fastest`` adds one row
per target with the widths this machine's latency model (``gan.latency_model``, ONNX Runtime) predicts
fastest within the same MACs (97–100 % of the target spent, block multiples): what the widths alone can buy
at those MACs, the allocation ``prune --latency-target T --macs-cap M`` lets a search look for.

``--spinning-too`` times ONNX Runtime a second way in the same rounds: with its default session setting, idle
intra-op workers spinning (the project turns that off: ``gan.export.ORT_SPINNING``).

    .venv/bin/python benchmarks/pruning_speedup.py [--sizes 128 256] [--targets 0.25 0.1] [--multiples 8] [--aligned] [--fastest] [--repeats 5] [--spinning-too] [--threads N] [--runs 10]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from gan import export as gexport
from gan.latency_model import LatencyModel, counts_spec, fastest_counts, measure_export
from gan.models import ResnetGenerator
from gan.pruning.align import align_counts, align_spec, kernel_block
from gan.pruning.macs import MacsModel
from gan.pruning.physical import prune
from gan.pruning.targets import resolve_macs_target, uniform_spec


def measured(export_dir: Path, size: int, runs: int, threads: int | None, spin_too: bool = False) -> dict:
    """``gan.export.profile_export`` of a torch-only export (MACs, params, torch latency), with the ONNX Runtime
    latency taken as the project measures it everywhere: the minimum over fresh sessions of each one's median
    (``gan.latency_model.measure_export``; docs/methods.md, "Latency budgets", Measuring), with the project's
    session setting (idle workers do not spin: ``gan.export.ORT_SPINNING``); ``spin_too``: also with ONNX
    Runtime's default (they spin), in the same round."""
    p = gexport.profile_export(export_dir, size=size, runs=runs)
    p["onnx_latency"] = {"median_ms": measure_export(export_dir, size, "onnxruntime", threads, runs)}
    if spin_too:
        p["onnx_spin_latency"] = {"median_ms": measure_export(export_dir, size, "onnxruntime", threads, runs,
                                                              spinning=True)}
    return p


def rounds_range(speedups: list[float], macs_ratio: float) -> str:
    return "" if len(speedups) == 1 else f" [rounds {min(speedups) / macs_ratio:.2f}–{max(speedups) / macs_ratio:.2f}]"


def ms(profile: dict, runtime: str) -> float:
    return profile[f"{runtime}_latency"]["median_ms"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--targets", type=float, nargs="+", default=[0.25, 0.1])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--multiples", type=int, nargs="+", default=[8])
    ap.add_argument("--aligned", action="store_true", help="also L1 aligned per group to the kernel block")
    ap.add_argument("--fastest", action="store_true", help="also the widths the latency model predicts fastest "
                    "within the same MACs")
    ap.add_argument("--repeats", type=int, default=1, help="measure the teacher and every row this many rounds; "
                    "report each speed-up's median over rounds (default 1)")
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--threads", type=int, help="torch and ONNX Runtime intra-op threads (default torch's own count)")
    ap.add_argument("--spinning-too", action="store_true", help="also time ONNX Runtime with its default "
                    "session setting (idle intra-op workers spin), in the same rounds")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # gan.export's ORT sessions take torch's thread count
    torch.manual_seed(0)
    teacher = ResnetGenerator(ngf=args.ngf, n_blocks=9).eval()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            base_dir = Path(tmp) / f"teacher_{size}"
            gexport.save(teacher, base_dir, size=size, onnx=False, latency_runs=1)  # ORT: measure_export
            block = kernel_block()
            runs = [(t, k) for t in args.targets for k in args.multiples]
            runs += [(t, f"aligned{block}") for t in args.targets] if args.aligned else []
            runs += [(t, f"fastest{block}") for t in args.targets] if args.fastest else []
            built = []
            for t, multiple in runs:
                target = resolve_macs_target(teacher, t, size)
                if isinstance(multiple, int):
                    spec, ratio = uniform_spec(teacher, target, size, criterion="l1", multiple=multiple)
                elif multiple.startswith("aligned"):
                    spec, ratio = uniform_spec(teacher, target, size, criterion="l1")
                    mm = MacsModel(teacher, size)
                    spec = align_spec(teacher, spec, align_counts(mm, mm.counts(spec), target, block))
                else:  # fastest: shapes decide latency, so the first channels of each group stand for any
                    lm = LatencyModel(teacher, size, "onnxruntime", args.threads, quiet=False)
                    counts = fastest_counts(teacher, lm, target, size, block)
                    spec, ratio = counts_spec(teacher, counts), float("nan")
                    print(f"  fastest widths at {t}: {counts}", flush=True)
                d = Path(tmp) / f"pruned_{size}_{t}_{multiple}"
                gexport.save(prune(teacher, spec), d, size=size, onnx=False, latency_runs=1)
                built.append((t, multiple, ratio, d))
            # rounds: the teacher, then every row, again and again (this VM's timings wander ±30 % over
            # minutes; a ratio is taken within a round and the median over rounds reported)
            rounds = []
            for r in range(args.repeats):
                base = measured(base_dir, size, args.runs, args.threads, args.spinning_too)
                rounds.append((base, [measured(d, size, args.runs, args.threads, args.spinning_too)
                                      for *_, d in built]))
            for i, (t, multiple, ratio, _) in enumerate(built):
                bases, mine = [b for b, _ in rounds], [ps[i] for _, ps in rounds]
                base, p = bases[0], mine[0]
                row = {"size": size, "target": t, "multiple": multiple, "keep_ratio": round(ratio, 4),
                       "macs_G": p["macs"] / 1e9, "teacher_macs_G": base["macs"] / 1e9,
                       "params_M": p["params"] / 1e6,
                       "macs_ratio": base["macs"] / p["macs"],
                       "repeats": args.repeats, "threads": p["torch_latency"]["threads"]}
                kinds = {"torch": "torch", "ort": "onnx", **({"ort_spin": "onnx_spin"} if args.spinning_too else {})}
                for name, kind in kinds.items():  # <name>_ms, teacher_<name>_ms, <name>_speedup(_rounds, _over_...)
                    speed = [ms(b, kind) / ms(q, kind) for b, q in zip(bases, mine)]
                    row.update({f"{name}_ms": statistics.median(ms(q, kind) for q in mine),
                                f"teacher_{name}_ms": statistics.median(ms(b, kind) for b in bases),
                                f"{name}_speedup": statistics.median(speed), f"{name}_speedup_rounds": speed,
                                f"{name}_speedup_over_macs_ratio": statistics.median(speed) / row["macs_ratio"]})
                spin = ""
                if args.spinning_too:
                    spin = (f" | ORT spinning {row['teacher_ort_spin_ms']:.1f}→{row['ort_spin_ms']:.1f} ms "
                            f"({row['ort_spin_speedup_over_macs_ratio']:.2f} of MACs ratio"
                            f"{rounds_range(row['ort_spin_speedup_rounds'], row['macs_ratio'])})")
                rows.append(row)
                spread = rounds_range(row["ort_speedup_rounds"], row["macs_ratio"])
                print(f"{size}² target {t:>4} ×{multiple!s:<2}: MACs {row['teacher_macs_G']:.2f}→{row['macs_G']:.2f} G "
                      f"(×{row['macs_ratio']:.2f}) | torch {row['teacher_torch_ms']:.1f}→{row['torch_ms']:.1f} ms "
                      f"(×{row['torch_speedup']:.2f}, {row['torch_speedup_over_macs_ratio']:.2f} of MACs ratio) | "
                      f"ORT {row['teacher_ort_ms']:.1f}→{row['ort_ms']:.1f} ms (×{row['ort_speedup']:.2f}, "
                      f"{row['ort_speedup_over_macs_ratio']:.2f} of MACs ratio{spread}){spin} | {row['threads']} threads",
                      flush=True)
    if args.json:
        print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
