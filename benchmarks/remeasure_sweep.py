"""Measure a finished ``ganprune benchmark --macs-targets/--latency-targets`` sweep's exports again, on an idle
machine (issue #17): every export and the teacher at the sweep's deployment size, runtime and threads, in
``orchestration.sweep.ROUNDS`` rounds (speed-ups taken within a round, medians kept). The rows' fidelity is
the sweep's own; only the latency columns, ``sweep.md`` and the Pareto plot are renewed (the previous
``sweep.json`` stays as ``sweep.before-remeasure.json``).

    python benchmarks/remeasure_sweep.py runs/sweep-small

Why: a sweep's rows run for an hour beside each other, its closing measurement takes minutes, and this VM's
timings wander ±30 % over minutes; rounds on idle cores make the speed column repeatable.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root

from orchestration.sweep import remeasure  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="the sweep's --out directory (with sweep.json)")
    args = ap.parse_args(argv)
    if not (Path(args.out) / "sweep.json").is_file():
        ap.error(f"{args.out} has no sweep.json: give the --out of a finished benchmark sweep")
    return remeasure(args.out)


if __name__ == "__main__":
    main()
