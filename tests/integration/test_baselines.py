"""`ganprune prune --method cat|ppcd|gan-compression` end to end on one tiny affine-norm teacher:
each finishes, meets the MACs target (≤ target, within 5 %), exports a loadable dense generator and
reports to MLflow in the same schema as the other methods."""
import json
import math

import mlflow
import pytest

from gan import export as gexport
from orchestration.cli import main
from tests.teachers import tiny_teacher

TARGET = 0.3


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("baselines")
    return tiny_teacher(tmp / "teacher", data_root=tmp / "data", size=32, steps=40, norm="instance_affine")


def _prune(method, teacher, tmp_path, *extra):
    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    out = tmp_path / method
    rc = main(["prune", "--method", method, "--teacher", str(teacher), "--macs-target", str(TARGET),
               "--finetune-steps", "4", "--finetune-backend", "torch", "--out", str(out),
               "--tracking-uri", uri, "--quiet", *extra])
    assert rc == 0
    s = json.loads((out / "prune.json").read_text())
    assert 0.95 * s["target_macs"] <= s["macs"] <= s["target_macs"] and s["method"] == method
    g = gexport.load(out)
    assert sum(p.numel() for p in g.parameters()) == s["params"] < s["teacher_params"]
    run = mlflow.MlflowClient(tracking_uri=uri).get_run(json.loads((out / "run.json").read_text())["parent"])
    assert run.info.status == "FINISHED"
    assert {"final_macs", "final_psnr_vs_teacher", "search_s", "finetune_s"} <= set(run.data.metrics)
    return s, out


def test_cat_one_step_prune_and_gka_finetune(teacher, tmp_path):
    s, out = _prune("cat", teacher, tmp_path)
    assert s["objective"] == "gka" and s["threshold"] > 0
    ft = json.loads((out / "finetune" / "finetune.json").read_text())
    assert "ka_mean" in ft["history"][-1]
    assert ft["discriminator_spec_source"] == "given"  # CAT keeps the teacher's whole D


def test_cat_with_the_vem_add_on(teacher, tmp_path):
    s, out = _prune("cat", teacher, tmp_path, "--vem")
    ft = json.loads((out / "finetune" / "finetune.json").read_text())
    assert s["vem"] and ft["add"] == ["vem"] and "vem_ebm_loss" in ft["history"][-1]


def test_ppcd_trains_masks_and_exports_dense(teacher, tmp_path):
    s, out = _prune("ppcd", teacher, tmp_path)
    assert s["final_sparsity"] > 0 and (out / "ppcd" / "ppcd.json").is_file()
    assert "psnr_vs_teacher" in s["fidelity"]
    assert main(["prune", "--method", "ppcd", "--teacher", str(teacher), "--out", str(tmp_path / "x"),
                 "--vem", "--quiet"]) == 2


def test_cat_refuses_a_teacher_without_affine_norms(tmp_path, capsys):
    plain = tiny_teacher(tmp_path / "plain", data_root=tmp_path / "data", size=32, steps=1)
    assert main(["prune", "--method", "cat", "--teacher", str(plain), "--out", str(tmp_path / "c"),
                 "--tracking-uri", "sqlite:///" + str(tmp_path / "m.db"), "--quiet"]) == 2
    assert "affine" in capsys.readouterr().err


def test_gan_compression_supernet_search_and_finetune(teacher, tmp_path):
    s, out = _prune("gan-compression", teacher, tmp_path, "--method-option", "supernet_steps=20",
                    "--method-option", "population=8", "--method-option", "generations=3")
    assert s["objective"] == "distill" and (out / "supernet" / "generator").is_dir()
    ft = json.loads((out / "finetune" / "finetune.json").read_text())
    assert ft["init_generator"].endswith("supernet/generator")  # the fine-tune starts from the supernet
    assert s["feature_distill"] is True and ft["feature_distill"] is True  # ResNet: the taps are distilled
    assert all(math.isfinite(h["distill"]) for h in ft["history"])
    assert s["search_s"] > 0 and "config" in s and s["supernet_steps"] == 20
    assert main(["prune", "--method", "gan-compression", "--teacher", str(teacher), "--out", str(tmp_path / "x"),
                 "--method-option", "magic=1", "--quiet"]) == 2
