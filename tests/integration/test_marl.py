"""`ganprune prune --method marl` end to end: real RLlib PPO with two policies, real MLflow store,
fine-tune, export; `inspect` loads the policies; the search resumes from its checkpoint."""
import json

import mlflow
import pytest

from agents.marl import MarlConfig, MarlSearch, checkpoints
from gan import export as gexport
from orchestration.cli import main
from tests.teachers import tiny_teacher

TARGET = 0.3


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("marl")
    return tiny_teacher(tmp / "teacher", data_root=tmp / "data", size=32, steps=40)


@pytest.fixture(scope="module")
def pruned(teacher, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "marl"
    uri = "sqlite:///" + str(out.parent / "mlflow.db")
    rc = main(["prune", "--method", "marl", "--teacher", str(teacher), "--macs-target", str(TARGET),
               "--iterations", "2", "--episodes", "2", "--backend-steps", "1", "--finetune-steps", "2",
               "--finetune-backend", "torch", "--out", str(out), "--tracking-uri", uri, "--quiet"])
    assert rc == 0
    return out, uri


def test_prune_hits_the_target_and_exports_a_loadable_generator(pruned, teacher):
    out, _ = pruned
    s = json.loads((out / "prune.json").read_text())
    assert s["macs"] <= s["target_macs"] and s["macs"] >= 0.98 * s["target_macs"]
    assert s["iterations"] == 2 and s["params"] < s["teacher_params"]
    g = gexport.load(out)  # the run directory resolves to its generator export
    assert gexport.read_architecture(out / "generator")["macs"] == s["macs"]
    assert sum(p.numel() for p in g.parameters()) == s["params"]
    for f in ("history.json", "keep_ratios.png", "gd_balance.png", "best_spec.json", "finetune/finetune.json"):
        assert (out / f).is_file(), f
    best = json.loads((out / "best_spec.json").read_text())
    assert set(best) >= {"generator", "discriminator", "best"}


def test_mlflow_has_the_parent_run_both_agents_and_the_keep_ratio_plot(pruned):
    out, uri = pruned
    client = mlflow.MlflowClient(tracking_uri=uri)
    ids = json.loads((out / "run.json").read_text())
    parent = client.get_run(ids["parent"])
    assert parent.info.status == "FINISHED"
    assert {"generator_return", "discriminator_return", "best_generator_own", "final_psnr_vs_teacher"} <= set(
        parent.data.metrics)
    assert len(client.get_metric_history(ids["parent"], "generator_return")) == 2
    assert parent.data.metrics["env_steps_per_s"] > 0 and parent.data.metrics["evaluations_per_s"] >= 0
    arts = {a.path for a in client.list_artifacts(ids["parent"])}
    assert {"keep_ratios.png", "gd_balance.png", "prune.json", "generator", "policies"} <= arts
    for agent in ("generator", "discriminator"):
        child = client.get_run(ids[agent])
        assert child.data.tags["mlflow.parentRunId"] == ids["parent"]
        assert "return" in child.data.metrics and any(k.startswith("keep.") for k in child.data.metrics)
    assert client.get_registered_model("ganprune-generator").latest_versions


def test_inspect_shows_each_policys_decisions(pruned, capsys):
    out, uri = pruned
    assert main(["inspect", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    teacher_groups = json.loads((out / "best_spec.json").read_text())
    for agent in ("generator", "discriminator"):
        assert set(res["policy"][agent]) == set(teacher_groups[agent])
        assert set(res["best"][agent]) == set(teacher_groups[agent])
    run_id = json.loads((out / "run.json").read_text())["parent"]
    assert main(["inspect", run_id, "--tracking-uri", uri, "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run"] == str(out.resolve())


def test_export_of_a_prune_run(pruned, tmp_path):
    out, _ = pruned
    assert main(["export", str(out), "--out", str(tmp_path / "pruned"), "--format", "safetensors", "--quiet"]) == 0
    assert gexport.load(tmp_path / "pruned") is not None


def test_non_empty_out_is_refused_without_resume(pruned, teacher, capsys):
    out, uri = pruned
    before = sorted(p.name for p in out.iterdir())
    rc = main(["prune", "--teacher", str(teacher), "--out", str(out), "--tracking-uri", uri, "--quiet"])
    assert rc == 2 and "--resume" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before


def test_search_resumes_from_its_checkpoint(teacher, tmp_path):
    problem = {"teacher": str(teacher), "macs_target": TARGET, "backend_config": {"finetune_steps": 0}}
    first = MarlSearch(problem, MarlConfig(iterations=1, episodes_per_iteration=2), tmp_path, quiet=True)
    first.setup()
    first.run()
    first.close()
    assert [p.name for p in checkpoints(tmp_path)] == ["iter_1"]
    again = MarlSearch(problem, MarlConfig(iterations=2, episodes_per_iteration=2), tmp_path, quiet=True)
    again.setup(resume=True)
    assert again.iteration == 1 and again.history == first.history
    again.run()
    again.close()
    assert again.iteration == 2 and [p.name for p in checkpoints(tmp_path)] == ["iter_1", "iter_2"]


@pytest.mark.parametrize("method", ["uniform", "l1"])
def test_simple_methods_share_the_finetune_and_export_path(method, teacher, tmp_path):
    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    out = tmp_path / method
    assert main(["prune", "--method", method, "--teacher", str(teacher), "--macs-target", str(TARGET),
                 "--finetune-steps", "1", "--finetune-backend", "torch", "--out", str(out),
                 "--tracking-uri", uri, "--quiet"]) == 0
    s = json.loads((out / "prune.json").read_text())
    assert 0.95 * s["target_macs"] <= s["macs"] <= s["target_macs"] and s["method"] == method  # #6: within 5 %
    assert gexport.load(out) is not None
