"""orchestration.tracking: params/metrics really land in the store; a dead server fails fast in one line."""
import socket
import time

import mlflow
import pytest

from orchestration.errors import UsageError
from orchestration.tracking import Tracker, default_tracking_uri, flatten, loss_curves


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_params_metrics_artifacts_are_stored(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with Tracker("unit-tracking", "run-a", tracking_uri=uri) as t:
        t.log_params({"preset": "tiny", "generator": {"ngf": 16, "n_blocks": 6}, "betas": (0.5, 0.999),
                      "skip": None})
        t.log_params({"preset": "tiny"})  # same value again: no error
        for step in (10, 20):
            t.log_metrics({"loss_g": 1.0 / step, "nan": float("nan"), "text": "x"}, step=step)
        png = loss_curves([{"step": 10, "loss_g": 0.1, "l1": 0.5}, {"step": 20, "loss_g": 0.05, "l1": 0.4}],
                          tmp_path / "curves.png", tracker=t)
        run_id = t.run_id
    assert png.stat().st_size > 0

    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "run-a"
    assert run.data.params == {"preset": "tiny", "generator.ngf": "16", "generator.n_blocks": "6",
                               "betas": "(0.5, 0.999)"}
    hist = client.get_metric_history(run_id, "loss_g")
    assert [(m.step, m.value) for m in hist] == [(10, 0.1), (20, 0.05)]
    assert "nan" not in run.data.metrics and "text" not in run.data.metrics
    assert [a.path for a in client.list_artifacts(run_id)] == ["curves.png"]
    assert (tmp_path / "mlruns").is_dir()  # artifacts beside the database, not in the cwd

    # a child run points at its parent; a failing body marks the run FAILED
    with pytest.raises(RuntimeError):
        with Tracker("unit-tracking", "child", tracking_uri=uri, parent_run_id=run_id) as c:
            child_id = c.run_id
            raise RuntimeError("boom")
    child = client.get_run(child_id)
    assert child.data.tags["mlflow.parentRunId"] == run_id and child.info.status == "FAILED"


def test_resume_continues_the_same_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with Tracker("unit-tracking", "r", tracking_uri=uri) as t:
        t.log_metrics({"m": 1.0}, step=1)
        rid = t.run_id
    t2 = Tracker("unit-tracking", "r", tracking_uri=uri).start(run_id=rid)
    t2.log_metrics({"m": 2.0}, step=2)
    t2.end()
    hist = mlflow.MlflowClient(tracking_uri=uri).get_metric_history(rid, "m")
    assert [m.step for m in hist] == [1, 2]


def test_disabled_tracker_is_a_noop(tmp_path):
    with Tracker("x", tracking_uri="http://127.0.0.1:1", enabled=False) as t:
        t.log_params({"a": 1})
        t.log_metrics({"b": 2.0}, step=1)
        assert t.run_id is None


def test_unreachable_server_fails_fast_in_one_line():
    uri = f"http://127.0.0.1:{_free_port()}"
    t0 = time.perf_counter()
    with pytest.raises(UsageError) as e:
        Tracker("x", tracking_uri=uri).start()
    assert time.perf_counter() - t0 < 5
    msg = str(e.value)
    assert len(msg.splitlines()) == 1
    assert msg.startswith(f"cannot reach MLflow tracking server at {uri}")
    assert "start it or drop --tracking-uri" in msg


def test_default_uri_is_absolute_sqlite_in_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/m.db")
    assert default_tracking_uri() == "sqlite:////elsewhere/m.db"


def test_flatten():
    assert flatten({"a": {"b": {"c": 1}}, "d": [1, 2], "e": None}) == {"a.b.c": 1, "d": "[1, 2]"}
