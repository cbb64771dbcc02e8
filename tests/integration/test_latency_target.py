"""`ganprune prune --latency-target` (issue #17 item 2; docs/methods.md, "Latency budgets"): the env-based
search, the one-knob methods and PPCD's schedule budget predicted latency instead of MACs, the summary
reports target, predicted and measured latency, and an unreachable target is refused in one line before
any work.  Real ONNX Runtime timings at 32²; no speed claim (shared CI cores)."""
import json

import pytest

from orchestration.cli import main
from tests.integration.test_bad_input import fails

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("method,extra", [
    ("l1", []), ("random", ["--evaluations", "3", "--backend-steps", "1"]),
    ("gan-compression", ["--method-option", "supernet_steps=4", "--method-option", "population=4",
                         "--method-option", "generations=2"]),
    ("ppcd", [])])
def test_prune_budgets_predicted_latency(prune_env, method, extra):
    out = prune_env["tmp"] / method
    assert main(["prune", "--method", method, "--teacher", str(prune_env["teacher"]), "--latency-target", "0.5",
                 "--latency-threads", "1", "--finetune-steps", "2", "--finetune-backend", "torch", "--out", str(out),
                 "--tracking-uri", prune_env["uri"], "--quiet", *extra]) == 0
    s = json.loads((out / "prune.json").read_text())
    b = s["latency_budget"]
    assert b["runtime"] == "onnxruntime" and b["threads"] == 1 and b["size"] == 32
    assert b["target_ms"] == pytest.approx(0.5 * b["teacher_predicted_ms"])
    assert b["predicted_ms"] <= b["target_ms"] * (1 + 1e-9)
    assert b["measured_ms"] > 0 and b["teacher_measured_ms"] > 0
    assert b["over_target"] == (b["measured_ms"] > 1.1 * b["target_ms"])
    assert s["macs"] < s["teacher_macs"]  # half the latency needs fewer MACs
    request = json.loads((out / "request.json").read_text())
    assert request["latency_target"] == 0.5


@pytest.mark.parametrize("method,extra", [("l1", []), ("random", ["--evaluations", "3", "--backend-steps", "1"])])
def test_a_macs_cap_holds_beside_a_latency_target(prune_env, capsys, method, extra):
    out = prune_env["tmp"] / f"capped-{method}"
    assert main(["prune", "--method", method, "--teacher", str(prune_env["teacher"]), "--latency-target", "0.9",
                 "--macs-cap", "0.3", "--latency-threads", "1", "--finetune-steps", "2", "--finetune-backend", "torch",
                 "--out", str(out), "--tracking-uri", prune_env["uri"], "--quiet", *extra]) == 0
    s = json.loads((out / "prune.json").read_text())
    b = s["latency_budget"]
    assert s["macs"] <= 0.3 * s["teacher_macs"] * (1 + 1e-6)  # the cap holds
    assert b["predicted_ms"] <= b["target_ms"] * (1 + 1e-9) and b["macs_cap_fraction"] == pytest.approx(0.3, abs=1e-3)
    assert json.loads((out / "request.json").read_text())["macs_cap"] == 0.3
    if method == "l1":  # a cap without a latency budget is refused before any work
        err = fails(capsys, "prune", "--method", "l1", "--teacher", prune_env["teacher"], "--macs-cap", "0.3",
                    "--out", prune_env["tmp"] / "cap-alone")
        assert "--latency-target" in err and "--macs-target" in err
        assert not (prune_env["tmp"] / "cap-alone").exists()


def test_bad_latency_targets_are_refused(prune_env, capsys):
    err = fails(capsys, "prune", "--method", "l1", "--teacher", prune_env["teacher"], "--latency-target", "-1",
                "--out", prune_env["tmp"] / "neg")
    assert "must be positive" in err
    err = fails(capsys, "prune", "--method", "l1", "--teacher", prune_env["teacher"], "--latency-target", "1e6",
                "--latency-threads", "1", "--out", prune_env["tmp"] / "big")
    assert "above the full model" in err
    for name in ("neg", "big"):
        assert not (prune_env["tmp"] / name).exists()


def test_profile_latency_model_reports_its_error(prune_env, capsys):
    plot = prune_env["tmp"] / "lm.png"
    assert main(["profile", str(prune_env["teacher"]), "--latency-model", "--threads", "1", "--specs", "3",
                 "--runs", "3", "--plot", str(plot), "--json", "--quiet"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(r["rows"]) == 3 and r["median_abs_error"] >= 0 and plot.is_file()
    assert all(row["predicted_ms"] > 0 and row["measured_ms"] > 0 for row in r["rows"])
    assert r["latency_model"]["runtime"] == "onnxruntime" and r["latency_model"]["size"] == 32
    err = fails(capsys, "profile", prune_env["teacher"], "--latency-model", "--specs", "0")
    assert "--specs 0" in err


def test_cat_prunes_to_a_latency_target(prune_env):
    from tests.teachers import tiny_teacher

    teacher = tiny_teacher(prune_env["tmp"] / "affine_teacher", data_root=prune_env["tmp"] / "data", size=32, steps=10,
                           norm="instance_affine")  # CAT ranks channels by the norms' |γ|
    out = prune_env["tmp"] / "cat"
    assert main(["prune", "--method", "cat", "--teacher", str(teacher), "--latency-target", "0.5",
                 "--latency-threads", "1", "--finetune-steps", "2", "--finetune-backend", "torch", "--out", str(out),
                 "--tracking-uri", prune_env["uri"], "--quiet"]) == 0
    s = json.loads((out / "prune.json").read_text())
    b = s["latency_budget"]
    assert b["predicted_ms"] <= b["target_ms"] * (1 + 1e-9) and s["macs"] < s["teacher_macs"]
    assert "predicted_latency_ms" not in s  # one record of the budget: latency_budget


def test_a_pick_measured_over_its_target_is_said():
    from orchestration.prune import over_target_note

    within = {"over_target": False, "measured_ms": 10.5, "target_ms": 10.0, "predicted_ms": 9.9}
    assert over_target_note(within) is None
    note = over_target_note({**within, "over_target": True, "measured_ms": 13.0})
    assert "+30% over the 10.00 ms target" in note and "--latency-target" in note


def test_fastest_prunes_to_the_widths_the_latency_model_rates_fastest(prune_env, capsys):
    """`--method fastest` (docs/methods.md, "Fastest widths"): the MACs target spent on the widths the latency
    model at --latency-size predicts fastest, fine-tuned and exported like every method; MACs budgets only."""
    out = prune_env["tmp"] / "fastest"
    assert main(["prune", "--method", "fastest", "--teacher", str(prune_env["teacher"]), "--macs-target", "0.3",
                 "--latency-size", "32", "--latency-threads", "1", "--align", "4", "--finetune-steps", "2",
                 "--finetune-backend", "torch", "--out", str(out), "--tracking-uri", prune_env["uri"], "--quiet"]) == 0
    s = json.loads((out / "prune.json").read_text())
    assert s["latency_model"] == {"runtime": "onnxruntime", "threads": 1, "size": 32} and s["block"] == 4
    assert s["macs"] <= 0.3 * s["teacher_macs"] * (1 + 1e-6)
    assert 0 < s["predicted_ms"] < s["teacher_predicted_ms"] and s["uniform_predicted_ms"] > 0
    cands = s["measured_candidates"]  # the default: 4 climbs' distinct picks measured, the fastest measured kept
    assert 1 <= len(cands) <= 4 and all(c["measured_ms"] > 0 for c in cands)
    assert s["widths"] == min(cands, key=lambda c: c["measured_ms"])["widths"]
    assert (out / "generator" / "generator.safetensors").is_file()
    err = fails(capsys, "prune", "--method", "fastest", "--teacher", prune_env["teacher"], "--latency-target", "0.5",
                "--out", prune_env["tmp"] / "fastest-latency")
    assert "budgets MACs only" in err and not (prune_env["tmp"] / "fastest-latency").exists()
    err = fails(capsys, "prune", "--method", "fastest", "--teacher", prune_env["teacher"], "--method-option",
                "measure=-1", "--out", prune_env["tmp"] / "fastest-bad")
    assert "measure ≥ 0" in err and not (prune_env["tmp"] / "fastest-bad").exists()


def test_a_benchmark_measures_fastests_latency_model_before_its_rows(prune_env, capsys, monkeypatch):
    """`benchmark --methods fastest,...` builds the deployment's latency model once, before rows share the cores
    (Method.models_latency), and each row's `fastest` then reads it from the cache."""
    from gan import latency_model

    built = []
    real = latency_model.LatencyModel.__init__

    def spy(self, model, size, *a, **k):
        built.append(size)
        real(self, model, size, *a, **k)

    monkeypatch.setattr(latency_model.LatencyModel, "__init__", spy)
    out = prune_env["tmp"] / "bench-fastest"
    assert main(["benchmark", "--teacher", str(prune_env["teacher"]), "--methods", "fastest", "--macs-target", "0.3",
                 "--latency-size", "32", "--latency-threads", "1", "--finetune-steps", "2", "--finetune-backend",
                 "torch", "--out", str(out), "--tracking-uri", prune_env["uri"], "--quiet", "--json"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows"][0]
    assert row["method"] == "fastest" and row["macs_ratio"] <= 0.3 + 1e-6
    assert built[:2] == [32, 32]  # the benchmark's own build first, then the row's (from the cache)
