"""experiments/lm_vs_first_order.py: Levenberg-Marquardt against Adam and gradient descent, sine and peaks."""

import lm_vs_first_order as exp
import numpy as np
import pytest

import fbackprop as fb

pytestmark = pytest.mark.slow  # in make test-slow: make test keeps to its ten-minute budget


def test_lm_vs_first_order_quick(run_quick):
    result = run_quick(exp)
    m = result["metrics"]
    assert m["sine"]["P"] == 31 and m["peaks"]["P"] == 301
    for name in ("sine", "peaks"):
        lm = m[name]["Levenberg-Marquardt"]
        assert 0 < lm["accepted"] < lm["iterations"]  # Marquardt's rule rejected some trials
        assert lm["final_loss"] < m[name]["target"] < m[name]["initial_loss"]
    assert set(result["figures"]) == {"loss_curves"}
    assert m["peaks"]["iteration_ratio_adam_over_lm"] >= 5  # Adam missing the target counts as budget + 1
    starts = m["sine"]["starts"]  # sine: five untimed starts, the median
    assert len(starts["ratio"]) == exp.STARTS and m["sine"]["median_iteration_ratio_over_starts"] >= 3
    assert starts["seeds"][0] == result["config"]["seed"]
    # wall time is recorded, not claimed
    assert not any("wall time" in claim or "sooner" in claim for claim in result["claims"])
    assert m["sine"]["time_ratio_adam_over_lm"] is None or m["sine"]["time_ratio_adam_over_lm"] > 0


def test_first_below_and_loss_at_time():
    loss = np.array([1.0, 0.5, 0.2, 0.05, 0.01])
    assert exp.first_below(loss, 0.2) == 2 and exp.first_below(loss, 1e-3) is None
    r = {"loss": loss, "seconds": 2.0, "iterations": 4}  # 0.5 s per iteration
    assert (
        exp.loss_at_time(r, 0.0) == 1.0
        and exp.loss_at_time(r, 1.2) == 0.2
        and exp.loss_at_time(r, 2.0) == 0.01
    )
    assert np.isnan(exp.loss_at_time(r, 2.5))  # the run had ended


def test_lm_timing_reuses_one_program_and_counts_every_trial(compiles):
    """The goal=inf call compiles the same program as the timed calls: after it, a run compiles
    nothing (a count of XLA compilations, not a comparison of two clock readings)."""
    net, p0, x, y = exp.problem("sine", True, 0)
    fb.levenberg_marquardt(net, p0, x, y, loss=exp.LOSS, solver="dense", max_steps=40, goal=np.inf)
    before = compiles()
    fb.levenberg_marquardt(net, p0, x, y, loss=exp.LOSS, solver="dense", max_steps=40)
    assert compiles() == before  # the default goal reuses the goal=inf program
    exp.run_lm(net, p0, x, y, steps=40, repeats=2)  # (compiles the small slices of its history once)
    before = compiles()
    r = exp.run_lm(net, p0, x, y, steps=40, repeats=2)
    assert compiles() == before
    assert r["iterations"] == 40 and len(r["loss"]) == 41
    assert np.all(np.diff(r["loss"]) <= 0)  # LM's loss never rises
    assert r["seconds"] > 0 and r["compile_seconds"] > 0
