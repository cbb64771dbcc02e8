import os

import pytest
import torch

os.environ.setdefault("MLFLOW_TRACKING_URI", "sqlite:///" + os.path.join(os.getcwd(), ".pytest_mlflow.db"))


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
