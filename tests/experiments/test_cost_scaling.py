"""experiments/cost_scaling.py: time of one gradient by backprop, forward mode and finite differences vs P."""

import math

import cost_scaling
import numpy as np


def test_cost_scaling_quick(run_quick):
    result = run_quick(cost_scaling)
    m = result["metrics"]
    rows = m["rows"]
    assert [r["depth"] for r in rows] == [*cost_scaling.DEPTHS["quick"][0], *cost_scaling.DEPTHS["quick"][1]]
    assert all(set(r["time"]) == {cost_scaling.NOOP, *cost_scaling.METHODS} for r in rows[:3])
    assert all(r["P"] == r["depth"] * 16 * 17 for r in rows)
    # forward mode and finite differences were measured whole: every one of their times is a measurement
    assert m["fitted_P"]["finite differences"] == [r["P"] for r in rows[:3]]
    assert m["slopes"]["backprop"] < m["slopes"]["finite differences"] - 0.5
    assert "scaling" in result["figures"]


def synthetic(bp_power=1.0, fd_power=2.0, noop=1e-5):
    """Rows with times that follow power laws of P (seconds), as ``run`` lays them out."""
    rows = []
    for depth in (1, 2, 4, 8, 16):
        P = depth * 272
        t = {cost_scaling.NOOP: noop, "forward pass": 1e-7 * P, "backprop": 3e-7 * P**bp_power}
        if depth <= 4:
            t["forward mode"] = 1e-7 * P**fd_power
            t["finite differences"] = 2e-7 * P**fd_power
        rows.append({"depth": depth, "P": P, "time": t})
    return rows


def test_claims_hold_for_the_textbook_costs():
    s = cost_scaling.summarize(synthetic())
    assert all(s["claims"].values()), s["claims"]
    assert math.isclose(s["slopes"]["backprop"], 1.0) and math.isclose(s["slopes"]["finite differences"], 2.0)
    assert math.isclose(s["ratio_growth"]["forward mode"], 4.0)  # P grows 4x over the shared sizes


def test_claims_fail_when_the_costs_are_wrong():
    quadratic_backprop = cost_scaling.summarize(synthetic(bp_power=2.0))["claims"]
    assert not all(quadratic_backprop.values())
    linear_fd = cost_scaling.summarize(synthetic(fd_power=1.0))["claims"]
    assert sum(not held for held in linear_fd.values()) >= 2  # the slope gap and the 10x slowdown


def test_times_under_the_overhead_are_not_fitted():
    rows = synthetic(noop=2e-4)  # the forward pass is under 5 no-op calls below P = 10000
    s = cost_scaling.summarize(rows)
    assert s["fitted_P"]["forward pass"] == []
    assert not list(s["claims"].values())[0]  # no measurable forward pass: the ratio claim cannot hold
    assert cost_scaling.above_overhead(rows[-1], "backprop") and not cost_scaling.above_overhead(
        rows[0], "backprop"
    )


def test_slope_of_a_power_law():
    P = np.array([100, 300, 1000, 3000])
    assert math.isclose(cost_scaling.slope(P, 5e-9 * P**1.7), 1.7)
