"""``ganprune benchmark``: every method on one teacher, at one MACs target and one fine-tune budget.

Each method runs through ``ganprune prune`` (orchestration.prune.prune) into ``out/<method>/``; every
export is then evaluated by the same protocol (``gan.metrics.evaluate.evaluate_generator`` on the
teacher's test split, the same items for everyone) and profiled the same way.  Outputs:

    out/benchmark.md       the table (markdown) and the command that made it
    out/benchmark.json     the same rows as JSON
    out/pareto.png         generator MACs vs fidelity (PSNR vs teacher), one point per method
    out/<method>/          each method's prune run (prune.json, generator/, ...)

MLflow: one run in experiment "benchmark" with the table, the plot and one metric set per method;
each method's own prune run stays in experiment "prune" (its run id is in the table's JSON).
"""
from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

from orchestration.errors import UsageError

EXPERIMENT = "benchmark"
DEFAULT_METHODS = ("marl", "cat", "gan-compression", "ppcd", "uniform", "l1")
EVAL_ITEMS = 64
METRICS = ("psnr_vs_teacher", "ssim_vs_teacher", "psnr", "ssim", "fid_proxy", "miou")


def _placement(method: str, cluster: dict) -> dict:
    """The part of ``cluster`` that ``prune --method method`` takes."""
    keep = {"address"} | ({"finetune_workers"} if method != "ppcd" else set())
    return {k: v for k, v in cluster.items() if method == "marl" or k in keep}


def benchmark(preset: str = "small", methods=DEFAULT_METHODS, macs_target: float = 0.25, out="runs/bench",
              teacher: str | None = None, teacher_steps: int | None = None, vem: bool = False,
              finetune_steps: int | None = None, iterations: int | None = None, episodes: int | None = None,
              overwrite: bool = False, resume: bool = False, tracking_uri: str | None = None, seed: int = 0, quiet: bool = False,
              track: bool = True, method_options: dict | None = None, finetune_backend: str = "deepspeed",
              cluster: dict | None = None) -> dict:
    """Run ``methods`` on one teacher and tabulate them; returns {"rows": [...], ...}.  ``cluster``:
    ``prune``'s Ray placement arguments (address, env runners, backend workers, fine-tune workers);
    the search ones serve marl only, the fine-tune workers every method but ppcd."""
    from gan.teacher_run import load_teacher_run
    from orchestration.rundir import clear_run_dir
    from orchestration.config import load_preset
    from orchestration.prune import METHODS, prune
    from orchestration.teacher_cache import ensure_teacher
    from orchestration.tracking import Tracker, check_reachable, resolve_tracking_uri

    methods = [m.strip() for m in (methods.split(",") if isinstance(methods, str) else methods) if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise UsageError(f"unknown --methods {','.join(unknown) or '(none)'}; available: {', '.join(METHODS)}")
    pre = load_preset(preset)
    finetune_steps = pre.marl.finetune_steps if finetune_steps is None else int(finetune_steps)
    if track:
        check_reachable(resolve_tracking_uri(tracking_uri))
    out = Path(out)
    if not resume and not overwrite and out.is_dir() and any(out.iterdir()):
        raise UsageError(f"{out} is not empty; pass --resume to keep its finished methods, --overwrite to "
                         "start again, or choose another --out")
    command = "ganprune benchmark " + " ".join(shlex.quote(a) for a in sys.argv[2:]) \
        if len(sys.argv) > 1 and sys.argv[1] == "benchmark" else None

    def say(msg):
        if not quiet:
            print(msg, flush=True)

    tdir = Path(teacher).resolve() if teacher else ensure_teacher(preset, steps=teacher_steps, quiet=quiet,
                                                                  tracking_uri=tracking_uri)
    load_teacher_run(tdir)  # a bad --teacher is refused before --overwrite empties --out
    if not resume:  # --overwrite: the old results go only now that the teacher is good
        clear_run_dir(out, overwrite, None, inputs=(tdir,))
    out.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(EXPERIMENT, run_name=f"{Path(preset).stem}-{macs_target:g}", tracking_uri=tracking_uri,
                      enabled=track, tags={"ganprune.command": "benchmark", "ganprune.out_dir": str(out.resolve())})
    tracker.start()
    status = "FAILED"
    try:
        tracker.log_params({"preset": preset, "methods": ",".join(methods), "macs_target": macs_target,
                            "finetune_steps": finetune_steps, "vem": vem, "teacher": str(tdir), "seed": seed})
        rows = []
        for i, m in enumerate(methods, 1):
            t0 = time.perf_counter()
            done = out / m / "prune.json"
            same = {"teacher": str(tdir), "macs_target": macs_target, "finetune_steps": finetune_steps,
                    "seed": seed, "vem": vem}
            if resume and done.is_file():  # a resumed benchmark keeps the methods that finished alike
                prev = json.loads(done.read_text())
                differ = [k for k, v in same.items() if prev.get(k, False if k == "vem" else None) != v]
                if not differ:
                    say(f"[{i}/{len(methods)}] {m}: finished before with the same settings, kept")
                    rows.append(_row(m, prev, tdir, 0.0))
                    continue
                say(f"[{i}/{len(methods)}] {m}: earlier run differs in {', '.join(differ)}; running again")
            say(f"[{i}/{len(methods)}] {m}")
            s = prune(m, teacher=str(tdir), preset=preset, macs_target=macs_target, out=out / m,
                      finetune_steps=finetune_steps, iterations=iterations, episodes=episodes, seed=seed,
                      vem=vem, quiet=True, overwrite=True, finetune_backend=finetune_backend, tracking_uri=tracking_uri, track=track,
                      options=(method_options or {}).get(m), **_placement(m, cluster or {}))
            row = _row(m, s, tdir, time.perf_counter() - t0)
            rows.append(row)
            tracker.log_metrics({f"{m}.{k}": v for k, v in row.items() if isinstance(v, (int, float))
                                 and not isinstance(v, bool)})
            say(f"    {row['macs'] / 1e6:.2f} M MACs ({row['macs_ratio']:.1%}), PSNR vs teacher "
                f"{row['psnr_vs_teacher']:.2f} dB, search {row['search_s']:.0f} s, fine-tune {row['finetune_s']:.0f} s")
        _measure_latency(rows, tdir)
        result = {"preset": preset, "teacher": str(tdir), "macs_target": macs_target,
                  "finetune_steps": finetune_steps, "vem": vem, "eval_items": EVAL_ITEMS, "command": command,
                  "rows": rows, "mlflow_run_id": tracker.run_id, "out": str(out)}
        (out / "benchmark.json").write_text(json.dumps(result, indent=1, default=float))
        (out / "benchmark.md").write_text(markdown(result))
        pareto_plot(rows, out / "pareto.png")
        for f in ("benchmark.json", "benchmark.md", "pareto.png"):
            tracker.log_artifact(out / f)
        status = "FINISHED"
        say("\n" + markdown(result))
        return result
    finally:
        tracker.end(status)


def _row(method: str, s: dict, tdir: Path, wall_s: float) -> dict:
    """One table row: the export evaluated on the test split (same items for every method)."""
    from gan import data as gdata
    from gan import export as gexport
    from gan.metrics.evaluate import evaluate_generator
    from gan.teacher_run import load_teacher_run

    run = load_teacher_run(tdir)
    root = gdata.resolve_dataset(run.data, size=run.size)
    test = gdata.open_dataset(root, size=run.size, split="test")
    model = gexport.load(Path(s["out"]) / "generator").eval()
    fid = evaluate_generator(model, test, teacher=run.generator.eval(), dataset_root=root, max_items=EVAL_ITEMS)
    return {"method": method, "macs": s["macs"], "macs_ratio": s["macs_ratio"], "target_macs": s["target_macs"],
            "params": s["params"], "latency_ms": s["latency_ms"], "teacher_latency_ms": s["teacher_latency_ms"],
            **{k: float(fid[k]) for k in METRICS if k in fid},
            "search_s": float(s["search_s"]), "finetune_s": float(s["finetune_s"]), "wall_s": round(wall_s, 1),
            "objective": s.get("objective"), "prune_run_id": s.get("mlflow_run_id"), "out": s["out"]}


def _measure_latency(rows: list[dict], tdir: Path, runs: int = 50) -> None:
    """CPU latency of every export and the teacher, measured back to back in this process once all
    methods have finished (the runs themselves may have shared the CPU with other work)."""
    from gan import export as gexport
    from gan.teacher_run import load_teacher_run

    run = load_teacher_run(tdir)
    teacher_ms = gexport.profile_export(tdir / run.meta["generator"], size=run.size, runs=runs)
    for r in rows:
        prof = gexport.profile_export(Path(r["out"]) / "generator", size=run.size, runs=runs)
        r["latency_ms"] = prof["torch_latency"]["median_ms"]
        r["onnx_latency_ms"] = (prof["onnx_latency"] or {}).get("median_ms")
        r["teacher_latency_ms"] = teacher_ms["torch_latency"]["median_ms"]
        r["speedup"] = r["teacher_latency_ms"] / r["latency_ms"]


def markdown(result: dict) -> str:
    """The benchmark table as markdown, with the command that made it."""
    rows = result["rows"]
    metrics = [k for k in METRICS if any(k in r for r in rows)]
    head = ["method", "G MACs", "params", "CPU ms (speed-up)", *metrics, "search s", "fine-tune s", "objective"]
    lines = [f"Preset {result['preset']}, MACs target {result['macs_target']:g}, fine-tune "
             f"{result['finetune_steps']} steps per method{' + VEM' if result.get('vem') else ''}; "
             f"metrics on the first {result['eval_items']} test items; CPU latency at batch 1, "
             f"teacher {rows[0].get('teacher_latency_ms', float('nan')):.2f} ms.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["method"], f"{r['macs'] / 1e6:.2f} M ({r['macs_ratio']:.1%})", f"{r['params'] / 1e3:.1f} k",
                 f"{r['latency_ms']:.2f} (×{r.get('speedup', float('nan')):.2f})",
                 *(f"{r[k]:.3f}" if k in r else "—" for k in metrics),
                 f"{r['search_s']:.0f}", f"{r['finetune_s']:.0f}", str(r.get("objective") or "—")]
        lines.append("| " + " | ".join(cells) + " |")
    if result.get("command"):
        lines += ["", f"Command: `{result['command']}`"]
    return "\n".join(lines) + "\n"


def pareto_plot(rows: list[dict], path: Path) -> Path:
    """Generator MACs (x) vs PSNR to the teacher (y), one labelled point per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for r in rows:
        ax.scatter(r["macs"] / 1e6, r["psnr_vs_teacher"], s=40)
        ax.annotate(r["method"], (r["macs"] / 1e6, r["psnr_vs_teacher"]), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    ax.set_xlabel("generator MACs (M)")
    ax.set_ylabel("PSNR vs teacher (dB, test split)")
    ax.set_title("fidelity vs cost (higher-left is better)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
