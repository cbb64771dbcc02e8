"""Ray cluster paths (issue #7): backend evaluations on a pool of Ray actors, the local CPU check,
and a load test on a two-node loopback cluster the test starts with ``ray start``."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import ray

from agents.cluster import RayClusterError
from agents.marl import MarlConfig, MarlSearch
from envs.backends.remote import start_pool
from envs.problem import build_problem, problem_backend, random_spec_pairs
from tests.teachers import tiny_teacher

BIN = Path(sys.executable).parent
PROBLEM = {"macs_target": 0.3, "backend_config": {"finetune_steps": 1, "train_items": 4, "eval_items": 4}}


@pytest.fixture(scope="module")
def local_ray():
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _own(scores):
    return [x for s in scores for x in (s.generator, s.discriminator)]


def test_remote_backend_scores_equal_the_local_ones_and_survive_a_killed_worker(local_ray):
    local = build_problem(PROBLEM)
    pairs = random_spec_pairs(local, 4)
    actors = start_pool(PROBLEM, "ganprune-test-pool", 2, num_cpus=0.5, build=problem_backend)
    try:
        remote = build_problem({**PROBLEM, "backend_workers": 2, "backend_pool": "ganprune-test-pool"}).backend
        want = _own(local.backend.evaluate(g, d) for g, d in pairs)
        assert _own(remote.evaluate_many(pairs)) == pytest.approx(want, rel=1e-5)
        assert remote.stats()["calls"] == 4 and remote.name == "local@2-workers"
        per_worker = ray.get([a.stats.remote() for a in actors[:2]])
        assert all(s["calls"] >= 1 for s in per_worker)  # the batch went to both workers
        assert all(s.cached for s in [remote.evaluate(*pairs[0]), remote.evaluate(*pairs[0])])  # any worker hits
        pids = ray.get([a.ready.remote() for a in actors[:2]])
        for a in actors[:2]:
            ray.kill(a, no_restart=False)  # both workers crash; Ray restarts them (the shared cache survives)
        assert _own(remote.evaluate_many(pairs)) == pytest.approx(want, rel=1e-5)
        deadline = time.monotonic() + 60
        while set(ray.get([a.ready.remote() for a in actors[:2]])) & set(pids):
            assert time.monotonic() < deadline, "the killed workers were not restarted"
            time.sleep(0.2)
    finally:
        for a in actors:
            ray.kill(a, no_restart=True)


def test_the_marl_search_scores_its_episodes_on_backend_workers(local_ray, tmp_path):
    cfg = MarlConfig(iterations=2, episodes_per_iteration=2, num_env_runners=1, num_cpus_per_env_runner=0.5,
                     backend_workers=2, num_cpus_per_backend_worker=0.5, minibatch_size=8, num_epochs=1)
    search = MarlSearch(PROBLEM, cfg, tmp_path / "search", quiet=True)
    try:
        search.setup()
        result = search.run()
        stats = search.driver_env.problem.backend.stats()
    finally:
        search.close()
    assert stats["workers"] == 2
    assert stats["calls"] >= sum(h["episodes"] for h in result["history"]) + 2  # the runner's + the greedy replays
    assert result["best"]["scores"]["metrics"]["finetune_steps"] == 1


def test_more_cpus_than_the_local_ray_has_are_refused(local_ray, tmp_path):
    search = MarlSearch(PROBLEM, MarlConfig(num_env_runners=2, backend_workers=1), tmp_path / "s", quiet=True)
    with pytest.raises(RayClusterError, match="need 3 CPUs but the local Ray instance has 2"):
        search.setup()
    search.close()
    from orchestration.ray_finetune import _check_resources

    with pytest.raises(RayClusterError, match="3 Ray workers .* need 3 CPUs but the local Ray instance has 2"):
        _check_resources(3, False, None)  # the fine-tune's Ray Train workers, by the same check


# ----------------------------------------------------------------------- loopback load test

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_cluster(temp_dir: Path, port: int) -> None:
    """Every process of the test's cluster (their command lines name its temp dir or its GCS port) and
    their children; never ``ray stop``, which would stop every Ray on the machine."""
    procs = []
    for p in psutil.process_iter(["cmdline"]):
        if any(str(temp_dir) in a or a.endswith(f":{port}") for a in (p.info["cmdline"] or [])):
            procs += [p, *p.children(recursive=True)]
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)
    shutil.rmtree(temp_dir, ignore_errors=True)


def _client_server_logs(temp_dir: Path, chars: int = 2000) -> str:
    """The tails of the head's Ray Client server logs: Ray's own "Initialization failure from server"
    says only to read them, and ``_kill_cluster`` deletes them."""
    logs = sorted(temp_dir.glob("session_*/logs/ray_client_server*.err"))
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-chars:]}" for p in logs)


@pytest.fixture(scope="module")
def loopback_cluster(tmp_path_factory):
    """Head (1 CPU) + one worker node (2 CPUs) on loopback, started once for both ways of attaching;
    yields (teacher, gcs port, Ray Client port, temp dir, the drivers' environment)."""
    tmp = tmp_path_factory.mktemp("loopback")
    teacher = tiny_teacher(tmp / "teacher", data_root=tmp / "data", size=32, steps=10)
    temp_dir, port = Path("/tmp") / f"gp-{os.getpid()}", _free_port()  # short: Ray's socket paths are limited
    client_port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    node_env = dict(env)
    # the head's client proxy waits 30 s (Ray's default) for the per-client server it spawns; a loaded
    # 2-core CI box can take longer, which Ray reports as an "Initialization failure from server"
    head_env = {**env, "RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S": "180"}
    if (Path.home() / ".ray" / "auth_token").is_file():  # the head turns token auth on when a token exists
        node_env["RAY_AUTH_MODE"] = "token"
    ray_bin, common = str(BIN / "ray"), ["--disable-usage-stats"]
    try:
        subprocess.run([ray_bin, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                        "--ray-client-server-port", str(client_port), "--num-cpus", "1", "--include-dashboard",
                        "false", "--temp-dir", str(temp_dir), *common],
                       check=True, env=head_env, capture_output=True, timeout=120)
        subprocess.run([ray_bin, "start", "--address", f"127.0.0.1:{port}", "--num-cpus", "2", *common],
                       check=True, env=node_env, capture_output=True, timeout=120)
        yield teacher, port, client_port, temp_dir, env
    finally:
        _kill_cluster(temp_dir, port)


@pytest.mark.parametrize("client", [True, False], ids=["ray-client", "gcs-address"])
def test_a_tiny_marl_prune_on_a_two_node_loopback_cluster(loopback_cluster, tmp_path, client):
    """2 env runners + 1 backend worker at 1 CPU each need all 3 CPUs of the loopback cluster, so the
    search necessarily spans both nodes.  Attached by ``host:port`` (a driver on a node) and by
    ``ray://host:port`` (Ray Client, a driver outside the cluster)."""
    teacher, port, client_port, temp_dir, env = loopback_cluster
    address = f"ray://127.0.0.1:{client_port}" if client else f"127.0.0.1:{port}"
    out = tmp_path / "marl"
    res = subprocess.run(
        [str(BIN / "ganprune"), "prune", "--method", "marl", "--teacher", str(teacher), "--macs-target", "0.3",
         "--address", address, "--num-env-runners", "2", "--backend-workers", "1",
         "--iterations", "2", "--episodes", "2", "--backend-steps", "1", "--finetune-steps", "2",
         "--finetune-backend", "torch", "--out", str(out), "--tracking-uri",
         "sqlite:///" + str(tmp_path / "mlflow.db"), "--quiet"],
        env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:] + "\n" + _client_server_logs(temp_dir)
    summary = json.loads((out / "prune.json").read_text())
    assert summary["iterations"] == 2 and summary["macs"] <= summary["target_macs"]
    assert summary["backend"]["name"] == "local@1-workers" and summary["backend"]["episodes"] >= 4
