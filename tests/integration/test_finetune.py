"""`ganprune finetune` end to end on a test-made tiny teacher (teacher.json + G/D exports)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gan import export as gexport
from gan.train.engine import RENDEZVOUS_VARS
from orchestration.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def teacher(teacher_and_spec):
    return teacher_and_spec


def _env():
    env = {k: v for k, v in os.environ.items()
           if k not in RENDEZVOUS_VARS}
    return {**env, "PYTHONPATH": str(ROOT)}


def _cli(*args, timeout=300):
    r = subprocess.run([sys.executable, "-m", "orchestration.cli", "finetune", *map(str, args), "--json"],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)
    return r


def _check(res, out, teacher_dir):
    assert (out / "finetune.json").is_file()
    assert json.loads((out / "finetune.json").read_text())["after"] == res["after"]
    for f in ("architecture.json", "generator.safetensors", "generator.onnx", "samples.png"):
        assert (out / "generator" / f).is_file(), f
    g = gexport.load(out / "generator")
    t = gexport.load(teacher_dir / "generator")
    assert sum(p.numel() for p in g.parameters()) < sum(p.numel() for p in t.parameters())
    assert res["macs"] <= 0.25 * res["teacher_macs"]
    gexport.load(out / "discriminator")
    # the must-show: fine-tuning from the teacher brings the pruned student closer to it
    assert res["after"]["psnr_vs_teacher"] > res["before"]["psnr_vs_teacher"] + 1.0, res


def test_finetune_density_cli_torch(teacher, tmp_path):
    tdir, spec = teacher
    out = tmp_path / "ft"
    r = _cli("--teacher", tdir, "--spec", spec, "--objective", "density", "--steps", 15,
             "--backend", "torch", "--out", out, "--quiet")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["objective"] == "density" and res["steps"] == 15
    assert res["discriminator_spec"] and res["discriminator_keep_ratio"] < 1
    assert "density" in res["history"][-1]
    _check(res, out, tdir)


def test_finetune_refuses_nonempty_out_and_later_terms(teacher, tmp_path, capsys):
    tdir, spec = teacher
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    base = ["finetune", "--teacher", str(tdir), "--spec", str(spec), "--backend", "torch", "--steps", "0"]
    assert main(base + ["--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    assert main(base + ["--out", str(tmp_path / "x"), "--add", "magic"]) == 2
    assert "unknown --add magic" in capsys.readouterr().err
    assert main(base + ["--out", str(tmp_path / "y"), "--teacher", str(tmp_path)]) == 2


def test_finetune_explicit_generator_and_discriminator_spec(teacher, tmp_path):
    from orchestration.finetune import finetune, read_teacher
    from orchestration.requests import FinetuneRequest

    tdir, spec = teacher
    gspec = json.loads(spec.read_text())["spec"]
    t = read_teacher(tdir)
    dspec = {g.name: list(range(g.size // 2)) for g in t["D"].channel_groups()}
    both = tmp_path / "both.json"
    both.write_text(json.dumps({"generator": gspec, "discriminator": dspec}))
    res = finetune(FinetuneRequest(tdir, both, tmp_path / "ft", objective="l1", steps=0, backend="torch",
                                   quiet=True, export_onnx=False))
    assert res["discriminator_spec"] == {
        k: len(v) for k, v in dspec.items()}
    assert res["before"] == res["after"]  # zero steps: nothing changed


def test_finetune_gka_objective_and_add_on(teacher, tmp_path):
    """CAT's objective alone, and as an add-on to L1 distillation: the KA stats reach the history."""
    from orchestration.finetune import finetune
    from orchestration.requests import FinetuneRequest

    tdir, spec = teacher
    for objective, add in (("gka", ()), ("l1", ("gka", "vem"))):
        res = finetune(FinetuneRequest(tdir, spec, tmp_path / objective, objective=objective, add=add, steps=3,
                                       backend="torch", quiet=True, export_onnx=False))
        last = res["history"][-1]
        assert 0.0 <= last["ka_mean"] <= 1.0 and res["add"] == list(add)
    assert "vem" in last and "vem_ebm_loss" in last  # VEM's EBM stepped inside the hook


@pytest.mark.slow
def test_finetune_l1_cli_deepspeed(teacher, tmp_path):
    tdir, spec = teacher
    out = tmp_path / "ft_ds"
    r = _cli("--teacher", tdir, "--spec", spec, "--objective", "l1", "--steps", 30,
             "--backend", "deepspeed", "--out", out, "--quiet", timeout=400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["backend"] == "deepspeed"
    _check(res, out, tdir)


def test_finetune_checkpoints_and_resumes(teacher, tmp_path, capsys):
    from gan.train import checkpoint as ckpt

    tdir, spec = teacher
    out = tmp_path / "ft"
    args = [str(a) for a in ("finetune", "--teacher", tdir, "--spec", spec, "--out", out, "--backend", "torch",
                             "--objective", "l1", "--ckpt-every", "2", "--quiet", "--json")]
    assert main([*args, "--steps", "4"]) == 0
    assert [p.name for p in ckpt.complete(out)] == ["step_2", "step_4"]
    capsys.readouterr()
    assert main([*args, "--steps", "6"]) == 2  # an occupied --out without --resume is refused
    assert "--resume" in capsys.readouterr().err
    assert main([*args, "--steps", "6", "--resume"]) == 0  # continues at step 4, two more steps
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [h["step"] for h in res["history"]][-3:] == [4, 5, 6]
    assert [p.name for p in ckpt.complete(out)] == ["step_4", "step_6"]  # newest two kept


def test_finetune_with_memory_bank_neighbourhoods_and_bad_density_options(teacher, tmp_path, capsys):
    """--objective density draws its neighbours from a memory bank by default: the nearest other training
    inputs in the teacher's feature space (docs/methods.md, "MGGC density objective"); bad options exit 2
    before any work."""
    tdir, spec = teacher
    base = ["finetune", "--teacher", str(tdir), "--spec", str(spec), "--backend", "torch", "--quiet"]
    for bad, msg in ((["--density-option", "neighbours=memory"], "unknown --density-option 'neighbours'; known:"),
                     (["--density-option", "neighbors=knn"], "unknown neighbors 'knn'; use 'jitter' or 'memory'"),
                     (["--density-option", "neighbors=memory", "--objective", "l1"],
                      "--density-option sets the density objective"),
                     (["--density-option", "bank_size=16"],  # the default objective is l1 (docs/methods.md)
                      "drop it or add --objective density (the objective is l1)")):
        out = tmp_path / "bad"
        assert main(base + ["--steps", "1", "--out", str(out), *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and len(err.splitlines()) == 1, err
        assert not out.exists()
    out = tmp_path / "memory"
    assert main(base + ["--steps", "4", "--out", str(out), "--objective", "density",
                        "--density-option", "bank_size=16"]) == 0
    res = json.loads((out / "finetune.json").read_text())
    assert res["density"]["neighbors"] == "memory" and res["density"]["bank_size"] == 16
    assert "density" in res["history"][-1]
