"""experiments/two_spirals.py: Levenberg-Marquardt against Adam on the two spirals."""

import jax
import numpy as np
import pytest
import two_spirals as exp

import fbackprop as fb

pytestmark = pytest.mark.slow  # in make test-slow: make test keeps to its ten-minute budget


def test_two_spirals_quick(run_quick):
    result = run_quick(exp)
    m = result["metrics"]
    assert m["N"] == 194 and m["P"] == 501 and m["lm"]["trials"] == 1000
    assert 0 < m["lm"]["accepted"] < m["lm"]["trials"]
    assert (
        m["adam"]["final_accuracy"] >= 0.98 and 0.0 < m["lm"]["accuracy_at_adam_seconds"] <= 1.0
    )  # 99.5-100% from seeds 0-4
    assert set(result["figures"]) == {"decision_regions", "curves"}


def test_calls_of_a_chunk_continue_one_run_exactly():
    """Params and next mu carried from call to call give the one-call run's loss history."""
    _, _, x, t = exp.problem(0)
    net = fb.mlp([2, 6, 6, 1], activation="tanh", output="tanh")  # small: two programs to compile
    p0 = net.init(jax.random.key(1), np.float64)
    chunked = exp.run_lm(net, p0, x, t, trials=60, chunk=20)
    whole = fb.levenberg_marquardt(net, p0, x, t, max_steps=60)
    assert chunked["iterations"] == 60 and list(chunked["call_ends"]) == [0, 20, 40, 60]
    assert 0 < np.sum(np.diff(chunked["loss"]) == 0) < 60  # rejected trials happened, and steps
    np.testing.assert_allclose(chunked["loss"], np.asarray(whole.history.loss), rtol=1e-9)
    np.testing.assert_allclose(chunked["mu"], np.asarray(whole.history.mu[1:]), rtol=1e-12)
    np.testing.assert_allclose(
        fb.flatten(chunked["params"])[0], fb.flatten(whole.params)[0], rtol=1e-7, atol=1e-9
    )


def test_lm_accuracy_at_takes_the_last_finished_call():
    lm = {"accuracy": np.array([0.5, 0.6, 0.9, 1.0]), "call_seconds": np.array([0.0, 1.0, 2.0, 3.0])}
    assert (
        exp.lm_accuracy_at(lm, 0.5) == 0.5
        and exp.lm_accuracy_at(lm, 2.0) == 0.9
        and exp.lm_accuracy_at(lm, 9) == 1.0
    )


def test_accuracy_is_exact():
    net, p0, x, t = exp.problem(0)
    yhat = np.asarray(net.apply(p0, x))
    assert exp.accuracy(net, p0, x, np.sign(yhat)) == 1.0  # not 0.99999994
    assert exp.accuracy(net, p0, x, -np.sign(yhat)) == 0.0
