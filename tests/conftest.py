import os

import pytest
import torch

os.environ.setdefault("MLFLOW_TRACKING_URI", "sqlite:///" + os.path.join(os.getcwd(), ".pytest_mlflow.db"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
