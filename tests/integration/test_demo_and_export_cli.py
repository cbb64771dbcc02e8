"""`ganprune demo` end to end (the console entry point, in a subprocess), then `export --spec`,
`profile --json` and `evaluate` on its outputs (``main`` in this process: a CLI subprocess costs ≈ 10 s
of imports each)."""
import json
import os
import subprocess
import sys

import torch

from gan import export as gexport
from gan.profile import count_params
from orchestration.cli import main


def run_cli(capsys, *args):
    capsys.readouterr()
    rc = main(list(args))
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-2000:]
    return json.loads(captured.out.strip().splitlines()[-1])


def test_demo_export_profile(tmp_path, monkeypatch, capsys):
    env = {"GANPRUNE_DATA": str(tmp_path / "data"), "GANPRUNE_CACHE": str(tmp_path / "cache"),
           "MLFLOW_TRACKING_URI": "sqlite:///" + str(tmp_path / "mlflow.db")}
    out = tmp_path / "demo"
    # the whole pipeline at preset tiny with short budgets (the real demo: `make demo`, see README)
    r = subprocess.run([sys.executable, "-m", "orchestration.cli", "demo", "--out", str(out), "--teacher-steps", "30",
                        "--iterations", "1", "--episodes", "2", "--finetune-steps", "2", "--json", "--quiet"],
                       capture_output=True, text=True, env={**os.environ, **env}, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert res["macs"] <= res["target_macs"] and res["macs"] >= 0.98 * res["target_macs"]
    assert res["params"] < res["teacher_params"]
    dl = res["deploy_latency"]  # the speed story at a deployment size, beside the 64² one
    assert dl["size"] == 256 and dl["teacher_ms"] > 0 and dl["pruned_ms"] > 0 and dl["macs_ratio"] > 3
    assert {"psnr", "ssim", "fid_proxy", "miou", "psnr_vs_teacher"} <= set(res["pruned_fidelity"])
    for d in ("teacher", "pruned"):
        assert {"architecture.json", "generator.safetensors", "generator.onnx", "metrics.json",
                "samples.png"} <= {p.name for p in (out / d).iterdir()}
    assert (out / "marl" / "keep_ratios.png").is_file() and (tmp_path / "cache" / "teachers").is_dir()

    # export the teacher again through the demo's spec: the pruned architecture (weights differ: fine-tuned)
    again = tmp_path / "again"
    res2 = run_cli(capsys, "export", str(out / "teacher"), "--spec", str(out / "spec.json"), "--out", str(again),
                   "--json", "--quiet")
    assert res2["macs"] == res["macs"]
    a, b = gexport.load(again).eval(), gexport.load(out / "pruned").eval()
    assert count_params(a) == count_params(b) == res["params"]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert a(x).shape == b(x).shape

    prof = run_cli(capsys, "profile", str(again), "--json", "--quiet", "--runs", "3")
    assert prof["macs"] == res["macs"] and prof["onnx_latency"]["median_ms"] > 0

    # fidelity of the pruned export vs ground truth and vs the teacher; mIoU on labels→photo
    ev = run_cli(capsys, "evaluate", str(out / "pruned"), "--data", "edges2photos", "--teacher", str(out / "teacher"),
                 "--max-items", "16", "--json", "--quiet")
    assert ev["n"] == 16 and {"fid_proxy", "kid_proxy", "psnr", "ssim", "psnr_vs_teacher"} <= set(ev)
    assert "fid" not in ev  # no Inception weights here: never labelled FID
    ev = run_cli(capsys, "evaluate", str(out / "teacher"), "--data", "labels2textures", "--teacher", str(out / "teacher"),
                 "--max-items", "8", "--json", "--quiet")
    assert 0 <= ev["miou"] <= 100 and ev["miou_real_photos"] > ev["miou"]
    assert ev["psnr_vs_teacher"] == 100.0  # identical outputs: capped PSNR

    # an occupied --out is refused, exit 2, nothing touched
    capsys.readouterr()
    assert main(["export", str(out / "teacher"), "--out", str(again)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (again / "generator.onnx").exists()
