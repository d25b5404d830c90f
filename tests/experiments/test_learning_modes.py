"""experiments/learning_modes.py: online, mini-batch and batch learning from one start."""

import learning_modes
import numpy as np
import pytest

pytestmark = pytest.mark.slow  # in make test-slow: make test keeps to its ten-minute budget


def test_learning_modes_quick(run_quick):
    result = run_quick(learning_modes)
    m = result["metrics"]
    assert {name: mode["updates_per_epoch"] for name, mode in m["modes"].items()} == {
        "online": 200,
        "mini-batch": 20,
        "batch": 1,
    }
    assert m["one_example_max_abs_diff"] == 0.0
    curves = m["loss_curves"]
    assert all(len(c) == m["epochs"] + 1 for c in curves.values())
    # more updates an epoch, lower loss, by a margin (online vs mini-batch is not ordered: both are noisy)
    assert max(curves["online"][-1], curves["mini-batch"][-1]) <= 0.5 * curves["batch"][-1]
    assert all(mode["seconds"] > 0 for mode in m["modes"].values())
    assert "loss_vs_epochs_and_time" in result["figures"]


def test_updates_per_epoch_follow_the_modes():
    assert learning_modes.updates_per_epoch("online", 200, 10) == 200
    assert learning_modes.updates_per_epoch("minibatch", 205, 10) == 20  # the remainder is left out
    assert learning_modes.updates_per_epoch("batch", 200, 10) == 1


def test_seconds_to_reach_spreads_the_run_evenly():
    loss = np.array([1.0, 0.5, 0.2, 0.1])
    assert learning_modes.seconds_to_reach(loss, 0.2, 0.01) == 0.02
    assert learning_modes.seconds_to_reach(loss, 1.0, 0.01) == 0.0
    assert np.isnan(learning_modes.seconds_to_reach(loss, 0.05, 0.01))
