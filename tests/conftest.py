import os

#: under pytest-xdist ("gw0", "gw1", ...): the workers share the cores, so each runs one torch thread (its
#: child processes too: ``gan.determinism.default_threads`` reads the variable) and has its own MLflow store
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if WORKER:
    os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

os.environ.setdefault("MLFLOW_TRACKING_URI", "sqlite:///" + os.path.join(
    os.getcwd(), f".pytest_mlflow{'-' + WORKER if WORKER else ''}.db"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny nets gain nothing from a second OpenMP thread, and on a shared 2-core box a thread that
    waits for a busy core makes every op 10–100× slower (measured): modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


#: the longest test files (measured with --durations, 2026-12-03), started first: under pytest-xdist a
#: long file that starts last runs on alone while the other workers idle
LONGEST_FIRST = ("test_fault_tolerance.py", "test_cluster.py", "test_benchmark.py", "test_ray_train.py",
                 "test_agents_learn.py", "test_num_procs.py", "test_demo_and_export_cli.py",
                 "test_trainer_deepspeed.py", "test_train_teacher.py", "test_determinism.py", "test_marl.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FIRST)))  # stable: each file stays whole
