"""``ganprune benchmark --macs-targets 0.25,0.1,0.04`` / ``--latency-targets 0.5,0.3``: one benchmark per budget,
then one table and a Pareto plot across them (issue #17 item 3).

Each budget runs ``orchestration.benchmark.benchmark`` into ``out/macs-<v>/`` or ``out/latency-<v>/`` (every
method × seed, its own table, MLflow run and ``--resume``).  Then every export of every budget, and the teacher,
is timed back to back in this process at the deployment size (``--latency-size``, default 256²) in ONNX Runtime,
in ``ROUNDS`` rounds (speed-ups taken within a round, medians kept), so fidelity can be read against measured
latency as well as against MACs:

    out/sweep.md     per budget × method: MACs, measured latency (speed-up), PSNR vs teacher, and mIoU beside
                     the teacher's on labels→photo sets (mean ± SE)
    out/sweep.json   the same, with every row
    out/sweep.png    the Pareto plot: PSNR vs measured latency (left) and vs MACs (right), a line per method

All budgets are checked (teacher, reachability, which methods take a latency budget) before any row runs.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import replace
from pathlib import Path

from gan.latency_model import LatencyTarget, latency_budget, measure_architecture, measure_export, measure_in_rounds
from gan.pruning.targets import resolve_macs_target
from gan.teacher_run import load_teacher_run
from orchestration.benchmark import benchmark, check_latency_methods, mean_std_se, teacher_fidelity
from orchestration.errors import UsageError
from orchestration.rundir import write_json
from orchestration.teacher_cache import ensure_teacher

DEPLOY_SIZE = 256


def budgets(macs_targets, latency_targets) -> list[tuple[str, float]]:
    out = [("macs", float(t)) for t in macs_targets or ()] + [("latency", float(t)) for t in latency_targets or ()]
    if len(set(out)) != len(out):
        raise UsageError("--macs-targets/--latency-targets: name each target once")
    return out


def sweep(request, macs_targets=(), latency_targets=(), latency_size: int | None = None,
          runtime: str = "onnxruntime", threads: int | None = None) -> dict:
    """Run ``request`` (an ``orchestration.requests.BenchmarkRequest``) once per budget; see the module doc."""
    plan = budgets(macs_targets, latency_targets)
    size = int(latency_size or DEPLOY_SIZE)
    row = request.row
    for kind, v in plan:  # the cheap checks first, for every budget
        if kind == "latency":
            LatencyTarget(v, size, runtime, threads)
        elif not v > 0:
            raise UsageError(f"--macs-targets {v:g}: give fractions of the teacher's MACs (0.1) or counts (3e9)")
    if any(kind == "latency" for kind, _ in plan):
        check_latency_methods(request.methods)
    tdir = Path(row.teacher).resolve() if row.teacher else ensure_teacher(
        row.preset, row.data, steps=request.teacher_steps, quiet=request.quiet, tracking_uri=row.tracking_uri)
    run = load_teacher_run(tdir)
    for kind, v in plan:  # every target reachable before any row runs
        if kind == "macs":
            resolve_macs_target(run.generator, v, run.size)
        else:
            latency_budget(run.generator, LatencyTarget(v, size, runtime, threads, row.macs_cap), run.size,
                           quiet=request.quiet)
    out = Path(request.out)
    if not request.resume and not request.overwrite and out.is_dir() and any(out.iterdir()):
        raise UsageError(f"{out} is not empty; pass --resume to keep its finished rows, --overwrite to start "
                         "again, or choose another --out")
    results = {}
    for kind, v in plan:
        sub_row = replace(row, teacher=str(tdir), data=None, macs_target=v if kind == "macs" else row.macs_target,
                          latency_target=v if kind == "latency" else None, latency_size=size,
                          macs_cap=row.macs_cap if kind == "latency" else None,
                          latency_runtime=runtime, latency_threads=threads)
        name = f"{kind}-{v:g}"
        if not request.quiet:
            print(f"== budget {name} ==", flush=True)
        results[name] = benchmark(replace(request, row=sub_row, out=str(out / name)))
    result = {"teacher": str(tdir), "latency": {"size": size, "runtime": runtime, "threads": threads},
              "teacher_fidelity": teacher_fidelity(tdir, row.threads),
              "budgets": [{"kind": k, "value": v} for k, v in plan],
              "benchmarks": {n: {"out": r["out"], "rows": r["rows"]} for n, r in results.items()}}
    return finish(out, result, run.generator.architecture(), request.quiet)


def remeasure(out: str | Path, quiet: bool = False) -> dict:
    """Measure a finished sweep's exports again (``benchmarks/remeasure_sweep.py``: on an idle machine, or with
    today's measurement): the rows' fidelity stays the sweep's, the latency columns and the plot are renewed;
    the previous ``sweep.json`` is kept as ``sweep.before-remeasure.json``."""
    out = Path(out)
    result = json.loads((out / "sweep.json").read_text())
    (out / "sweep.before-remeasure.json").write_text((out / "sweep.json").read_text())
    result.pop("table", None)
    return finish(out, result, load_teacher_run(result["teacher"]).generator.architecture(), quiet)


def finish(out: Path, result: dict, teacher_arch: dict, quiet: bool) -> dict:
    """Measure every export and the teacher at the deployment size, then the table, ``sweep.json``/``.md``/``.png``."""
    lat = result["latency"]
    rows_by_budget = {n: b["rows"] for n, b in result["benchmarks"].items()}
    lat["teacher_ms"] = measure_rounds(teacher_arch, [r for rs in rows_by_budget.values() for r in rs],
                                       lat["size"], lat["runtime"], lat["threads"])
    lat["rounds"] = ROUNDS
    table = []
    for name, rows in rows_by_budget.items():
        for m in dict.fromkeys(r["method"] for r in rows):
            rs = [r for r in rows if r["method"] == m]
            table.append({"budget": name, "method": m, "seeds": len(rs),
                          "macs_ratio": mean_std_se([r["macs_ratio"] for r in rs]),
                          "deploy_ms": mean_std_se([r["deploy_ms"] for r in rs]),
                          "deploy_speedup": mean_std_se([r["deploy_speedup"] for r in rs]),
                          "psnr_vs_teacher": mean_std_se([r["psnr_vs_teacher"] for r in rs]),
                          **({"miou": mean_std_se([r["miou"] for r in rs])} if all("miou" in r for r in rs) else {})})
    result["table"] = table
    write_json(out / "sweep.json", result)
    (out / "sweep.md").write_text(markdown(result))
    result["plot"] = str(pareto(result, out / "sweep.png"))
    if not quiet:
        print("\n" + markdown(result))
    return result


#: rounds of the deployment measurement: the teacher, then every export, again and again; this VM's timings
#: wander ±30 % over minutes, so a speed-up is taken within a round and its median over rounds kept
ROUNDS = 3


def measure_rounds(teacher_arch: dict, rows: list[dict], size: int, runtime: str, threads: int | None) -> float:
    """Each row's ``deploy_ms`` (median over ``ROUNDS``) and ``deploy_speedup`` (median of the per-round teacher
    / export ratios), measured back to back in this process; returns the teacher's median ms."""
    teacher, *ms = measure_in_rounds(
        [lambda: measure_architecture(teacher_arch, size, runtime, threads)]
        + [lambda r=r: measure_export(Path(r["out"]) / "generator", size, runtime, threads) for r in rows], ROUNDS)
    for r, m in zip(rows, ms):
        r["deploy_ms"] = statistics.median(m)
        r["deploy_speedup"] = statistics.median(t / x for t, x in zip(teacher, m))
        r["deploy_speedup_rounds"] = [t / x for t, x in zip(teacher, m)]
    return statistics.median(teacher)


def _pm(st: dict, digits: int = 2) -> str:
    return f"{st['mean']:.{digits}f}" + (f" ± {st['se']:.{digits}f}" if st["n"] > 1 else "")


def markdown(result: dict) -> str:
    lat = result["latency"]
    miou = "miou" in (result.get("teacher_fidelity") or {}) and all("miou" in t for t in result["table"])
    head = f" mIoU (teacher {result['teacher_fidelity']['miou']:.1f}) |" if miou else ""
    lines = [f"Measured latency: {lat['runtime']}, {lat['threads'] or 'default'} threads, {lat['size']}², batch 1; "
             f"teacher {lat['teacher_ms']:.2f} ms; medians over {lat.get('rounds', 1)} rounds (the teacher, then every "
             "export), speed-ups taken within a round. Mean ± SE over seeds.", "",
             f"| budget | method | seeds | MACs | measured ms (speed-up, of the MACs ratio) | PSNR vs teacher (dB) |{head}",
             "|---|---|---|---|---|---|" + ("---|" if miou else "")]
    for t in result["table"]:
        speed = t["deploy_speedup"]["mean"] if "deploy_speedup" in t else lat["teacher_ms"] / t["deploy_ms"]["mean"]
        lines.append(f"| {t['budget']} | {t['method']} | {t['seeds']} | {t['macs_ratio']['mean']:.1%} | "
                     f"{_pm(t['deploy_ms'])} (×{speed:.2f}, {speed * t['macs_ratio']['mean']:.2f} of the MACs ratio) | "
                     f"{_pm(t['psnr_vs_teacher'])} |"
                     + (f" {_pm(t['miou'], 1)} |" if miou else ""))
    return "\n".join(lines) + "\n"


def pareto(result: dict, path: Path) -> Path:
    """PSNR vs measured latency (left) and vs MACs (right): a line per method through its budgets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for m in dict.fromkeys(t["method"] for t in result["table"]):
        ts = [t for t in result["table"] if t["method"] == m]
        for ax, key, scale in ((axes[0], "deploy_ms", 1.0), (axes[1], "macs_ratio", 100.0)):
            pts = sorted((t[key]["mean"] * scale, t["psnr_vs_teacher"]["mean"],
                          t["psnr_vs_teacher"]["se"] if t["psnr_vs_teacher"]["n"] > 1 else 0.0) for t in ts)
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o",
                        capsize=3, label=m)
    lat = result["latency"]
    axes[0].axvline(lat["teacher_ms"], color="0.6", ls=":", label="teacher")
    axes[0].set(xlabel=f"measured ms ({lat['runtime']}, {lat['size']}²)", ylabel="PSNR vs teacher (dB)")
    axes[1].set(xlabel="MACs (% of the teacher's)", ylabel="PSNR vs teacher (dB)")
    axes[0].legend(fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path

