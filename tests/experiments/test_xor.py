"""experiments/xor.py: a 2-2-1 network learns XOR over most seeds; a single layer never does."""

import numpy as np
import xor

import fbackprop as fb


def test_xor_quick(run_quick):
    result = run_quick(xor)
    m = result["metrics"]
    assert m["seeds"] == 200 and m["epochs"] == 2000
    assert (
        0.7 <= m["success_rate_221"] < 1.0
    )  # most seeds succeed, and some fail: the failure analysis is not empty
    assert m["success_count_single"] == 0 and m["points_right_single_counts"][4] == 0
    assert m["failures_on_plateau"] <= m["failures_221"] == sum(m["points_right_221_counts"][:4])
    assert m["final_loss_221_successes"]["q50"] < 0.01 < m["final_loss_221"]["q100"]
    assert m["diverged_221"] == 0 and m["diverged_single"] == 0
    assert set(result["figures"]) == {"decision_boundary", "final_losses"}


def test_no_line_gets_all_four_points():
    """The docstring's proof, checked by brute force: over a grid of lines, the best gets exactly 3 of 4."""
    x, t = fb.data.xor(np.float64)
    g = np.linspace(-3, 3, 25)
    w = np.stack(np.meshgrid(g, g, g), -1).reshape(-1, 3)  # (w0, w1, w2)
    z = w[:, :1] + w[:, 1:] @ x.T  # (lines, 4)
    right = xor.right_side(1 / (1 + np.exp(-z)), t[:, 0]).sum(1)
    assert right.max() == 3


def test_right_side_counts_one_half_as_wrong():
    t = np.array([0.0, 1.0, 1.0, 0.0])
    yhat = np.array([[0.1, 0.9, 0.6, 0.4], [0.5, 0.5, 0.5, 0.5], [0.6, 0.9, 0.9, 0.1]])
    assert xor.right_side(yhat, t).sum(1).tolist() == [4, 0, 3]


def test_plateau_of():
    loss = np.array([1 / 16 + 1e-3, 1 / 12 - 1e-3, 1 / 8, 0.1, 1 / 16])
    grad = np.array([1e-4, 1e-4, 1e-4, 1e-4, 1e-2])  # the last is near 1/16 but still moving
    assert xor.plateau_of(loss, grad).tolist() == [0, 1, 2, -1, -1]


def test_perceptron_converges_on_a_separable_problem():
    """The rule itself works: on OR it stops making errors; on XOR it never does."""
    x, t = fb.data.xor(np.float64)
    t_or = (x.max(1, keepdims=True) > 0).astype(np.float64)
    separable = xor.perceptron(100, 1.0, 0, data=(x, t_or))
    assert separable["errors"][-10:].sum() == 0 and separable["best_right"] == 4
    r = xor.perceptron(100, 1.0, 0)
    assert r["errors"].min() >= 1 and r["best_right"] == 3
