"""`ganprune benchmark --macs-targets … --latency-targets …` (issue #17 item 3; orchestration/sweep.py): one
benchmark per budget, every export then measured at the deployment size, one table and a Pareto plot."""
import json

import pytest

from orchestration.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sweep_over_macs_and_latency_budgets(tmp_path, teacher_and_spec, monkeypatch):
    monkeypatch.setenv("GANPRUNE_CACHE", str(tmp_path / "cache"))
    teacher, out = teacher_and_spec[0], tmp_path / "sweep"
    common = ["--teacher", str(teacher), "--methods", "l1,uniform", "--latency-size", "32", "--latency-threads", "1",
              "--finetune-steps", "2", "--finetune-backend", "torch", "--tracking-uri",
              f"sqlite:///{tmp_path / 'mlflow.db'}"]
    assert main(["benchmark", *common, "--macs-targets", "0.5,0.25", "--latency-targets", "0.6", "--out", str(out),
                 "--json", "--quiet"]) == 0
    r = json.loads((out / "sweep.json").read_text())
    assert [(t["budget"], t["method"]) for t in r["table"]] == [
        (b, m) for b in ("macs-0.5", "macs-0.25", "latency-0.6") for m in ("l1", "uniform")]
    assert (out / "sweep.png").is_file() and (out / "sweep.md").read_text().count("| l1 |") == 3
    ratio = {t["budget"]: t["macs_ratio"]["mean"] for t in r["table"] if t["method"] == "l1"}
    assert ratio["macs-0.25"] < ratio["macs-0.5"] <= 0.5
    for row in r["benchmarks"]["latency-0.6"]["rows"]:
        b = row["latency_budget"]
        assert b["size"] == 32 and b["predicted_ms"] <= b["target_ms"] * (1 + 1e-9) and row["deploy_ms"] > 0
    assert r["latency"]["size"] == 32 and r["latency"]["teacher_ms"] > 0 and r["latency"]["rounds"] >= 1
    for res in r["benchmarks"].values():  # a speed-up per round, their median kept
        for row in res["rows"]:
            assert len(row["deploy_speedup_rounds"]) == r["latency"]["rounds"] and row["deploy_speedup"] > 0
    import importlib.util  # benchmarks/ is a folder of scripts: load the re-measure script by path
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "remeasure_sweep", Path(__file__).resolve().parents[2] / "benchmarks" / "remeasure_sweep.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    again = script.main([str(out)])  # the latency columns again, the fidelity kept
    assert (out / "sweep.before-remeasure.json").is_file() and again["latency"]["teacher_ms"] > 0
    assert [t["psnr_vs_teacher"]["mean"] for t in again["table"]] == [t["psnr_vs_teacher"]["mean"] for t in r["table"]]
    assert r["teacher_fidelity"]["psnr"] > 0  # the teacher vs ground truth on the rows' items
