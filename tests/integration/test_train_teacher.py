"""`ganprune train-teacher` end to end: outputs, exports, MLflow, --resume, and the refusal to clobber."""
import json
import os
import subprocess
import sys

import mlflow
import torch

from gan import export as gexport


def cli(*args, env):
    return subprocess.run([sys.executable, "-m", "orchestration.cli", "train-teacher", *args],
                          capture_output=True, text=True, env=env, timeout=600)


def test_train_resume_refuse(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "GANPRUNE_DATA": str(tmp_path / "data"), "MLFLOW_TRACKING_URI": uri}
    out = tmp_path / "teacher"
    r = cli("--preset", "tiny", "--data", "edges2photos", "--out", str(out), "--steps", "20",
            "--json", "--quiet", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])

    assert {"checkpoints", "samples", "generator", "discriminator", "teacher.json", "history.json",
            "loss_curves.png"} <= {p.name for p in out.iterdir()}
    assert (out / "checkpoints" / "step_20").is_dir() and (out / "samples" / "step_20.png").is_file()
    meta = json.loads((out / "teacher.json").read_text())
    assert {k: meta[k] for k in ("preset", "data", "size", "generator", "discriminator", "steps")} == {
        "preset": "tiny", "data": "edges2photos", "size": 64, "generator": "generator",
        "discriminator": "discriminator", "steps": 20}
    assert meta["mlflow_run_id"] == res["mlflow_run_id"]
    assert {"psnr", "ssim", "fid_proxy"} <= set(res["val_metrics"]) and res["val_metrics"]["n"] == 32

    g, d = gexport.load(out / "generator").eval(), gexport.load(out / "discriminator").eval()
    assert (out / "generator" / "generator.onnx").is_file() and not (out / "discriminator" / "generator.onnx").exists()
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert g(x).shape == (1, 3, 64, 64)
        assert d(torch.cat([x, g(x)], 1)).shape[:2] == (1, 1)

    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(res["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.params["generator.ngf"] == "16"
    assert {"loss_d", "loss_g", "l1", "val_psnr"} <= set(run.data.metrics)
    assert {"generator", "samples", "loss_curves.png", "teacher.json"} <= {
        a.path for a in client.list_artifacts(run.info.run_id)}

    # continue the same run from step 20 to 30
    r = cli("--out", str(out), "--resume", "--steps", "30", "--json", "--quiet", env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    res2 = json.loads(r.stdout.strip().splitlines()[-1])
    assert res2["steps"] == 30 and res2["mlflow_run_id"] == res["mlflow_run_id"]
    history = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in history] == list(range(1, 31))
    assert json.loads((out / "teacher.json").read_text())["steps"] == 30
    steps = [m.step for m in client.get_metric_history(res["mlflow_run_id"], "loss_g")]
    assert steps == sorted(set(steps)) and steps[-1] == 30  # no step logged twice

    # an occupied --out without --resume/--overwrite: exit 2, one line naming both flags, nothing touched
    r = cli("--out", str(out), "--steps", "5", env=env)
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0] and "--overwrite" in err[0]
    assert json.loads((out / "teacher.json").read_text())["steps"] == 30
    # unpaired and class-folder data train CycleGAN / conditional teachers: test_train_teacher_unpaired.py
