"""experiments/curvature_during_training.py: sharpness and trace along full-batch GD (edge of stability)."""

import curvature_during_training as cdt
import numpy as np
import pytest

pytestmark = pytest.mark.slow  # in make test-slow: make test keeps to its ten-minute budget


def test_curvature_during_training_quick(run_quick):
    result = run_quick(cdt)
    m = result["metrics"]
    K, M = len(m["rates"]), len(m["measured_at"])
    assert np.shape(m["sharpness"]) == np.shape(m["trace"]) == (K, M)
    assert m["measured_at"][-1] == 600 and K == 3  # --quick: 600 steps, three rates
    assert m["join_gap"] <= 1e-12  # the segments of fb.train_many join up
    assert np.all(np.asarray(m["checks"]["lanczos_rel_err"]) <= 1e-6)
    assert set(result["figures"]) == {"sharpness", "hessian_vs_ggn_diagonal"}


def fake_run(sharpness, loss, rates=(0.2, 0.05)):
    """A result dict shaped like ``run``'s, with everything but the given curves at passing values."""
    K = len(rates)
    n = 5
    h = np.ones((K + 1, n))
    g = np.r_[[np.full(n, 0.5)], np.full((K, n), 0.9)]  # closer to diag H at the end
    checks = {
        "lanczos_rel_err": np.zeros(K + 1),
        "trace_rel_err": np.zeros(K + 1),
        "hutchinson_z": np.ones(K + 1),
        "hessian_diag": h,
        "ggn_diag": g,
        "diag_rel_diff": np.linalg.norm(h - g, axis=1) / np.linalg.norm(h, axis=1),
    }
    return {
        "rates": np.asarray(rates),
        "sharpness": np.asarray(sharpness, float),
        "loss": np.asarray(loss, float),
        "diverged": np.zeros(K, bool),
        "checks": checks,
    }


def test_claims_read_the_curves_and_can_fail():
    # rate 0.2 (edge 10): rises from 6 to the edge and hovers; rate 0.05 (edge 40): sharpens to 12, below
    sharp = [[6, 9, 10.5, 10, 9.9, 10.1, 10], [6, 8, 10, 11, 12, 12, 12]]
    loss = [[1.0, 0.5, 0.6, 0.2, 0.05, 0.08, 0.04], [1.0, 0.8, 0.6, 0.4, 0.3, 0.2, 0.1]]
    claims = cdt.claims(fake_run(sharp, loss))
    assert all(claims.values()), [c for c, held in claims.items() if not held]
    m = cdt.summary(fake_run(sharp, loss))
    np.testing.assert_allclose(m["max_over_edge"], [1.05, 0.3])
    np.testing.assert_allclose(m["last_half_median_over_edge"], [1.0, 0.3])
    np.testing.assert_array_equal(m["loss_rises"], [2, 0])

    def failed(sharp, loss):
        return {c for c, held in cdt.claims(fake_run(sharp, loss)).items() if not held}

    overshoot = [[6, 9, 16, 10, 10, 10, 10], sharp[1]]  # 1.6 x the edge
    assert any("1.5 (2/eta)" in c for c in failed(overshoot, loss))
    below = [[6, 7, 8, 8, 8, 8, 8], sharp[1]]  # never reaches 0.95 x 10
    assert any("reaches the edge" in c for c in failed(below, loss))
    monotone = [[1.0, 0.5, 0.4, 0.2, 0.05, 0.04, 0.03], loss[1]]  # no rise at the edge
    assert any("not monotone" in c for c in failed(sharp, monotone))
    bumpy_control = [loss[0], [1.0, 0.8, 0.9, 0.4, 0.3, 0.2, 0.1]]
    assert any("falls at every step" in c for c in failed(sharp, bumpy_control))
    flat = [sharp[0], [6, 6, 6, 6, 7, 7, 7]]  # the control does not sharpen 1.25x
    assert any("sharpens" in c for c in failed(flat, loss))
