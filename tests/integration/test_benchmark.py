"""`ganprune benchmark` end to end on a tiny teacher: one table (markdown + JSON), a Pareto plot,
an MLflow run; --resume keeps the rows that finished with the same settings; seeds, random search at
marl's budget, marl-greedy, and the same row for a method whatever ran before it (issues #13, #18)."""
import json
import time

import mlflow
import pytest

from orchestration.cli import main
from tests.teachers import tiny_teacher


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
        assert r["split"] == "test" and r["seed"] == 0 and r["search_evaluations"] == 0
    assert res["rows"][1]["objective"] == "gka"
    md = (out / "benchmark.md").read_text()
    assert "| uniform |" in md and "| cat |" in md and (out / "pareto.png").stat().st_size > 1000
    run = mlflow.MlflowClient(tracking_uri=uri).get_run(res["mlflow_run_id"])
    assert run.info.status == "FINISHED" and "cat.psnr_vs_teacher" in run.data.metrics
    assert {"benchmark.md", "benchmark.json", "pareto.png"} <= {
        a.path for a in mlflow.MlflowClient(tracking_uri=uri).list_artifacts(res["mlflow_run_id"])}


def test_resume_keeps_finished_methods_with_the_same_settings(bench, capsys):
    out, _, args = bench
    before = (out / "cat" / "seed0" / "prune.json").stat().st_mtime
    assert main(args + ["--resume", "--methods", "uniform,cat,l1"]) == 0
    assert (out / "cat" / "seed0" / "prune.json").stat().st_mtime == before  # kept, not re-run
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
    marl = json.loads((tmp_path / "bench" / "marl" / "seed0" / "prune.json").read_text())
    assert marl["backend"]["name"] == "local@1-workers" and marl["backend"]["episodes"] >= 2
    assert json.loads((tmp_path / "bench" / "uniform" / "seed0" / "prune.json").read_text())["method"] == "uniform"


SEARCH = ["--iterations", "1", "--episodes", "2", "--backend-steps", "1"]


def _args(bench, out, methods, seeds):
    _, _, args = bench
    args = list(args)
    args[args.index("--methods") + 1] = methods
    args[args.index("--out") + 1] = str(out)
    return args + SEARCH + ["--seeds", seeds]


def test_seeds_random_and_evolution_at_marls_budget_greedy_and_the_summary(bench, tmp_path, capsys):
    capsys.readouterr()
    assert main(_args(bench, tmp_path / "b", "marl,marl-greedy,random,evolution,l1", "0,1") + ["--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = {(r["method"], r["seed"]): r for r in res["rows"]}
    methods = ("marl", "marl-greedy", "random", "evolution", "l1")
    assert len(res["rows"]) == 10 and set(rows) == {(m, s) for m in methods for s in (0, 1)}
    for s in (0, 1):
        marl = rows[("marl", s)]
        assert marl["split"] == "test" and marl["search_evaluations"] >= 2
        assert rows[("random", s)]["search_evaluations"] == marl["search_evaluations"]
        assert rows[("evolution", s)]["search_evaluations"] == marl["search_evaluations"]
        assert rows[("marl-greedy", s)]["search_evaluations"] == marl["search_evaluations"]  # the same search
        assert marl["search_finetune_steps"] == marl["search_evaluations"]  # 1 backend step per candidate
    greedy = json.loads((tmp_path / "b" / "marl-greedy" / "seed0" / "prune.json").read_text())
    assert greedy["pick"] == "greedy" and greedy["search_from"].endswith("marl/seed0")
    summary = res["summary"]
    assert summary["marl"]["psnr_vs_teacher"]["n"] == 2 and "std" in summary["marl"]["psnr_vs_teacher"]
    diff = summary["marl"]["psnr_vs_teacher_minus"]
    expected = [rows[("marl", s)]["psnr_vs_teacher"] - rows[("l1", s)]["psnr_vs_teacher"] for s in (0, 1)]
    assert abs(diff["l1"]["mean"] - sum(expected) / 2) < 1e-9 and diff["l1"]["n"] == 2 and "random" in diff
    md = (tmp_path / "b" / "benchmark.md").read_text()
    assert "Δ vs random" in md and "| marl-greedy | 1 |" in md
    # inspect: a marl-greedy row shows the marl search it reused; a random row says it has no agents
    assert main(["inspect", str(tmp_path / "b" / "marl-greedy" / "seed0"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["inspect", str(tmp_path / "b" / "random" / "seed0")]) == 2
    assert "'random' run" in capsys.readouterr().err

    # issue #18: marl alone gives marl the same row as after the other methods ran in this process
    assert main(_args(bench, tmp_path / "alone", "marl", "0")) == 0
    alone = json.loads((tmp_path / "alone" / "benchmark.json").read_text())["rows"][0]
    for k in ("psnr_vs_teacher", "ssim_vs_teacher", "macs", "params", "search_evaluations"):
        assert alone[k] == rows[("marl", 0)][k], k
    assert json.loads((tmp_path / "alone" / "marl" / "seed0" / "best_spec.json").read_text())["generator"] == \
        json.loads((tmp_path / "b" / "marl" / "seed0" / "best_spec.json").read_text())["generator"]

    # a row killed after its search checkpoint (no row.json, no prune.json) goes on from it under --resume
    for f in ("row.json", "prune.json"):
        (tmp_path / "alone" / "marl" / "seed0" / f).unlink()
    assert main(_args(bench, tmp_path / "alone", "marl", "0") + ["--resume"]) == 0
    again = json.loads((tmp_path / "alone" / "benchmark.json").read_text())["rows"][0]
    assert again["resumed"] and not alone["resumed"]
    for k in ("psnr_vs_teacher", "ssim_vs_teacher", "macs", "params", "search_evaluations"):
        assert again[k] == alone[k], k


def test_a_row_made_in_a_worker_process_is_the_row_made_here(bench, tmp_path):
    """--jobs 2: the cat row, made in a fresh worker process, is the one this process made after uniform
    (at the same thread count); the scheduling itself: tests/unit/test_benchmark_summary.py."""
    from gan.determinism import default_threads

    out, _, args = bench
    args = list(args)
    args[args.index("--out") + 1] = str(tmp_path / "jobs")
    args[args.index("--methods") + 1] = "cat"
    assert main(args + ["--jobs", "2", "--threads", str(default_threads())]) == 0
    before = {r["method"]: r for r in json.loads((out / "benchmark.json").read_text())["rows"]}
    rows = json.loads((tmp_path / "jobs" / "benchmark.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["cat"]
    for r in rows:
        for k in ("psnr_vs_teacher", "ssim_vs_teacher", "macs", "params"):
            assert r[k] == before[r["method"]][k], (r["method"], k)


def test_every_method_and_option_is_checked_before_any_work(tmp_path, capsys):
    t0 = time.perf_counter()
    rc = main(["benchmark", "--preset", "tiny", "--methods", "marl,cat,ppcd,uniform", "--vem", "--out",
               str(tmp_path / "b"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "ppcd" in err and "--vem" in err and len(err.strip().splitlines()) == 1
    assert time.perf_counter() - t0 < 10 and not (tmp_path / "b").exists()  # no teacher trained, nothing made
    assert main(["benchmark", "--preset", "tiny", "--methods", "marl", "--seeds", "0,x", "--out",
                 str(tmp_path / "b")]) == 2
    capsys.readouterr()
    assert main(["benchmark", "--preset", "tiny", "--methods", "marl", "--jobs", "0", "--out",
                 str(tmp_path / "b")]) == 2 and "--jobs" in capsys.readouterr().err


def test_a_cyclegan_benchmark_prunes_the_presets_unpaired_teacher(tmp_path):
    """`ganprune benchmark --preset tiny --data photo2painting` (issue #16 item 1): the preset's cached
    teacher is a CycleGAN one (trained here, 4 steps), every row prunes its G_A, and the table shows the
    fidelity of docs/methods.md, "Unpaired (CycleGAN) teachers": FID-proxy vs real B beside the
    teacher's, PSNR/SSIM vs the teacher (no ground truth).  A subprocess: the teacher trains on DeepSpeed."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "GANPRUNE_CACHE": str(tmp_path / "cache"), "GANPRUNE_DATA": str(tmp_path / "data"),
           "OMP_NUM_THREADS": "1"}
    out = tmp_path / "bench"
    r = subprocess.run([sys.executable, "-m", "orchestration.cli", "benchmark", "--preset", "tiny", "--data",
                        "photo2painting", "--teacher-steps", "4", "--methods", "l1,uniform", "--finetune-steps", "2",
                        "--finetune-backend", "torch", "--macs-target", "0.3", "--threads", "1", "--out", str(out),
                        "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--quiet", "--json"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert json.loads((tmp_path / "cache" / "teachers" / os.listdir(tmp_path / "cache" / "teachers")[0]
                       / "teacher.json").read_text())["kind"] == "cyclegan"
    assert [row["method"] for row in res["rows"]] == ["l1", "uniform"]
    for row in res["rows"]:
        assert {"fid_proxy", "fid_proxy_teacher", "psnr_vs_teacher", "ssim_vs_teacher"} <= set(row)
        assert "psnr" not in row and "miou" not in row and row["macs"] <= row["target_macs"]
    assert res["rows"][0]["fid_proxy_teacher"] == res["rows"][1]["fid_proxy_teacher"]  # one teacher, one real set
    md = (out / "benchmark.md").read_text()
    assert f"fid_proxy vs real B (teacher {res['rows'][0]['fid_proxy_teacher']:.2f})" in md
    assert "| fid_proxy | fid_proxy_teacher |" in md


def test_data_and_teacher_together_are_refused(tmp_path, capsys):
    rc = main(["benchmark", "--preset", "tiny", "--data", "photo2painting", "--teacher", str(tmp_path / "t"),
               "--methods", "l1", "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert rc == 2 and "--data" in err and "--teacher" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()
