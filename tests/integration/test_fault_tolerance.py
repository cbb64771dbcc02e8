"""Fault tolerance (issue #7): a killed env runner is restarted by RLlib and the search goes on; a
``kill -9`` of the whole ``ganprune prune`` followed by ``--resume`` loses at most the iteration in
flight and ends with the layout of an uninterrupted run.  Real Ray, real processes, real signals."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import pytest

from agents.marl import MarlConfig, MarlSearch, checkpoints
from tests.teachers import tiny_teacher

GANPRUNE = str(Path(sys.executable).parent / "ganprune")


def _runner_pids(search) -> list[int]:
    return sorted(search.algo.env_runner_group.foreach_env_runner(lambda r: os.getpid(), local_env_runner=False))


def test_a_killed_env_runner_is_restarted_and_the_search_goes_on(tmp_path):
    import ray

    cfg = MarlConfig(iterations=12, episodes_per_iteration=4, num_env_runners=2, minibatch_size=8, num_epochs=1)
    problem = {"macs_target": 0.3, "backend_config": {"finetune_steps": 2, "train_items": 4, "eval_items": 4}}
    search = MarlSearch(problem, cfg, tmp_path / "search", quiet=True)
    try:
        search.setup()
        search.step()  # ≈1 s per iteration here
        before = _runner_pids(search)
        assert len(before) == 2
        killer = threading.Timer(0.3, os.kill, (before[0], signal.SIGKILL))  # dies while the runners sample
        killer.start()
        history = [search.step()]
        killer.join()
        while search.iteration < cfg.iterations and history[-1]["healthy_env_runners"] < 2:
            time.sleep(0.5)
            history.append(search.step())
        after = _runner_pids(search)
        search.run()  # and the rest of the run proceeds as usual
    finally:
        search.close()
        ray.shutdown()
    assert all(h["episodes"] >= 1 for h in history), "sampling stopped after the kill"
    assert history[-1]["healthy_env_runners"] == 2, f"runner not restarted within {len(history)} iterations"
    assert before[0] not in after and before[1] in after and len(after) == 2
    assert search.iteration == cfg.iterations and len(search.history) == cfg.iterations


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fault")
    return tiny_teacher(tmp / "teacher", data_root=tmp / "data", size=32, steps=20)


ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}
FINETUNE_STEPS = 60  # checkpointed every 6 steps (prune.FINETUNE_CHECKPOINTS)


def _prune_cmd(teacher, out: Path, *extra) -> list[str]:
    return [GANPRUNE, "prune", "--method", "marl", "--teacher", str(teacher), "--macs-target", "0.3",
            "--iterations", "4", "--episodes", "2", "--backend-steps", "1", "--finetune-steps", str(FINETUNE_STEPS),
            "--finetune-backend", "torch", "--out", str(out),
            "--tracking-uri", "sqlite:///" + str(out.parent / f"{out.name}.db"), *extra]


@pytest.fixture(scope="module")
def reference(teacher, tmp_path_factory):
    """An uninterrupted run with the same settings."""
    out = tmp_path_factory.mktemp("ref") / "reference"
    subprocess.run(_prune_cmd(teacher, out, "--quiet"), check=True, env=ENV, timeout=600, capture_output=True)
    return out


def _kill_when(teacher, out: Path, ready, *extra) -> None:
    """Start ``ganprune prune`` and ``kill -9`` its whole process group (driver, Ray head, env runners)
    as soon as ``ready()``."""
    proc = subprocess.Popen(_prune_cmd(teacher, out, "--quiet", *extra), env=ENV, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while not ready():
        assert proc.poll() is None, f"prune exited ({proc.returncode}) before the point to kill it"
        assert time.monotonic() < deadline, "the point to kill never came within 10 minutes"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "prune.json").exists()


def _resume(teacher, out: Path) -> str:
    res = subprocess.run(_prune_cmd(teacher, out, "--resume"), env=ENV, timeout=600, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def _layout(out: Path) -> set[str]:
    """Every file under ``out`` by relative path, checkpoint folders by name only."""
    files = set()
    for p in out.rglob("*"):
        rel = p.relative_to(out)
        if rel.parts[0] == "checkpoints":
            if len(rel.parts) == 2:
                files.add(str(rel))
        elif p.is_file():
            files.add(str(rel))
    return files


def test_kill_9_in_the_search_then_in_the_resumed_fine_tune_then_resume_ends_like_an_uninterrupted_run(
        teacher, reference, tmp_path):
    """One run killed twice (each kill costs a prune's start-up, so the two points share one run): in the
    search, then in the fine-tune of the resumed run; the last resume ends with the reference's layout."""
    from gan.train import checkpoint as ckpt

    out = tmp_path / "killed"
    _kill_when(teacher, out, lambda: (out / "checkpoints" / "iter_2").is_dir())
    done_before = int(checkpoints(out)[-1].name.split("_")[1])
    assert 2 <= done_before < 4

    # resumed, the search finishes; killed again in the fine-tune
    _kill_when(teacher, out, lambda: ckpt.latest(out / "finetune") is not None, "--resume")
    history = json.loads((out / "history.json").read_text())
    assert [h["iteration"] for h in history] == [1, 2, 3, 4]
    step = int(ckpt.latest(out / "finetune").name.split("_")[1])
    best = (out / "best_spec.json").read_text()
    assert 0 < step < FINETUNE_STEPS

    stdout = _resume(teacher, out)
    assert f"resuming the fine-tune at step {step} of {FINETUNE_STEPS}" in stdout
    assert (out / "best_spec.json").read_text() == best  # the same pair, from the search's last checkpoint
    assert _layout(out) == _layout(reference)
    assert json.loads((out / "history.json").read_text()) == history
    summary = json.loads((out / "prune.json").read_text())
    assert summary["iterations"] == 4 and summary["macs"] <= summary["target_macs"]
    # its cost counts the two killed attempts too (each recorded at its start and every 30 s)
    attempts = json.loads((out / "attempts.json").read_text())["attempts"]
    assert summary["attempts"] == len(attempts) == 3 and len({a["pid"] for a in attempts}) == 3
    assert summary["cpu_s"] == round(sum(a["cpu_s"] for a in attempts), 2) > attempts[-1]["cpu_s"]
    assert not list((out / "checkpoints").glob(".tmp-*")), "a half-written checkpoint was left behind"
    ft = json.loads((out / "finetune" / "finetune.json").read_text())
    assert ft["history"][-1]["step"] == FINETUNE_STEPS
    assert [p.name for p in ckpt.complete(out / "finetune")] == [f"step_{FINETUNE_STEPS - 6}",
                                                                  f"step_{FINETUNE_STEPS}"]

    # the resumed runs continue the same MLflow run, every iteration logged once at least
    ids = json.loads((out / "run.json").read_text())
    client = mlflow.MlflowClient(tracking_uri="sqlite:///" + str(tmp_path / "killed.db"))
    assert client.get_run(ids["parent"]).info.status == "FINISHED"
    steps = {m.step for m in client.get_metric_history(ids["parent"], "generator_return")}
    assert steps == {1, 2, 3, 4}
