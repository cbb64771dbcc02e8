"""Real DeepSpeed runs of the pix2pix trainer (CPU: gloo); each in its own process, as users launch them.

The first ``init_distributed`` on a fresh machine JIT-builds DeepSpeed's shm comm op (~45-140 s, once,
cached in ~/.cache/torch_extensions); afterwards a run starts in ~2 s.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gan.train.engine import RENDEZVOUS_VARS

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _env():
    env = {k: v for k, v in os.environ.items()
           if k not in RENDEZVOUS_VARS}
    return {**env, "PYTHONPATH": str(ROOT)}


def _port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _smoke(tmp_path, name, *args, launcher=()):
    out = tmp_path / f"{name}.json"
    cmd = [*launcher, "-m", "tests.smoke_train", "--steps", "3", "--batch", "4", "--out", str(out), *args]
    if not launcher:
        cmd = [sys.executable, *cmd]
    r = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return json.loads(out.read_text())


def _losses(res):
    return [h[k] for h in res["history"] for k in ("loss_d", "loss_g", "l1")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same run on the plain-torch backend."""
    return _smoke(tmp_path_factory.mktemp("ref"), "torch", "--backend", "torch")


def test_single_process_deepspeed_matches_plain_torch(tmp_path, reference):
    res = _smoke(tmp_path, "ds1", "--ckpt-dir", str(tmp_path / "run"))
    assert res["world_size"] == 1 and len(res["history"]) == 3
    assert _losses(res) == pytest.approx(_losses(reference), rel=1e-5)
    ck = Path(res["checkpoint"])
    assert ck == tmp_path / "run" / "checkpoints" / "step_3" and (ck / "optim_G.rank0.safetensors").is_file()
    print(f"init {res['init_s']:.1f}s, {res['steps_per_sec']:.1f} steps/s")


def test_zero_stage_2_trains(tmp_path, reference):
    res = _smoke(tmp_path, "ds1z2", "--zero", "2")
    assert _losses(res) == pytest.approx(_losses(reference), rel=1e-4)


def test_two_processes_train_the_same_global_batch(tmp_path, reference):
    launcher = [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                "--master_port", str(_port())]
    res = _smoke(tmp_path, "ds2", "--ckpt-dir", str(tmp_path / "run"), launcher=launcher)
    assert res["world_size"] == 2
    # each rank trains half of the batch and DeepSpeed averages the gradients: same run as 1 process
    assert _losses(res) == pytest.approx(_losses(reference), rel=1e-4)
    ck = Path(res["checkpoint"])
    assert {p.name for p in ck.glob("optim_G.rank*.safetensors")} == {
        "optim_G.rank0.safetensors", "optim_G.rank1.safetensors"}


def test_zero_checkpoints_resume_exactly_on_two_processes(tmp_path):
    """ZeRO 1, 2 and 3 on 2 ranks: 6 steps straight == 3 steps + pickle-free checkpoint + fresh trainer
    resumed for 3 more, on a shuffled loader (each rank's shard, optimizer partition and RNG restored)."""
    launcher = [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                "--master_port", str(_port())]
    res = _smoke(tmp_path, "zero_resume", "--steps", "6", "--resume-at", "3", "--zero", "1,2,3",
                 "--ckpt-dir", str(tmp_path / "ck"), launcher=launcher)
    assert res["world_size"] == 2 and sorted(res["resume"]) == ["1", "2", "3"]
    for stage, r in res["resume"].items():
        assert [h["step"] for h in r["resumed"]] == list(range(1, 7)), stage
        assert r["resumed"] == r["straight"], stage  # bit for bit, losses of steps 4-6 included
        assert r["max_weight_diff"] == 0.0, stage
        assert {"optim_G.rank0.safetensors", "optim_G.rank1.safetensors", "optim_D.rank1.json",
                "rng.rank1.safetensors", "G.safetensors"} <= set(r["files"]), stage
        assert not [f for f in r["files"] if f.endswith((".pt", ".pth", ".pkl", ".bin"))]


def test_a_child_of_an_in_process_deepspeed_run_makes_its_own_group():
    """A process that ran DeepSpeed in-process (a notebook, a test worker, `benchmark --jobs`) leaves its
    1-process group's MASTER_PORT in os.environ; a ganprune child that inherits it must not try to listen
    on that port (the parent's store holds it: EADDRINUSE broke three CLI tests in CI)."""
    from torch import nn

    from gan.train.engine import make_engine

    make_engine(nn.Linear(2, 2))  # this process now holds MASTER_PORT's store
    held = os.environ["MASTER_PORT"]
    code = ("import os; from torch import nn; from gan.train.engine import make_engine; "
            "make_engine(nn.Linear(2, 2)); print(os.environ['MASTER_PORT'])")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[-1] != held
