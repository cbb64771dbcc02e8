"""benchmarks/paired_table.py: mean ± SE and paired Δ from one benchmark run's rows."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _mod():
    spec = importlib.util.spec_from_file_location("paired_table", ROOT / "benchmarks" / "paired_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(tmp, method, seed, psnr, score=None):
    out = tmp / method / f"seed{seed}"
    out.mkdir(parents=True)
    if score is not None:
        (out / "best_spec.json").write_text(json.dumps({"best": {"own": {"generator": score, "discriminator": 0.0}}}))
    return {"method": method, "seed": seed, "psnr_vs_teacher": psnr, "ssim_vs_teacher": 0.5,
            "search_evaluations": 10 if score is not None else 0, "search_cpu_s": 1.0, "out": str(out)}


def test_paired_differences_and_standard_errors(tmp_path, capsys):
    rows = [_row(tmp_path, "marl", s, p, -1.0 - s) for s, p in enumerate((20.0, 21.0, 22.0))]
    rows += [_row(tmp_path, "random", s, p, -2.0) for s, p in enumerate((19.0, 21.0, 21.0))]
    rows += [_row(tmp_path, "l1", s, 18.0) for s in range(3)]
    (tmp_path / "benchmark.json").write_text(json.dumps({"rows": rows}))
    summary = _mod().main([str(tmp_path), "--baselines", "random,l1"])
    assert summary["marl"]["psnr_vs_teacher"] == pytest.approx((21.0, 1 / 3 ** 0.5))
    assert summary["marl"]["d_vs_random"] == pytest.approx((2 / 3, (1 / 3) ** 0.5 / 3 ** 0.5))
    assert summary["marl"]["d_vs_l1"][0] == pytest.approx(3.0)
    assert summary["marl"]["search_score"][0] == pytest.approx(-2.0) and "search_score" not in summary["l1"]
    out = capsys.readouterr().out
    assert "| marl | 21.00 ± 0.58 |" in out and "| random |" in out


def test_a_missing_seed_is_refused(tmp_path):
    rows = [_row(tmp_path, "marl", 0, 20.0, -1.0), _row(tmp_path, "marl", 1, 20.0, -1.0),
            _row(tmp_path, "l1", 0, 18.0)]
    (tmp_path / "benchmark.json").write_text(json.dumps({"rows": rows}))
    with pytest.raises(SystemExit, match="l1 has no row for seed 1"):
        _mod().main([str(tmp_path)])
