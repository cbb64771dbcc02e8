"""``ganprune finetune --ray-workers 2``: the fine-tune in two Ray Train workers (TorchTrainer, gloo, real
DeepSpeed engines), one set of outputs, the layout of a 1-process run, and worker-side bad input as one
line with exit 2.

One local Ray instance (2 CPUs, started as the commands start it) serves the module: Ray start and each
worker group's DeepSpeed import cost seconds to tens of seconds on 2 shared cores.
"""
import json
import shutil

import pytest
import torch

from gan import export as gexport
from orchestration.cli import main
from orchestration.ray_finetune import STORAGE

pytestmark = pytest.mark.slow
SIZE = 32
STEPS = 4


@pytest.fixture(scope="module")
def teacher(teacher_and_spec):
    return teacher_and_spec


def _finetune(capsys, *args):
    rc = main(["finetune", *map(str, args), "--objective", "l1", "--steps", str(STEPS), "--json", "--quiet"])
    out, err = capsys.readouterr()
    return rc, out, err


def test_two_ray_workers_fine_tune_like_one_process(ray_local, teacher, tmp_path, capsys):
    tdir, spec = teacher
    # the 1-process reference on the torch engine: it keeps DeepSpeed's process group out of pytest
    rc, out, err = _finetune(capsys, "--teacher", tdir, "--spec", spec, "--out", tmp_path / "one", "--backend", "torch")
    assert rc == 0, err
    one = json.loads(out.strip().splitlines()[-1])
    rc, out, err = _finetune(capsys, "--teacher", tdir, "--spec", spec, "--out", tmp_path / "ray",
                             "--ray-workers", 2)
    assert rc == 0, err
    lines = out.strip().splitlines()
    res = json.loads(lines[-1])
    assert len(lines) == 1 and not err.strip()  # --quiet --json: the JSON object and nothing else

    assert res["num_procs"] == 2 and res["ray_workers"] == 2 and one["num_procs"] == 1
    assert json.loads((tmp_path / "ray" / "finetune.json").read_text()) == res
    assert set(res) == set(one) | {"ray_workers", "ray_fit_seconds"}
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    assert not (tmp_path / STORAGE).exists()  # Ray Train's storage is removed after the run
    assert res["backend"] == "deepspeed"
    for k in ("generator_spec", "discriminator_spec", "macs", "steps"):
        assert res[k] == one[k], k
    # the same pruned pair before training (rounding only: a worker runs 1 thread, pytest 2)
    assert res["before"] == pytest.approx(one["before"], rel=1e-6)
    g = gexport.load(tmp_path / "ray" / "generator")
    assert g.architecture() == gexport.load(tmp_path / "one" / "generator").architecture()
    gexport.load(tmp_path / "ray" / "discriminator")
    # each worker trains its half of the same global batch and DeepSpeed averages: the first step's
    # losses (before any update) are the 1-process ones
    h1, h2 = one["history"], res["history"]
    assert [h["step"] for h in h1] == [h["step"] for h in h2] == list(range(1, STEPS + 1))
    for k in ("loss_d", "l1", "loss_g"):
        assert h2[0][k] == pytest.approx(h1[0][k], rel=1e-4), k


def _broken_copy(tdir, dst, break_it):
    shutil.copytree(tdir, dst)
    meta = json.loads((dst / "teacher.json").read_text())
    break_it(dst, meta)
    (dst / "teacher.json").write_text(json.dumps(meta))
    return dst


def test_nan_loss_inside_the_workers_is_one_line_exit_2(ray_local, teacher, tmp_path, capsys):
    """A diverged teacher (inf weights): every worker's first step is non-finite; the driver checks can't see it."""
    tdir, spec = teacher

    def inf_weights(dst, meta):
        g = gexport.load(dst / "generator")
        with torch.no_grad():
            next(g.parameters()).fill_(float("inf"))
        shutil.rmtree(dst / "generator")
        gexport.save(g, dst / "generator", size=SIZE, onnx=False, latency_runs=1)

    bad = _broken_copy(tdir, tmp_path / "diverged", inf_weights)
    rc, out, err = _finetune(capsys, "--teacher", bad, "--spec", spec, "--out", tmp_path / "ft", "--ray-workers", 2)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganprune finetune: error: non-finite "), err
    assert "at step 1" in lines[0]


def test_bad_data_seen_by_rank_0_is_one_line_exit_2(ray_local, teacher, tmp_path, capsys):
    """The dataset is opened by rank 0 alone (under ``main_first``): rank 1 waits, then stops quietly."""
    tdir, spec = teacher

    def corrupt_image(dst, meta):
        data = dst / "data"
        shutil.copytree(meta["data"], data)
        victim = sorted((data / "train").iterdir())[0]
        victim.write_bytes(b"not a png")
        meta["data"] = str(data)

    bad = _broken_copy(tdir, tmp_path / "bad_data", corrupt_image)
    rc, out, err = _finetune(capsys, "--teacher", bad, "--spec", spec, "--out", tmp_path / "ft", "--ray-workers", 2)
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "corrupt image" in lines[0] and lines[0].startswith("ganprune finetune: error:"), err


def test_prune_fine_tunes_the_found_pair_on_ray_workers(ray_local, teacher, tmp_path):
    """``prune --finetune-workers 2``: the method's pair goes through the same Ray Train fine-tune."""
    tdir, _ = teacher
    out = tmp_path / "uniform"
    assert main(["prune", "--method", "uniform", "--teacher", str(tdir), "--macs-target", "0.25",
                 "--finetune-steps", "2", "--finetune-workers", "2", "--out", str(out),
                 "--tracking-uri", "sqlite:///" + str(tmp_path / "mlflow.db"), "--quiet"]) == 0
    ft = json.loads((out / "finetune" / "finetune.json").read_text())
    assert ft["ray_workers"] == ft["num_procs"] == 2 and ft["backend"] == "deepspeed" and ft["steps"] == 2
    s = json.loads((out / "prune.json").read_text())
    assert s["fidelity"] == ft["after"] and s["macs"] == ft["macs"]
    assert gexport.load(out / "generator").architecture() == gexport.load(out / "finetune" / "generator").architecture()
    assert not (out / STORAGE).exists()
