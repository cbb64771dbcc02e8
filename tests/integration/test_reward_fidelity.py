"""benchmarks/reward_fidelity.py end to end at a tiny scale: backend scores per K on train-split search
items, full fine-tunes scored on the test split, one rank correlation per K, and --resume."""
import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KS = (0, 1)


def _bench():
    spec = importlib.util.spec_from_file_location("reward_fidelity", ROOT / "benchmarks" / "reward_fidelity.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def teacher(one_thread, tmp_path_factory):
    from tests.teachers import tiny_teacher

    tmp = tmp_path_factory.mktemp("rf_teacher")
    return tiny_teacher(tmp / "teacher", data_root=tmp / "data", size=32, steps=20)


def test_reward_fidelity_tiny(teacher, tmp_path, capsys):
    bench = _bench()
    out = tmp_path / "rf"
    argv = ["--teacher", str(teacher), "--candidates", "4", "--ks", ",".join(map(str, KS)),
            "--finetune-steps", "3", "--finetune-backend", "torch", "--threads", "1", "--out", str(out)]
    result = bench.main(argv)
    printed = capsys.readouterr().out

    written = json.loads((out / "reward_fidelity.json").read_text())
    assert (out / "reward_fidelity.png").is_file()
    assert written["settings"]["ks"] == list(KS) and written["settings"]["backend_split"] == "train"
    assert set(written["per_k"]) == {str(k) for k in KS}  # one correlation per K
    for k in KS:
        s = written["per_k"][str(k)]["reward"]
        assert s["n"] == len(written["candidates"])
        assert math.isfinite(s["spearman"]) and -1 <= s["spearman"] <= 1
        assert 1 <= s["pick_final_rank"] <= s["n"] and s["regret_db"] >= 0
    cands = written["candidates"]
    assert len(cands) >= 4
    assert len({c["key"] for c in cands}) == len(cands)  # deduplicated
    assert {"uniform", "l1"} <= {c["label"] for c in cands}
    for c in cands:
        assert set(c["backend"]) == {str(k) for k in KS}
        assert c["final"]["eval_split"] == "test"
        assert math.isfinite(c["final"]["after"]["psnr_vs_teacher"])
        assert c["generator_macs_ratio"] <= 0.25 + 1e-9
    assert "| K | signal |" in printed and "reward_fidelity.py" in printed
    assert result["per_k"].keys() == written["per_k"].keys()

    # --resume reuses every stored backend score and fine-tune: the same numbers, nothing re-run
    again = bench.main(argv + ["--resume"])
    assert [c["final"] for c in again["candidates"]] == [c["final"] for c in cands]
    assert again["per_k"] == written["per_k"]


def test_reward_fidelity_scores_the_supernet_backend_too(teacher, tmp_path):
    """``--supernet``: the supernet backend's score ranks the same candidates beside the local Ks (#15 item 5)."""
    out = tmp_path / "rf_sn"
    result = _bench().main(["--teacher", str(teacher), "--candidates", "3", "--ks", "0", "--supernet",
                            "--finetune-steps", "2", "--finetune-backend", "torch", "--threads", "1", "--out", str(out)])
    assert result["settings"]["ks"] == [0, "supernet"] and set(result["per_k"]) == {"0", "supernet"}
    for c in result["candidates"]:
        b = c["backend"]["supernet"]
        assert b["settings"]["backend"] == "supernet" and math.isfinite(b["reward"])
    assert (out / "reward_fidelity.png").is_file()
