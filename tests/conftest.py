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
