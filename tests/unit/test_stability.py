"""gan.metrics.stability.balance: the G/D balance figures of a fine-tune's history (issue #15 item 3)."""
import math

import pytest

from gan.metrics.stability import balance


def _history(ratio, acc, n=100, every=1):
    return [{"step": s, "loss_d": ratio(s), "loss_g": 1.0, "d_acc": acc(s)} for s in range(every, n + 1, every)]


def test_a_steady_pair_has_no_drift_no_variance_and_no_saturation():
    b = balance(_history(lambda s: 0.5, lambda s: 0.6))
    assert b["ratio_mean"] == pytest.approx(0.5) and b["ratio_drift_per_100"] == pytest.approx(0, abs=1e-9)
    assert b["ratio_var_late"] == pytest.approx(0) and b["d_saturated_steps"] == 0 and b["steps"] == 100


def test_a_d_that_wins_drifts_and_saturates():
    b = balance(_history(lambda s: 0.01 * s, lambda s: 1.0 if s > 60 else 0.7))
    assert b["ratio_drift_per_100"] == pytest.approx(1.0) and b["ratio_var_late"] > 0
    assert b["d_saturated_steps"] == 40


def test_sparse_logs_count_saturated_steps_by_the_logging_interval_and_missing_accuracy_is_not_zero():
    b = balance(_history(lambda s: 0.5, lambda s: 1.0, n=100, every=10))
    assert b["d_saturated_steps"] == 100 and b["logged_every"] == 10
    no_acc = balance([{"step": 1, "loss_d": 1.0, "loss_g": 2.0}])
    assert math.isnan(no_acc["d_acc_mean"]) and no_acc["d_saturated_steps"] is None
    with pytest.raises(ValueError, match="empty history"):
        balance([])
