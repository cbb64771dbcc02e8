"""`ganprune train-teacher` on unpaired data (→ CycleGAN) and on class folders (→ class-conditional GAN):
run layout, teacher.json kind, exports that load (the A→B pair as generator/ + discriminator/), MLflow,
resume of the same run, and the refusal to resume a run on data of another kind."""
import json
import os
import subprocess
import sys

import mlflow
import numpy as np
import pytest
import torch
from PIL import Image

from gan import export as gexport
from gan.train import checkpoint as ckpt
from orchestration.errors import UsageError
from orchestration.requests import TeacherRequest
from orchestration.teacher import train_teacher


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher_unpaired")
    # one OpenMP thread: the nets are tiny, and a second thread waiting for a core that another process
    # holds makes every op ~10 ms on a shared 2-core box (measured 20× slower steps)
    return {**os.environ, "GANPRUNE_DATA": str(root / "data"), "OMP_NUM_THREADS": "1",
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}


@pytest.fixture
def in_process(env, monkeypatch):
    """train_teacher called here sees the same data root and thread count as the CLI runs."""
    monkeypatch.setenv("GANPRUNE_DATA", env["GANPRUNE_DATA"])
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield env["MLFLOW_TRACKING_URI"]
    torch.set_num_threads(n)


def cli(*args, env):
    r = subprocess.run([sys.executable, "-m", "orchestration.cli", "train-teacher", *args, "--json", "--quiet"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_cyclegan_teacher(tmp_path, env, in_process):
    out = tmp_path / "cg"
    res = cli("--preset", "tiny", "--data", "photo2painting", "--out", str(out), "--steps", "4",
              "--ckpt-every", "2", env=env)  # DeepSpeed backend (the default)
    meta = json.loads((out / "teacher.json").read_text())
    assert meta["kind"] == res["kind"] == "cyclegan" and meta["backend"] == "deepspeed"
    assert {k: meta[k] for k in ("generator", "discriminator", "generator_B", "discriminator_B")} == {
        "generator": "generator", "discriminator": "discriminator", "generator_B": "generator_B",
        "discriminator_B": "discriminator_B"}
    assert {"checkpoints", "samples", "history.json", "loss_curves.png"} <= {p.name for p in out.iterdir()}
    assert (out / "samples" / "step_2.png").is_file() and (out / "samples" / "step_4.png").is_file()
    m = res["val_metrics"]
    assert m["n"] == 25 and {"fid_proxy", "kid_proxy", "fid_proxy_input"} <= set(m) and "psnr" not in m
    history = json.loads((out / "history.json").read_text())
    assert [h["step"] for h in history] == [1, 2, 3, 4]
    assert all(h["loss_g"] == pytest.approx(h["gan_g"] + 10 * h["cycle"] + 5 * h["idt"], rel=1e-5) for h in history)

    # exports: G_A (A→B) is generator/, D_A discriminator/, the B→A pair beside them, each = the checkpoint's
    saved_g = ckpt.read_safetensors(out / "checkpoints" / "step_4" / "G.safetensors")
    saved_d = ckpt.read_safetensors(out / "checkpoints" / "step_4" / "D.safetensors")
    g_keys = [k.split(".", 1)[1] for k in saved_g if k.startswith("G_A.")]
    assert any(not torch.equal(saved_g[f"G_A.{k}"], saved_g[f"G_B.{k}"]) for k in g_keys)  # so a swap shows
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    for folder, member, saved in (("generator", "G_A", saved_g), ("generator_B", "G_B", saved_g),
                                  ("discriminator", "D_A", saved_d), ("discriminator_B", "D_B", saved_d)):
        model = gexport.load(out / folder)
        sd = model.state_dict()
        assert sd.keys() == {k.split(".", 1)[1] for k in saved if k.startswith(member + ".")}, folder
        assert all(torch.equal(v, saved[f"{member}.{k}"]) for k, v in sd.items()), folder
        is_g = folder.startswith("generator")
        assert (out / folder / "generator.onnx").is_file() == is_g
        with torch.no_grad():
            y = model(x)
        assert y.shape == (1, 3, 64, 64) if is_g else y.shape[:2] == (1, 1)

    client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    run = client.get_run(res["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.params["kind"] == "cyclegan"
    assert {"cycle", "idt", "loss_d_A", "val_fid_proxy"} <= set(run.data.metrics)
    assert {"generator", "generator_B", "discriminator_B", "samples"} <= {
        a.path for a in client.list_artifacts(run.info.run_id)}

    # resume without --data: the run's own data and MLflow run, history continues
    res2 = train_teacher(TeacherRequest(out=out, resume=True, steps=6, backend="torch", ckpt_every=2, quiet=True,
                                        tracking_uri=in_process))
    assert res2["kind"] == "cyclegan" and res2["steps"] == 6 and res2["mlflow_run_id"] == res["mlflow_run_id"]
    assert [h["step"] for h in json.loads((out / "history.json").read_text())] == list(range(1, 7))
    with pytest.raises(UsageError, match="cyclegan teacher.*conditional"):
        train_teacher(TeacherRequest(data="photoclasses", out=out, resume=True, steps=8, backend="torch",
                                     quiet=True, tracking_uri=in_process))


def test_conditional_teacher(tmp_path, env):
    out = tmp_path / "cond"
    res = cli("--preset", "tiny", "--data", "photoclasses", "--out", str(out), "--steps", "4",
              "--ckpt-every", "2", "--backend", "torch", env=env)
    meta = json.loads((out / "teacher.json").read_text())
    assert meta["kind"] == "conditional" and meta["batch_size"] == 16 and meta["steps"] == 4
    assert "generator_B" not in meta
    m = res["val_metrics"]
    assert m["n"] == 50 and {"fid_proxy", "kid_proxy", "fid_proxy_train"} <= set(m)
    # after 4 steps G is far from the data; real train images of the same classes are close to val
    assert m["fid_proxy_train"] < 0.5 * m["fid_proxy"]
    grid = Image.open(out / "samples" / "step_4.png")
    assert grid.size == (2 + 10 * 66, 2 + 5 * 66)  # 4 fixed z + 1 real row, one column per class

    g, d = gexport.load(out / "generator"), gexport.load(out / "discriminator")
    assert type(g).__name__ == "ConditionalGenerator" and g.num_classes == 10
    assert type(d).__name__ == "ConditionalDiscriminator"
    z, y = torch.randn(2, g.z_dim), torch.tensor([0, 7])
    with torch.no_grad():
        img = g(z, y)
        assert img.shape == (2, 3, 64, 64) and d(img, y).shape == (2, 1)
    sess = gexport.onnx_session(out / "generator" / "generator.onnx")
    assert [i.name for i in sess.get_inputs()] == ["z", "y"]
    got = sess.run(None, {"z": z.numpy(), "y": y.numpy()})[0]
    assert np.abs(got - img.numpy()).max() < 1e-4
    arch = json.loads((out / "generator" / "architecture.json").read_text())
    assert arch["source"]["kind"] == "conditional" and len(arch["source"]["classes"]) == 10
