"""The bad-input table (issue #7, item 4; docs/bad_input.md), one test per row.

Every row drives the real CLI in-process and checks the contract of ``orchestration/cli.py``: exit 2,
exactly one stderr line that names the problem and the fix (no traceback), and nothing a user
already had is touched.  Everything is tiny (32², one residual block, torch backend) so the whole
table runs in well under a minute; each message is printed (``pytest -rP``) for docs/bad_input.md.
"""
import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from orchestration.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

#: a preset small enough that a 2-step teacher run (checkpoints, exports, eval) takes seconds
PRESET = ("resolution: 32\ndataset: edges2photos\ngenerator: {ngf: 8, n_blocks: 1}\n"
          "discriminator: {ndf: 8, n_layers: 2}\n")


class Env:
    """The shared pieces: a real ``train-teacher`` run (2 steps, checkpoints step_1 and step_2), its
    preset, an MLflow store in tmp, and a scratch folder."""

    def __init__(self, tmp: Path):
        self.tmp, self.uri = tmp, f"sqlite:///{tmp / 'mlflow.db'}"
        self.preset = tmp / "preset.yaml"
        self.preset.write_text(PRESET)
        self.teacher = tmp / "teacher"

    def copy_teacher(self, name: str) -> Path:
        dst = self.tmp / name
        shutil.copytree(self.teacher, dst)
        return dst


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad_input")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GANPRUNE_DATA", str(tmp / "data"))
        mp.setenv("GANPRUNE_CACHE", str(tmp / "cache"))  # never train a preset teacher into ~/.cache
        e = Env(tmp)
        assert main(["train-teacher", "--preset", str(e.preset), "--out", str(e.teacher), "--steps", "2",
                     "--ckpt-every", "1", "--backend", "torch", "--tracking-uri", e.uri, "--quiet"]) == 0
        yield e


def fails(capsys, *argv) -> str:
    """Run ``ganprune *argv``; it must exit 2 with one non-empty stderr line and no traceback."""
    earlier = capsys.readouterr().out  # this test's earlier messages, printed again below
    rc = main([str(a) for a in argv])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2, err
    assert len(err) == 1, err
    assert err[0].startswith(f"ganprune {argv[0]}: error: ") and "Traceback" not in err[0]
    print(earlier + err[0])  # shown by `pytest -rP`: the message column of docs/bad_input.md
    return err[0]


def snapshot(root: Path, mtimes: bool = True) -> dict:
    """Every file under ``root`` → content hash (and mtime): equal snapshots mean untouched."""
    return {str(p.relative_to(root)): (hashlib.sha1(p.read_bytes()).hexdigest(),
                                       p.stat().st_mtime_ns if mtimes else 0)
            for p in sorted(root.rglob("*")) if p.is_file()}


def image(path: Path, w: int, h: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 127, np.uint8)).save(path)


def test_row1_malformed_dataset_folder(env, capsys):
    odd = env.tmp / "odd"
    image(odd / "train" / "a.png", 33, 16)
    msg = fails(capsys, "data", "check", odd)
    assert "odd/train/a.png" in msg and "width 33 is odd" in msg and "expected even width" in msg
    out = env.tmp / "row1_out"
    assert fails(capsys, "train-teacher", "--preset", env.preset, "--data", odd, "--out", out,
                 "--backend", "torch", "--tracking-uri", env.uri, "--quiet") == msg.replace("data:", "train-teacher:")
    assert not out.exists()  # refused before anything was written

    flat = env.tmp / "flat"  # no split folders at all
    flat.mkdir()
    (flat / "notes.txt").write_text("not a dataset")
    msg = fails(capsys, "data", "check", flat)
    assert "cannot detect the dataset layout" in msg and "<root>/<split>/*.png" in msg and "trainA" in msg
    assert [p.name for p in flat.iterdir()] == ["notes.txt"]


def test_row2_mixed_image_sizes_in_one_split(env, capsys):
    mixed = env.tmp / "mixed"
    image(mixed / "train" / "a.png", 64, 32)
    image(mixed / "train" / "b.png", 32, 16)
    before = snapshot(mixed)
    msg = fails(capsys, "data", "check", mixed)
    assert "mixed/train/b.png" in msg and "32x16 differs from 64x32 of a.png" in msg and "one size" in msg
    out = env.tmp / "row2_out"
    fails(capsys, "train-teacher", "--preset", env.preset, "--data", mixed, "--out", out, "--backend", "torch",
          "--tracking-uri", env.uri, "--quiet")
    assert not out.exists() and snapshot(mixed) == before


def test_row3_empty_split(env, capsys):
    some = env.tmp / "empty_train"  # train/ empty, val/ has images: the layout is known
    (some / "train").mkdir(parents=True)
    image(some / "val" / "a.png", 64, 32)
    msg = fails(capsys, "data", "check", some)
    assert "empty_train/train: no images" in msg and "<root>/<split>/*.png" in msg

    only = env.tmp / "only_empty"  # the only split is empty: name it, not just "cannot detect"
    (only / "train").mkdir(parents=True)
    msg = fails(capsys, "data", "check", only)
    assert "only_empty/train: empty split folder (no images)" in msg and "expected aligned" in msg


def test_row4_macs_target_out_of_reach(env, capsys):
    before = snapshot(env.teacher)
    common = ["--method", "uniform", "--teacher", env.teacher, "--finetune-backend", "torch",
              "--tracking-uri", env.uri, "--quiet"]
    low, high = env.tmp / "row4_low", env.tmp / "row4_high"
    msg = fails(capsys, "prune", *common, "--macs-target", "1e-9", "--out", low)
    assert "below" in msg and "minimum channels allow at 32²" in msg and "raise --macs-target" in msg
    msg = fails(capsys, "prune", *common, "--macs-target", "1e15", "--out", high)
    assert "above the full model's" in msg and "give a fraction ≤ 1 or a smaller count" in msg
    assert not low.exists() and not high.exists()  # a corrected rerun is not refused as "not empty"
    assert snapshot(env.teacher) == before


def test_row5_unknown_method_preset_and_config_key(env, capsys):
    out = env.tmp / "row5_out"
    msg = fails(capsys, "prune", "--method", "magic", "--teacher", env.teacher, "--out", out,
                "--tracking-uri", env.uri, "--quiet")
    assert "unknown --method 'magic'" in msg and "available: marl, marl-greedy, random, evolution, uniform, l1" in msg
    msg = fails(capsys, "benchmark", "--methods", "uniform,magic", "--teacher", env.teacher, "--out", out,
                "--tracking-uri", env.uri, "--quiet")
    assert "unknown --methods magic" in msg and "available:" in msg
    msg = fails(capsys, "train-teacher", "--preset", "huge", "--out", out, "--tracking-uri", env.uri, "--quiet")
    assert "unknown preset or config 'huge'" in msg and "presets: " in msg and "tiny" in msg
    bad = env.tmp / "typo.yaml"
    bad.write_text(PRESET.replace("n_blocks: 1", "n_blcoks: 1"))
    msg = fails(capsys, "train-teacher", "--preset", bad, "--out", out, "--tracking-uri", env.uri, "--quiet")
    assert "typo.yaml.generator: unknown config key 'n_blcoks'" in msg and "known keys: ngf, n_blocks" in msg
    assert not out.exists()


def test_row6_corrupt_checkpoint(env, capsys):
    run = env.copy_teacher("row6_run")
    g = run / "checkpoints" / "step_2" / "G.safetensors"
    g.write_bytes(g.read_bytes()[:64])  # truncated, as by a full disk or a killed copy
    before = snapshot(run)
    msg = fails(capsys, "train-teacher", "--out", run, "--resume", "--steps", "3", "--backend", "torch",
                "--tracking-uri", env.uri, "--quiet")
    assert f"corrupt checkpoint file {g}" in msg and f"delete {g.parent} to resume from an earlier" in msg
    assert "--overwrite" in msg
    assert snapshot(run) == before

    fits = env.copy_teacher("row6_other_preset")  # a sound checkpoint resumed with another preset's widths
    before = snapshot(fits)
    msg = fails(capsys, "train-teacher", "--out", fits, "--resume", "--preset", "tiny", "--steps", "3",
                "--backend", "torch", "--tracking-uri", env.uri, "--quiet")
    assert "G.safetensors does not fit this run's G" in msg and f"resume with --preset {env.preset}" in msg
    assert snapshot(fits) == before

    export = env.tmp / "row6_export"
    shutil.copytree(env.teacher / "generator", export)
    w = export / "generator.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    msg = fails(capsys, "profile", export, "--quiet")
    assert f"corrupt or truncated {w}" in msg and "re-export it" in msg


def test_row7_pickled_checkpoint_is_refused(env, capsys):
    run = env.copy_teacher("row7_run")
    g = run / "checkpoints" / "step_2" / "G.safetensors"
    state = {k: v.clone() for k, v in load_file(str(g)).items()}  # copies: load_file maps the file
    torch.save(state, g)  # a torch.save pickle under a .safetensors name
    before = snapshot(run)
    msg = fails(capsys, "train-teacher", "--out", run, "--resume", "--steps", "3", "--backend", "torch",
                "--tracking-uri", env.uri, "--quiet")
    assert f"refusing pickled file {g}" in msg and "safetensors + JSON only" in msg
    assert snapshot(run) == before

    pt = env.tmp / "generator.pt"
    torch.save(load_file(str(env.teacher / "generator" / "generator.safetensors")), pt)
    msg = fails(capsys, "profile", pt, "--quiet")
    assert f"refusing pickled checkpoint {pt}" in msg and "safetensors + architecture.json only" in msg
    assert "re-export with `ganprune export`" in msg


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1"])
def test_row8_ray_address_without_a_cluster(env, capsys, address):
    out = env.tmp / f"row8_{address.replace(':', '_').replace('/', '')}"
    t0 = time.perf_counter()
    msg = fails(capsys, "prune", "--method", "marl", "--teacher", env.teacher, "--address", address,
                "--iterations", "1", "--episodes", "1", "--finetune-backend", "torch", "--out", out,
                "--tracking-uri", env.uri, "--quiet")
    assert time.perf_counter() - t0 < 30  # Ray alone retries a dead address for 10+ minutes
    assert f"no Ray cluster at --address {address}" in msg and "ray start --head" in msg
    assert "drop --address" in msg
    assert not out.exists()


def test_row9_unreachable_tracking_server(env, capsys):
    dead = "http://127.0.0.1:9"
    out = env.tmp / "row9_out"
    for argv in (["train-teacher", "--preset", env.preset, "--backend", "torch"],
                 ["prune", "--method", "uniform", "--teacher", env.teacher],
                 ["prune", "--method", "uniform"],  # fails before the preset's teacher would be trained
                 ["benchmark", "--preset", env.preset, "--methods", "uniform"]):
        t0 = time.perf_counter()
        msg = fails(capsys, *argv, "--out", out, "--tracking-uri", dead, "--quiet")
        assert time.perf_counter() - t0 < 10
        assert f"cannot reach MLflow tracking server at {dead}" in msg and "drop --tracking-uri" in msg
    assert not out.exists() and not (env.tmp / "cache").exists()


def test_row10_non_finite_loss_names_step_and_checkpoint(env, capsys):
    """A NaN/inf loss through the CLI: resuming from weights that hold NaN (what a diverged run
    leaves) makes the very next step's loss NaN; no CLI knob (e.g. an lr) is needed to provoke it."""
    run = env.copy_teacher("row10_run")
    last = run / "checkpoints" / "step_2"
    g = last / "G.safetensors"
    save_file({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v.clone()
               for k, v in load_file(str(g)).items()}, str(g))
    before = snapshot(run, mtimes=False)
    msg = fails(capsys, "train-teacher", "--out", run, "--resume", "--steps", "4", "--backend", "torch",
                "--tracking-uri", env.uri, "--quiet")
    assert "non-finite loss" in msg and "=nan at step 3" in msg
    assert f"last good checkpoint: resume from {last}" in msg and "lower the lr or check the data" in msg
    assert snapshot(run, mtimes=False) == before  # no step_3, no new export; the exports of step 2 stay


def test_row11_out_dir_holding_another_run(env, capsys):
    other = env.copy_teacher("row11_other_run")
    spec = env.tmp / "spec.json"
    spec.write_text(json.dumps({"spec": {}, "keep_ratio": 0.5}))
    before = snapshot(other)
    msg = fails(capsys, "train-teacher", "--preset", env.preset, "--out", other, "--steps", "2",
                "--backend", "torch", "--tracking-uri", env.uri, "--quiet")
    assert f"{other} is not empty" in msg and "--resume" in msg and "--overwrite" in msg
    msg = fails(capsys, "prune", "--method", "uniform", "--teacher", env.teacher, "--out", other,
                "--finetune-backend", "torch", "--tracking-uri", env.uri, "--quiet")
    assert f"{other} is not empty" in msg and "--resume" in msg and "--overwrite" in msg
    msg = fails(capsys, "finetune", "--teacher", env.teacher, "--spec", spec, "--out", other, "--steps", "1",
                "--backend", "torch", "--quiet")
    assert f"{other} is not empty" in msg and "--overwrite" in msg and "another --out" in msg
    msg = fails(capsys, "benchmark", "--preset", env.preset, "--teacher", env.teacher, "--methods", "uniform",
                "--out", other, "--finetune-backend", "torch", "--tracking-uri", env.uri, "--quiet")
    assert f"{other} is not empty" in msg and "--overwrite" in msg and "--resume" in msg
    assert snapshot(other) == before


def test_row11_overwrite_with_bad_input_keeps_the_old_run(env, capsys):
    """``--overwrite`` replaces a run only once the new inputs are good: bad input leaves it whole."""
    old = env.copy_teacher("row11_overwrite")
    before = snapshot(old)
    odd = env.tmp / "odd_overwrite"
    image(odd / "train" / "a.png", 33, 16)
    msg = fails(capsys, "train-teacher", "--preset", env.preset, "--data", odd, "--out", old, "--overwrite",
                "--backend", "torch", "--tracking-uri", env.uri, "--quiet")
    assert "width 33 is odd" in msg
    msg = fails(capsys, "prune", "--method", "uniform", "--teacher", env.tmp / "no_such_teacher", "--out", old,
                "--overwrite", "--finetune-backend", "torch", "--tracking-uri", env.uri, "--quiet")
    assert "no_such_teacher" in msg
    msg = fails(capsys, "prune", "--method", "uniform", "--teacher", old, "--out", old, "--overwrite",
                "--finetune-backend", "torch", "--tracking-uri", env.uri, "--quiet")
    assert "lies inside --out" in msg and "--overwrite would delete" in msg
    msg = fails(capsys, "benchmark", "--preset", env.preset, "--teacher", env.tmp / "no_such_teacher",
                "--methods", "uniform", "--out", old, "--overwrite", "--finetune-backend", "torch",
                "--tracking-uri", env.uri, "--quiet")
    assert "no_such_teacher" in msg
    assert snapshot(old) == before


def test_row15_search_backend_and_its_options(env, capsys):
    """``--backend``/``--search-backend`` and ``--backend-option``: unknown keys, values of the wrong type
    and settings the backend cannot take are refused before any work (no teacher, no --out)."""
    out = env.tmp / "row15_out"
    base = ("--teacher", env.teacher, "--out", out, "--tracking-uri", env.uri, "--quiet")
    msg = fails(capsys, "prune", "--method", "marl", "--backend", "supernet", "--backend-option", "train_step=5", *base)
    assert "unknown --backend-option 'train_step' for --backend supernet; known: train_steps, fractions" in msg
    msg = fails(capsys, "prune", "--method", "marl", "--backend", "supernet", "--backend-option",
                "train_steps=many", *base)
    assert "--backend-option train_steps='many' for --backend supernet: expected int" in msg
    msg = fails(capsys, "prune", "--method", "random", "--backend-option", "objective=magic", *base)
    assert "objective='magic': choose one of density, l1, gka, distill" in msg
    msg = fails(capsys, "prune", "--method", "marl", "--backend", "supernet", "--backend-steps", "4", *base)
    assert "without fine-tune steps" in msg and "drop --backend-steps or use --backend local" in msg
    msg = fails(capsys, "prune", "--method", "l1", "--backend", "supernet", *base)
    assert "set the search backend of --method marl / marl-greedy / random" in msg and "drop them" in msg
    msg = fails(capsys, "prune", "--method", "marl", "--backend-option", "vem", *base)
    assert "--backend-option 'vem' is not KEY=VALUE" in msg
    msg = fails(capsys, "benchmark", "--preset", env.preset, "--methods", "marl,uniform", "--search-backend",
                "supernet", "--backend-option", "cache=maybe", *base)
    assert "cache='maybe' for --backend supernet: expected bool" in msg
    assert not out.exists()
