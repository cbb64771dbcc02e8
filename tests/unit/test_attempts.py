"""A resumed run's cost counts every attempt (orchestration/attempts.py)."""
import json
import os
import time

from orchestration.attempts import AttemptLedger


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_a_killed_attempt_left_its_cost_and_the_resumed_one_adds_to_it(tmp_path):
    first = AttemptLedger(tmp_path, resumed=False, every=0.05).start()
    _spin(0.3)
    time.sleep(0.2)  # the thread rewrites the ledger while the attempt runs; then the process "dies"
    left = json.loads((tmp_path / "attempts.json").read_text())["attempts"]
    assert len(left) == 1 and left[0]["pid"] == os.getpid() and left[0]["cpu_s"] >= 0.25
    first._stop.set()  # killed: no final write
    first._thread.join()

    again = AttemptLedger(tmp_path, resumed=True, every=0.05).start()
    _spin(0.1)
    again.stop()
    total = again.totals()
    saved = json.loads((tmp_path / "attempts.json").read_text())["attempts"]
    assert total["attempts"] == len(saved) == 2 and saved[0] == left[0]
    assert total["cpu_s"] >= left[0]["cpu_s"] + 0.1
    assert total["total_s"] >= left[0]["wall_s"]


def test_a_fresh_run_ignores_an_old_ledger_and_a_broken_one_costs_only_its_numbers(tmp_path):
    (tmp_path / "attempts.json").write_text(json.dumps({"attempts": [{"pid": 1, "cpu_s": 99.0, "wall_s": 99.0}]}))
    fresh = AttemptLedger(tmp_path, resumed=False).start()
    fresh.stop()
    assert fresh.totals()["attempts"] == 1 and fresh.totals()["cpu_s"] < 99
    (tmp_path / "attempts.json").write_text("{not json")
    broken = AttemptLedger(tmp_path, resumed=True).start()
    broken.stop()
    assert broken.totals()["attempts"] == 1
