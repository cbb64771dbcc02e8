"""``ganprune prune --method marl --backend supernet`` end to end at test sizes (issue #15, item 1):
the supernet is trained once on the DeepSpeed trainer and reused from the cache by the next search,
the pruned generator is within ±2 % of the MACs target and loads with ``gan.export.load``, MLflow
has episodes/s and the supernet's cost, the search cost includes the supernet's training, and random,
marl-greedy and benchmark --search-backend take the same backend."""
import json

import mlflow
import pytest

from gan import export as gexport
from orchestration.cli import main
from tests.teachers import tiny_teacher

pytestmark = pytest.mark.usefixtures("one_thread")

TARGET = 0.25
STEPS = 20  # supernet training steps (the preset's gan_compression.supernet_steps otherwise)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("supernet_backend")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GANPRUNE_CACHE", str(tmp / "cache"))  # the supernet cache of this module alone
        teacher = tiny_teacher(tmp / "teacher", data_root=tmp / "data", size=32, steps=10)
        yield tmp, teacher, "sqlite:///" + str(tmp / "mlflow.db")


def _prune(env, method: str, out: str, *extra):
    tmp, teacher, uri = env
    argv = ["prune", "--method", method, "--backend", "supernet", "--backend-option", f"train_steps={STEPS}",
            "--teacher", str(teacher), "--macs-target", str(TARGET), "--episodes", "2", "--finetune-steps", "2",
            "--out", str(tmp / out), "--tracking-uri", uri, "--quiet", *extra]
    assert main(argv) == 0
    run = tmp / out
    return json.loads((run / "prune.json").read_text()), run


def _metrics(env, run):
    client = mlflow.MlflowClient(tracking_uri=env[2])
    return client.get_run(json.loads((run / "run.json").read_text())["parent"]).data.metrics


@pytest.fixture(scope="module")
def marl(env):
    return _prune(env, "marl", "marl", "--iterations", "3")


def test_marl_on_the_supernet_backend_hits_the_target_and_exports(marl):
    s, run = marl
    assert abs(s["macs"] / s["target_macs"] - 1) <= 0.02 and s["iterations"] == 3
    g = gexport.load(run / "generator")
    assert sum(p.numel() for p in g.parameters()) == s["params"] < s["teacher_params"]
    assert s["backend"]["name"] == "supernet" and s["backend"]["episodes_per_s"] > 0
    assert s["search_backend"] == {"name": "supernet", "options": {
        "train_steps": STEPS, "fractions": None, "batch_size": 4, "lr": 2e-4, "lambda_distill": 1.0,
        "eval_items": 8, "cache": True, "trainer": "deepspeed",
        "density": True}}
    sn = s["supernet"]
    assert sn["cached"] is False and sn["steps"] == STEPS and sn["cpu_s"] > 0
    assert sn["feature_distill"] is True  # a ResNet teacher: trained with the feature term
    # the supernet's training is search cost: no fine-tune steps per candidate, its steps and CPU time
    assert s["search_finetune_steps"] == STEPS and s["search_cpu_s"] >= sn["cpu_s"]
    ft = json.loads((run / "finetune" / "finetune.json").read_text())
    assert ft["init_generator"] == sn["dir"] + "/generator"  # fine-tuned from the weights it was scored with
    assert json.loads((run / "request.json").read_text())["search"]["backend"] == "supernet"


def test_mlflow_has_episodes_per_second_and_the_supernet_cost(env, marl):
    m = _metrics(env, marl[1])
    assert m["search_episodes_per_s"] > 0 and m["episodes_per_s"] > 0
    assert m["supernet_train_steps"] == STEPS and m["supernet_cpu_s"] > 0 and m["supernet_cached"] == 0
    assert m["search_finetune_steps"] == STEPS


def test_a_second_search_reuses_the_cached_supernet(env, marl):
    s, run = _prune(env, "random", "random", "--evaluations", "4", "--finetune-backend", "torch")  # not the
    # supernet's trainer (``--backend-option trainer``): the cache key stays
    assert s["supernet"]["cached"] is True and s["supernet"]["dir"] == marl[0]["supernet"]["dir"]
    assert s["search_evaluations"] == 4 and s["search_finetune_steps"] == STEPS  # still charged
    assert abs(s["macs"] / s["target_macs"] - 1) <= 0.02
    m = _metrics(env, run)
    assert m["supernet_cached"] == 1 and m["search_episodes_per_s"] > 0


def test_benchmark_search_backend_reaches_the_search_rows_and_their_resume_keys(env, marl, capsys):
    tmp, teacher, uri = env
    out = tmp / "bench"
    args = ["benchmark", "--teacher", str(teacher), "--preset", "tiny", "--methods", "random,uniform",
            "--search-backend", "supernet", "--backend-option", f"train_steps={STEPS}", "--iterations", "1",
            "--episodes", "2", "--macs-target", str(TARGET), "--finetune-steps", "1", "--finetune-backend", "torch",
            "--out", str(out), "--tracking-uri", uri, "--quiet"]
    assert main(args + ["--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = {r["method"]: r for r in res["rows"]}
    assert rows["random"]["search_backend"] == "supernet" and rows["random"]["supernet_cached"] is True
    assert rows["uniform"]["search_backend"] is None  # no search backend: its row is as before
    settings = json.loads((out / "random" / "seed0" / "row.json").read_text())["settings"]
    assert settings["backend"] == "supernet" and settings["backend_options"]["train_steps"] == STEPS
    assert "backend" not in json.loads((out / "uniform" / "seed0" / "row.json").read_text())["settings"]
    # --resume keeps rows made alike; another backend option is another row
    assert main(args + ["--resume", "--backend-option", "eval_items=4"]) == 0
    again = json.loads((out / "random" / "seed0" / "row.json").read_text())
    assert again["settings"]["backend_options"]["eval_items"] == 4
    assert again["row"]["prune_run_id"] != rows["random"]["prune_run_id"]
    assert json.loads((out / "uniform" / "seed0" / "row.json").read_text())["row"]["prune_run_id"] == \
        rows["uniform"]["prune_run_id"]


def test_marl_greedy_reuses_the_supernet_search_of_the_marl_run(env, marl):
    s, _ = _prune(env, "marl-greedy", "greedy", "--iterations", "3", "--search-from", str(marl[1]),
                  "--finetune-backend", "torch")
    assert s["search_from"] == str(marl[1]) and s["pick"] == "greedy"  # same problem: the supernet's path too
    assert s["supernet"]["cached"] is True and s["search_finetune_steps"] == STEPS
    assert abs(s["macs"] / s["target_macs"] - 1) <= 0.02
