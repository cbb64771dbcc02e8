"""benchmarks/d_choice.py at a tiny scale (issue #15 item 3): the search's G fine-tuned with the D agent's
pick, the teacher-width D and D at G's keep ratio; per-step balance figures, MLflow runs, --resume."""
import importlib.util
import json
from pathlib import Path

import pytest

from gan import export as gexport
from gan.pruning.saliency import spec_from_ratios

ROOT = Path(__file__).resolve().parents[2]
STEPS = 3

pytestmark = pytest.mark.usefixtures("one_thread")


def _bench():
    spec = importlib.util.spec_from_file_location("d_choice", ROOT / "benchmarks" / "d_choice.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_three_d_choices_with_per_step_balance_figures_in_mlflow(teacher_and_spec, tmp_path, capsys):
    import mlflow

    tdir, spec_path = teacher_and_spec
    raw = json.loads(Path(spec_path).read_text())
    gspec = raw.get("spec", raw.get("generator", raw))
    disc = gexport.load(Path(tdir) / "discriminator")
    agent_d = spec_from_ratios(disc, {g.name: 0.75 for g in disc.channel_groups()}, "l1")
    search = tmp_path / "search"
    search.mkdir()
    (search / "best_spec.json").write_text(json.dumps({"generator": gspec, "discriminator": agent_d}))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = ["--teacher", str(tdir), "--search-run", str(search), "--seeds", "0", "--steps", str(STEPS),
            "--out", str(tmp_path / "out"), "--tracking-uri", uri, "--threads", "1"]
    summary = _bench().main(argv)
    assert set(summary) == {"agent", "teacher-width", "g-ratio"}
    rows = {c: json.loads((tmp_path / "out" / c / "seed0" / "row.json").read_text()) for c in summary}
    full = {g.name: g.size for g in disc.channel_groups()}
    assert rows["agent"]["discriminator_spec"] == {k: len(v) for k, v in agent_d.items()}
    assert rows["teacher-width"]["discriminator_spec"] == full
    assert all(rows["g-ratio"]["discriminator_spec"][k] < full[k] for k in full)
    for r in rows.values():
        assert [c[0] for c in r["curves"]] == list(range(1, STEPS + 1))  # every step logged
        assert 0 <= r["balance"]["d_acc_mean"] <= 1 and r["balance"]["d_saturated_steps"] is not None
        assert r["after"]["psnr_vs_teacher"] > 0
    assert (tmp_path / "out" / "d_choice.png").is_file()
    assert "| teacher-width |" in capsys.readouterr().out
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("d-choice")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert {"agent-seed0", "teacher-width-seed0", "g-ratio-seed0", "summary"} <= set(runs)
    assert len(client.get_metric_history(runs["agent-seed0"].info.run_id, "d_acc")) == STEPS
    # --resume keeps the finished rows: no fine-tune runs again
    before = {c: (tmp_path / "out" / c / "seed0" / "row.json").stat().st_mtime_ns for c in summary}
    _bench().main(argv + ["--resume"])
    assert before == {c: (tmp_path / "out" / c / "seed0" / "row.json").stat().st_mtime_ns for c in summary}
