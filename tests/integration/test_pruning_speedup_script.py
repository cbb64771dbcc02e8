"""benchmarks/pruning_speedup.py runs end to end at a tiny size: L1, L1 aligned and the latency model's fastest
widths at one MACs target, measured in rounds, ONNX Runtime with and without spinning workers. No speed claim here (shared CI cores); docs/latency.md has the
measured numbers."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[2]


def test_rows_at_one_target_in_rounds(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GANPRUNE_CACHE", str(tmp_path / "cache"))
    spec = importlib.util.spec_from_file_location("pruning_speedup", ROOT / "benchmarks" / "pruning_speedup.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setattr(sys, "argv", ["pruning_speedup.py", "--ngf", "16", "--sizes", "32", "--targets", "0.25",
                                      "--multiples", "1", "--aligned", "--fastest", "--repeats", "2",
                                      "--spinning-too", "--threads", "1", "--runs", "2", "--json"])
    script.main()
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows"]
    assert [str(r["multiple"]).rstrip("0123456789") for r in rows] == ["", "aligned", "fastest"]  # + this CPU's block
    for r in rows:  # every row spends (about) the target's MACs, and is measured once per round
        assert 3.6 < r["macs_ratio"] < 4.4 and len(r["ort_speedup_rounds"]) == 2 and r["ort_ms"] > 0
        assert len(r["ort_spin_speedup_rounds"]) == 2 and r["ort_spin_ms"] > 0  # ORT's default, same rounds
