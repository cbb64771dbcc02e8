"""Mean ± standard error and paired differences to any baselines, from one finished ``ganprune
benchmark`` run (its ``benchmark.json``): the protocol's form for a claim (docs/methods.md, "Evaluation
protocol"). ``benchmark`` itself prints mean ± std and Δ vs l1 / random; this adds the SE of each
method's mean, Δ vs any method (e.g. evolution) and, for searches, the best pair's own search score
(the generator reward on the search items of the train split, from each row's ``best_spec.json``).

    python benchmarks/paired_table.py runs/bench-sn --baselines random,evolution,l1

Rows of one run only: every number comes from the same invocation and settings.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root

from orchestration.benchmark import mean_std_se, summarize  # noqa: E402

METRICS = (("psnr_vs_teacher", "PSNR vs teacher (dB)", 2), ("ssim_vs_teacher", "SSIM vs teacher", 3))


def search_score(row: dict) -> float | None:
    """The picked pair's generator reward on the search items, when the method searched."""
    f = Path(row["out"]) / "best_spec.json"
    if not f.is_file():
        return None
    best = json.loads(f.read_text()).get("best") or {}
    own = best.get("own")
    return own.get("generator") if isinstance(own, dict) else best.get("generator_own")


def table(rows: list[dict], baselines: list[str]) -> tuple[str, dict]:
    """The markdown table and, per method, (mean, SE) of each metric, of each paired Δ PSNR and of the
    pick's search score; the statistics are ``orchestration.benchmark.summarize``'s."""
    by = {}
    for r in rows:
        by.setdefault(r["method"], {})[r["seed"]] = r
    seeds = sorted({r["seed"] for r in rows})
    missing = [(m, s) for m in by for s in seeds if s not in by[m]]
    if missing:
        raise SystemExit(f"{missing[0][0]} has no row for seed {missing[0][1]}; finish the run (--resume) first")
    stats = summarize(rows, baselines=[b for b in baselines if b in by])
    head = ["method"] + [f"{name}, mean ± SE" for _, name, _ in METRICS]
    head += [f"Δ PSNR vs {b} (paired ± SE)" for b in baselines if b in by]
    head += ["best pair's search score", "search evaluations", "search CPU s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    summary = {}
    for m, per in by.items():
        st, cells, out = stats[m], [m], {}
        for key, _, d in METRICS:
            out[key] = (st[key]["mean"], st[key]["se"])
            cells.append(f"{out[key][0]:.{d}f} ± {out[key][1]:.{d}f}")
        for b in baselines:
            if b not in by:
                continue
            if b == m:
                cells.append("—")
                continue
            diff = st["psnr_vs_teacher_minus"][b]
            out[f"d_vs_{b}"] = (diff["mean"], diff["se"])
            cells.append(f"{diff['mean']:+.2f} ± {diff['se']:.2f}")
        scores = [search_score(per[k]) for k in seeds]
        if all(v is not None for v in scores):
            sc = mean_std_se(scores)
            out["search_score"] = (sc["mean"], sc["se"])
            cells.append(f"{sc['mean']:.3f} ± {sc['se']:.3f}")
        else:
            cells.append("—")
        for cost in ("search_evaluations", "search_cpu_s"):
            cells.append(f"{st.get(cost, {}).get('mean', 0):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
        summary[m] = out
    return "\n".join(lines), summary


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a finished `ganprune benchmark --out` directory")
    ap.add_argument("--baselines", default="random,evolution,l1", help="methods to take paired differences to")
    args = ap.parse_args(argv)
    f = Path(args.run) / "benchmark.json"
    if not f.is_file():
        ap.error(f"no benchmark.json in {args.run}; give a finished `ganprune benchmark --out` directory")
    text, summary = table(json.loads(f.read_text())["rows"], [b for b in args.baselines.split(",") if b])
    print(text)
    return summary


if __name__ == "__main__":
    main()
