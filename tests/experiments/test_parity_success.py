"""experiments/parity_success.py: parity-N success rates of Levenberg-Marquardt, Adam and gradient descent."""

import jax
import jax.numpy as jnp
import numpy as np
import parity_success as exp
import pytest

import fbackprop as fb

pytestmark = pytest.mark.slow  # in make test-slow: make test keeps to its ten-minute budget


def test_parity_success_quick(run_quick):
    result = run_quick(exp)
    m = result["metrics"]
    assert m["seeds"] == 20 and list(m["success_rate"]) == [3, 4]
    assert m["padded_units_max_abs_weight"] == 0.0
    assert set(result["figures"]) == {"success_rate"}


@pytest.mark.parametrize("N", [2, 3, 4, 5, 6, 7, 8])
def test_the_construction_computes_parity(N):
    x, t = fb.data.parity(N, "bipolar", np.float64)
    yhat = np.asarray(exp.parity_net(N, N).apply(exp.construction(N), x))
    assert np.all(np.sign(yhat) == t)
    assert np.abs(yhat - t).max() < 0.3  # |tanh(+-1) -+ 1| = 0.238...


def test_padded_units_do_not_change_the_network():
    """The h-unit net and its zero-padded (H-unit) twin give the same outputs (to rounding) and the same
    loss gradient on the live weights, and zero gradient on the padded ones."""
    N, h, H = 4, 2, 5
    p = exp.padded_inits(N, h, H, 3, np.random.default_rng(0))
    x, t = fb.data.parity(N, "bipolar", np.float64)
    big, small = exp.parity_net(N, H), exp.parity_net(N, h)
    for s in range(3):
        pb = jax.tree.map(lambda l: jnp.asarray(l[s]), p)  # noqa: B023 (used at once, inside the loop)
        ps = ({"W": pb[0]["W"][:h], "b": pb[0]["b"][:h]}, {"W": pb[1]["W"][:, :h], "b": pb[1]["b"]})
        # equal to rounding: the two widths may sum their dot products in another order (XLA -O2)
        np.testing.assert_allclose(big.apply(pb, x), small.apply(ps, x), rtol=1e-14, atol=1e-16)
        g = fb.backprop(big, "squared_error")(pb, x, t)
        assert float(jnp.abs(g[0]["W"][h:]).max()) == 0.0 and float(jnp.abs(g[1]["W"][:, h:]).max()) == 0.0
        gs = fb.backprop(small, "squared_error")(ps, x, t)
        np.testing.assert_allclose(g[0]["W"][:h], gs[0]["W"], rtol=1e-12, atol=1e-15)
    r1, r2 = np.sqrt(6 / (N + h)), np.sqrt(6 / (h + 1))  # Glorot ranges of the 4-2-1 net
    assert np.abs(p[0]["W"][:, :h]).max() <= r1 and np.abs(p[1]["W"][:, :, :h]).max() <= r2


def test_adam_or_gd_picks_the_rule_by_the_hyperparameter():
    import optax

    params = {"w": jnp.array([1.0, -2.0])}
    grads = {"w": jnp.array([0.5, 0.25])}
    for h, rule in ((1.0, optax.adam(exp.ADAM_LR)), (-1.0, optax.sgd(exp.GD_LR))):
        opt = exp.adam_or_gd(h)
        u, _ = opt.update(grads, opt.init(params), params)
        expected, _ = rule.update(grads, rule.init(params), params)
        np.testing.assert_allclose(u["w"], expected["w"])


def test_one_hidden_unit_is_linearly_separable_only():
    """The docstring's argument: with h = 1 the output's sign is that of a monotone function of one
    w . x + b, and no hyperplane splits parity (checked on random lines for N = 3)."""
    x, t = fb.data.parity(3, "bipolar", np.float64)
    w = np.random.default_rng(0).normal(size=(20000, 4))
    right = (np.sign(x @ w[:, :3].T + w[:, 3]) == t).sum(0)
    assert right.max() < 8
