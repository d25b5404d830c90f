"""experiments/linear_neuron.py: a linear neuron on x = (1, 1), t = 0; backprop is the delta rule."""

import jax.numpy as jnp
import linear_neuron as ln
import numpy as np

import fbackprop as fb


def test_linear_neuron_quick(run_quick):
    result = run_quick(ln)
    m = result["metrics"]
    assert m["random_starts"] == 100
    assert np.allclose(m["end"], m["projection_of_start"], atol=1e-9)
    assert m["bias_max_abs"] == 0.0 and m["bias_delta_rule_max_abs_diff"] <= 1e-12
    assert "loss_surface" in result["figures"]


def test_path_is_the_closed_form():
    """w_k = w* + (1 - 2 eta)^k (w0 - w*), w* the projection: descent along (1, 1) only."""
    w0, eta = np.array([-1.0, 2.5]), 0.3
    path = np.asarray(ln.descend(jnp.asarray(w0), eta, 20)["w"])
    w_star = ln.projection(w0)
    k = np.arange(21)[:, None]
    np.testing.assert_allclose(path, w_star + (1 - 2 * eta) ** k * (w0 - w_star), atol=1e-12)
    assert np.isclose(w_star.sum(), 0.0) and np.isclose(*(w0 - w_star))


def test_example_E_is_twice_fbackprop_C():
    """The convention the docstring states: E = (t - y)^2 (the example's) = 2 C, C = 1/2 (t - y)^2
    (fbackprop)."""
    w = np.array([[0.7, -2.2]])
    C, _ = fb.value_and_backprop(ln.NET, "squared_error")(({"W": w, "b": np.zeros(1)},), ln.X, ln.T)
    assert np.isclose(ln.E(*w[0]), 2 * float(C), rtol=1e-14)


def test_claims_can_fail():
    """eta > 1 overshoots the valley (|1 - 2 eta| > 1): the convergence claims fail, the delta rule still
    holds."""
    r = ln.run(start=(2.0, 0.5), eta=1.1, steps=50, starts=5, seed=0)
    _, claims = ln.summarize(r)
    held = [held for claim, held in claims.items() if "delta rule" in claim and "random" not in claim]
    assert held == [True]
    assert not any(
        held for claim, held in claims.items() if "reaches the valley" in claim or "projection" in claim
    )
