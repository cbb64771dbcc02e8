"""`ganprune benchmark` end to end on a tiny teacher: one table (markdown + JSON), a Pareto plot,
an MLflow run; --resume keeps the methods that finished with the same settings."""
import json

import mlflow
import pytest

from orchestration.cli import main
from orchestration.finetune import tiny_teacher


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    teacher = tiny_teacher(tmp / "teacher", data_root=tmp / "data", size=32, steps=20, norm="instance_affine")
    uri = "sqlite:///" + str(tmp / "mlflow.db")
    args = ["benchmark", "--teacher", str(teacher), "--preset", "tiny", "--methods", "uniform,cat",
            "--macs-target", "0.3", "--finetune-steps", "2", "--finetune-backend", "torch",
            "--out", str(tmp / "bench"), "--tracking-uri", uri, "--quiet"]
    assert main(args + ["--json"]) == 0
    return tmp / "bench", uri, args


def test_table_plot_and_mlflow(bench):
    out, uri, _ = bench
    res = json.loads((out / "benchmark.json").read_text())
    assert [r["method"] for r in res["rows"]] == ["uniform", "cat"]
    for r in res["rows"]:
        assert r["macs"] <= r["target_macs"] and r["latency_ms"] > 0 and "psnr_vs_teacher" in r
    assert res["rows"][1]["objective"] == "gka"
    md = (out / "benchmark.md").read_text()
    assert "| uniform |" in md and "| cat |" in md and (out / "pareto.png").stat().st_size > 1000
    run = mlflow.MlflowClient(tracking_uri=uri).get_run(res["mlflow_run_id"])
    assert run.info.status == "FINISHED" and "cat.psnr_vs_teacher" in run.data.metrics
    assert {"benchmark.md", "benchmark.json", "pareto.png"} <= {
        a.path for a in mlflow.MlflowClient(tracking_uri=uri).list_artifacts(res["mlflow_run_id"])}


def test_resume_keeps_finished_methods_with_the_same_settings(bench, capsys):
    out, _, args = bench
    before = (out / "cat" / "prune.json").stat().st_mtime
    assert main(args + ["--resume", "--methods", "uniform,cat,l1"]) == 0
    assert (out / "cat" / "prune.json").stat().st_mtime == before  # kept, not re-run
    res = json.loads((out / "benchmark.json").read_text())
    assert [r["method"] for r in res["rows"]] == ["uniform", "cat", "l1"]
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err  # an occupied --out is refused


def test_the_marl_search_of_a_benchmark_runs_on_ray_workers(bench, tmp_path):
    _, _, args = bench
    args = list(args)
    args[args.index("--methods") + 1] = "marl,uniform"
    args[args.index("--out") + 1] = str(tmp_path / "bench")
    assert main(args + ["--iterations", "1", "--episodes", "2", "--num-env-runners", "1",
                        "--cpus-per-env-runner", "0.5", "--backend-workers", "1", "--cpus-per-backend-worker",
                        "0.5"]) == 0
    marl = json.loads((tmp_path / "bench" / "marl" / "prune.json").read_text())
    assert marl["backend"]["name"] == "local@1-workers" and marl["backend"]["episodes"] >= 2
    assert json.loads((tmp_path / "bench" / "uniform" / "prune.json").read_text())["method"] == "uniform"
