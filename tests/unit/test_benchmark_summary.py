"""The benchmark's statistics and its resume key (orchestration/benchmark.py), on made-up rows."""
import math

from orchestration.benchmark import _same_code, code_version, markdown, parse_seeds, summarize


def _rows():
    psnr = {"marl": [21.9, 21.4, 21.0], "l1": [19.7, 20.3, 19.9], "random": [18.8, 21.3, 21.5]}
    return [{"method": m, "seed": s, "psnr_vs_teacher": v, "macs": 1e6, "params": 10, "macs_ratio": 0.25,
             "latency_ms": 1.0, "search_s": 1.0, "finetune_s": 1.0, "search_evaluations": 45 if m != "l1" else 0}
            for m, vs in psnr.items() for s, v in enumerate(vs)]


def test_paired_differences_are_mean_and_standard_error_over_seeds():
    summary = summarize(_rows())
    d = summary["marl"]["psnr_vs_teacher_minus"]["l1"]
    diffs = [21.9 - 19.7, 21.4 - 20.3, 21.0 - 19.9]
    mean = sum(diffs) / 3
    std = math.sqrt(sum((x - mean) ** 2 for x in diffs) / 2)
    assert d["n"] == 3 and math.isclose(d["mean"], mean) and math.isclose(d["se"], std / math.sqrt(3))
    assert "random" in summary["marl"]["psnr_vs_teacher_minus"] and summary["l1"]["psnr_vs_teacher"]["n"] == 3
    assert "l1" not in summary["l1"]["psnr_vs_teacher_minus"]  # no difference to itself
    md = markdown({"preset": "tiny", "macs_target": 0.25, "finetune_steps": 2, "eval_items": 64, "seeds": [0, 1, 2],
                   "rows": _rows(), "summary": summary})
    assert f"{mean:.2f} ± {std / math.sqrt(3):.2f}" in md  # the Δ vs l1 cell


def test_resume_key_is_the_code_not_the_commit():
    v = code_version()
    assert v.startswith("src-") and code_version() == v
    assert _same_code(v, v.split(" ")[0] + " (git 0123456789)") and not _same_code(v, "src-000000000000")
    assert not _same_code(None, v)


def test_seeds_parse():
    assert parse_seeds("0, 1,2") == [0, 1, 2] and parse_seeds([3]) == [3]


def _timed_row(method: str, request: dict, tdir: str) -> dict:
    """A row that takes ``request["s"]`` seconds (module level: the worker processes import it)."""
    import os
    import time

    from pathlib import Path

    t0 = time.time()
    if request.get("fail"):
        if request.get("flag"):
            Path(request["flag"]).touch()
        raise ValueError(f"{method} failed")
    while request.get("after") and not Path(request["after"]).exists() and time.time() < t0 + 120:
        time.sleep(0.01)  # starts its own clock once the failing row has failed, however loaded the machine
    time.sleep(request["s"])
    return {"method": method, "start": t0, "end": time.time(), "pid": os.getpid()}


def _schedule(rows: dict, jobs: int):
    """Run ``rows`` (key → request) through the benchmark's scheduler: random waits for marl."""
    from orchestration.benchmark import _run_rows

    done = {}
    _run_rows(list(rows), lambda k: k[0] != "random" or ("marl", k[1]) in done, lambda k: ({}, rows[k]),
              lambda k, settings, row: done.__setitem__(k, row), jobs, "unused", run=_timed_row)
    return done


def test_jobs_run_rows_at_once_in_worker_processes_and_wait_for_their_dependencies():
    import os

    rows = {("marl", 0): {"s": 1.5}, ("random", 0): {"s": 0.1}, ("l1", 0): {"s": 0.1}, ("uniform", 0): {"s": 0.1}}
    done = _schedule(rows, jobs=2)
    assert set(done) == set(rows) and os.getpid() not in {r["pid"] for r in done.values()}
    marl = done[("marl", 0)]
    assert done[("random", 0)]["start"] >= marl["end"]  # its budget comes from marl's row
    assert done[("l1", 0)]["start"] < marl["end"]  # ran beside marl
    one = _schedule(rows, jobs=1)
    assert {r["pid"] for r in one.values()} == {os.getpid()}


def test_a_failed_row_lets_the_running_ones_finish_and_be_recorded(tmp_path):
    import pytest

    flag = str(tmp_path / "l1-failed")
    rows = {("l1", 0): {"s": 0.0, "fail": True, "flag": flag}, ("uniform", 0): {"s": 1.0, "after": flag},
            ("uniform", 1): {"s": 0.1}}
    from orchestration.benchmark import _run_rows

    done = {}
    with pytest.raises(ValueError, match="l1 failed") as e:
        _run_rows(list(rows), lambda k: True, lambda k: ({}, rows[k]),
                  lambda k, settings, row: done.__setitem__(k, row), 2, "unused", run=_timed_row)
    assert ("uniform", 0) in done and ("uniform", 1) not in done  # no new start after the failure
    assert "benchmark row: l1 seed 0" in "".join(getattr(e.value, "__notes__", []))


def test_an_unfinished_row_resumes_only_when_started_alike_and_checkpointed(tmp_path):
    import json

    from agents.marl import CKPT_PREFIX, STATE
    from orchestration.benchmark import _resumable

    settings = {"method": "marl", "seed": 0, "iterations": 4, "code_version": "src-abc (git 1)"}
    started, run_dir = tmp_path / "seed0.started.json", tmp_path / "seed0"
    assert not _resumable(started, settings, run_dir)  # never started
    started.write_text(json.dumps({**settings, "code_version": "src-abc (git 2)"}))  # a docs-only commit later
    assert not _resumable(started, settings, run_dir)  # no search checkpoint yet
    (run_dir / "checkpoints" / f"{CKPT_PREFIX}2").mkdir(parents=True)
    (run_dir / "checkpoints" / f"{CKPT_PREFIX}2" / STATE).write_text("{}")
    assert _resumable(started, settings, run_dir)
    assert not _resumable(started, {**settings, "iterations": 5}, run_dir)
    assert not _resumable(started, {**settings, "code_version": "src-def (git 2)"}, run_dir)


def test_sweep_table_puts_miou_beside_the_teachers():
    from orchestration.sweep import markdown as sweep_markdown

    def st(m, se=0.1):
        return {"mean": m, "std": se, "se": se, "n": 3}

    result = {"latency": {"runtime": "onnxruntime", "threads": 2, "size": 256, "teacher_ms": 40.0},
              "teacher_fidelity": {"miou": 56.0},
              "table": [{"budget": "macs-0.04", "method": "l1", "seeds": 3, "macs_ratio": st(0.04),
                         "deploy_ms": st(8.0), "psnr_vs_teacher": st(17.2), "miou": st(31.5, 1.2)}]}
    text = sweep_markdown(result)
    assert "mIoU (teacher 56.0)" in text and "| 31.5 ± 1.2 |" in text and "(×5.00, 0.20 of the MACs ratio)" in text
    result["table"][0]["deploy_speedup"] = st(4.0)  # measured within rounds: the speed-up is the rows' own
    assert "(×4.00, 0.16 of the MACs ratio)" in sweep_markdown(result)
    del result["table"][0]["miou"]  # a set without labels: no mIoU column
    assert "mIoU" not in sweep_markdown(result)
