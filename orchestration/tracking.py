"""A thin MLflow wrapper shared by the training commands: one run per command, nested under a parent.

Why a wrapper: every command must resolve the tracking URI the same way (``--tracking-uri`` >
``$MLFLOW_TRACKING_URI`` > ``sqlite:///<cwd>/mlflow.db``, absolute so that a later ``cd`` or a worker
process writes into the same store), fail fast with one line when a tracking *server* is down
(MLflow itself retries for minutes), and log nested config dicts as flat ``a.b.c`` params.
``enabled=False`` makes every method a no-op so library code can log unconditionally.
"""
from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Mapping

from orchestration.errors import UsageError

#: MLflow's limit on one param value (longer values are cut, not refused)
MAX_PARAM_CHARS = 6000


def default_tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` when set, else the sqlite store ``mlflow.db`` in the current directory."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return "sqlite:///" + str(Path.cwd().resolve() / "mlflow.db")


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The URI a command uses: the explicit one, or ``default_tracking_uri()``."""
    return uri or default_tracking_uri()


def artifact_location(uri: str) -> str | None:
    """For a sqlite store: ``mlruns/`` beside the database file (MLflow's default is ``./mlruns`` of
    whatever the cwd is, which scatters a test's or a worker's artifacts); None (server default) else."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        if db.is_absolute():
            return (db.parent / "mlruns").as_uri()
    return None


def check_reachable(uri: str, timeout: float = 3.0) -> None:
    """For an http(s) URI: GET ``URI/health`` within ``timeout`` seconds or raise a one-line UsageError."""
    if not uri.startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - http(s) only, checked above
            r.read(64)
    except urllib.error.HTTPError:
        return  # something answers: a proxy or an older server without /health; MLflow reports the rest
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise UsageError(f"cannot reach MLflow tracking server at {uri}: "
                         f"{getattr(e, 'reason', e)}; start it or drop --tracking-uri") from None


def flatten(d: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [1, 2]}`` → ``{"a.b": 1, "c": "[1, 2]"}``; None values are dropped."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{sep}{k}" if prefix else str(k)
        if isinstance(v, Mapping):
            out.update(flatten(v, key, sep))
        elif v is not None:
            out[key] = v if isinstance(v, (bool, int, float, str)) else str(v)
    return out


class Tracker:
    """``with Tracker("teacher", "tiny-edges2photos") as t: t.log_params(cfg); t.log_metrics({...}, step)``.

    The run ends FINISHED on a clean exit, FAILED on an exception, KILLED on Ctrl-C.
    """

    def __init__(self, experiment: str, run_name: str | None = None, tracking_uri: str | None = None,
                 parent_run_id: str | None = None, enabled: bool = True, tags: Mapping[str, str] | None = None):
        self.experiment, self.run_name = experiment, run_name
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.parent_run_id, self.enabled, self.tags = parent_run_id, enabled, dict(tags or {})
        self._run = None
        self._client = None

    # ------------------------------------------------------------------ lifecycle

    def start(self, run_id: str | None = None) -> "Tracker":
        """Start a new run, or continue ``run_id`` (a resumed training keeps one run)."""
        if not self.enabled:
            return self
        check_reachable(self.tracking_uri)
        import mlflow

        self._client = mlflow.MlflowClient(tracking_uri=self.tracking_uri)
        exp = self._client.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp else self._client.create_experiment(
            self.experiment, artifact_location=artifact_location(self.tracking_uri))
        if run_id:
            try:
                run = self._client.get_run(run_id)
            except Exception:  # noqa: BLE001 - a run of another store: start a fresh one
                run = None
            if run is not None:
                self._client.update_run(run_id, status="RUNNING")
                self._run = run
                return self
        tags = {**self.tags}
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id
        self._run = self._client.create_run(exp_id, run_name=self.run_name, tags=tags)
        return self

    def end(self, status: str = "FINISHED") -> None:
        if self._run is not None:
            self._client.set_terminated(self.run_id, status=status)
            self._run = None

    def __enter__(self) -> "Tracker":
        return self.start() if self._run is None else self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.end("FINISHED")
        else:
            self.end("KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED")

    @property
    def run_id(self) -> str | None:
        return self._run.info.run_id if self._run is not None else None

    @property
    def active(self) -> bool:
        return self._run is not None

    # ------------------------------------------------------------------ logging

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Nested dicts flattened to ``a.b`` keys; a param already logged with the same value is skipped."""
        if not self.active:
            return
        from mlflow.entities import Param

        have = self._client.get_run(self.run_id).data.params
        flat = {k: str(v)[:MAX_PARAM_CHARS] for k, v in flatten(params).items()}
        new = [Param(k, v) for k, v in flat.items() if have.get(k) != v]
        changed = [p.key for p in new if p.key in have]
        if changed:  # MLflow refuses to overwrite a param: keep the original, record the new value as a tag
            for k in changed:
                self._client.set_tag(self.run_id, f"param_changed.{k}", flat[k][:5000])
            new = [p for p in new if p.key not in have]
        for i in range(0, len(new), 100):
            self._client.log_batch(self.run_id, params=new[i:i + 100])

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Finite numbers only (NaN/inf and non-numbers are skipped); nested dicts flattened."""
        if not self.active:
            return
        import math
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        rows = [Metric(k, float(v), ts, int(step or 0)) for k, v in flatten(metrics).items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
        for i in range(0, len(rows), 500):
            self._client.log_batch(self.run_id, metrics=rows[i:i + 500])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self.active:
            for k, v in tags.items():
                self._client.set_tag(self.run_id, k, str(v))

    def log_artifact(self, path, artifact_path: str | None = None) -> None:
        if self.active:
            self._client.log_artifact(self.run_id, str(path), artifact_path)

    def log_artifacts(self, directory, artifact_path: str | None = None) -> None:
        if self.active:
            self._client.log_artifacts(self.run_id, str(directory), artifact_path)

    def log_figure(self, fig, path, artifact_path: str | None = None) -> Path:
        """Save a matplotlib figure to ``path`` (kept on disk) and log it; closes the figure."""
        import matplotlib.pyplot as plt

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        self.log_artifact(path, artifact_path)
        return path


def loss_curves(history: list[dict], path, keys: tuple[str, ...] | None = None, title: str | None = None,
                tracker: Tracker | None = None) -> Path:
    """One subplot per loss in ``history`` (list of ``{"step": n, key: value}``) → PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = keys or tuple(k for k in (history[0] if history else {})
                         if k not in ("step", "lr") and isinstance(history[0][k], (int, float)))
    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(3.2 * max(1, len(keys)), 2.8), squeeze=False)
    steps = [h["step"] for h in history]
    for ax, k in zip(axes[0], keys):
        ax.plot(steps, [h.get(k, float("nan")) for h in history], lw=1)
        ax.set_title(k, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if tracker is not None:
        return tracker.log_figure(fig, path)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
