"""The K-FAC optimizer (fbackprop/optim/kfac.py): each step against its closed form, float64."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from architectures import problem

import fbackprop as fb
from fbackprop import layers as L

NET = fb.mlp([3, 5, 2], activation="tanh")
CNN = fb.serial(
    L.Conv2D(3, (3, 3), padding="SAME"), L.Activation("tanh"), L.AvgPool2D(2), L.Flatten(), L.Dense(3),
    input_shape=(4, 4, 1),
)  # fmt: skip
LOSS = "cross_entropy"


def _flat(tree):
    return fb.flatten(tree)[0]


def _step(opt, params, x, y, state=None):
    """One update on the batch: ``(delta, state)``."""
    state = opt.init(params) if state is None else state
    g = fb.backprop(NET, LOSS)(params, x, y)
    return jax.jit(opt.update)(g, state, params, x=x, y=y)  # one program (eager: every op compiled alone)


def test_fixed_rate_step_is_the_damped_kfac_step():
    """ema=0, inverses every step, fixed rate, no momentum: delta = -lr kfac_inverse_vp(F_batch, g, lam)."""
    params, x, y = problem(NET, n=7, loss=LOSS)
    opt = fb.kfac(NET, LOSS, learning_rate=0.3, damping=0.05, adapt_damping=False, ema=0.0, inverse_every=1)
    delta, state = _step(opt, params, x, y)
    g = fb.backprop(NET, LOSS)(params, x, y)
    want = fb.kfac_inverse_vp(fb.kfac_factors(NET, LOSS)(params, x, y), g, 0.05)
    np.testing.assert_allclose(_flat(delta), -0.3 * _flat(want), rtol=1e-10, atol=1e-14)
    assert int(state.step) == 1 and float(state.damping) == 0.05


def _model_matrix(params, x, y, lam):
    yp = fb.losses.get(LOSS).prepare(y, NET.n_out)
    return np.asarray(fb.ggn(NET, LOSS)(params, x, yp)) + lam * np.eye(_flat(params).size)


def test_rate_and_momentum_minimise_the_quadratic_model():
    """Step 1: alpha = -g.Delta / Delta^T (G + lam) Delta; step 2: (alpha, mu) solve the 2 x 2 system
    of M(alpha Delta + mu delta_prev), with G the dense GGN of the batch."""
    params, x, y = problem(NET, n=7, loss=LOSS)
    lam = 0.02
    opt = fb.kfac(NET, LOSS, damping=lam, adapt_damping=False, ema=0.0, inverse_every=1)
    g = _flat(fb.backprop(NET, LOSS)(params, x, y))
    M = _model_matrix(params, x, y, lam)
    d1, state = _step(opt, params, x, y)
    factors = fb.kfac_factors(NET, LOSS)(params, x, y)
    Delta = -_flat(fb.kfac_inverse_vp(factors, fb.backprop(NET, LOSS)(params, x, y), lam))
    alpha = -(g @ Delta) / (Delta @ M @ Delta)
    np.testing.assert_allclose(_flat(d1), alpha * Delta, rtol=1e-9, atol=1e-14)
    # the second step, at the same params and batch, from the first step's state
    d2, _ = _step(opt, params, x, y, state)
    D = -_flat(fb.kfac_vp(state.inverse, fb.backprop(NET, LOSS)(params, x, y)))  # the kept inverse
    d0 = _flat(d1)
    S = np.array([[D @ M @ D, D @ M @ d0], [d0 @ M @ D, d0 @ M @ d0]])
    # at the same params and batch D is parallel to d0 and S is singular up to rounding (which, by the
    # machine, can leave np.linalg.solve a NaN); the minimiser over span{D, d0} is one vector all the same:
    # the least-squares solution's combination, as the optimizer's own fallback to alpha alone gives it
    a, m = np.linalg.lstsq(S, -np.array([g @ D, g @ d0]), rcond=1e-10)[0]
    np.testing.assert_allclose(_flat(d2), a * D + m * d0, rtol=1e-8, atol=1e-14)


def test_the_update_decreases_the_model_and_the_norm_constraint_holds():
    """M(delta) < 0 for the model's step; with norm_constraint = c, delta^T (G + lam) delta <= c."""
    params, x, y = problem(NET, n=7, loss=LOSS)
    lam, c = 0.02, 1e-4
    g = _flat(fb.backprop(NET, LOSS)(params, x, y))
    M = _model_matrix(params, x, y, lam)
    d, _ = _step(fb.kfac(NET, LOSS, damping=lam, adapt_damping=False), params, x, y)
    d = _flat(d)
    assert g @ d + 0.5 * d @ M @ d < 0
    dc, _ = _step(fb.kfac(NET, LOSS, damping=lam, adapt_damping=False, norm_constraint=c), params, x, y)
    dc = _flat(dc)
    assert dc @ M @ dc <= c * (1 + 1e-10)
    assert d @ M @ d > c  # the constraint was active
    np.testing.assert_allclose(dc / np.linalg.norm(dc), d / np.linalg.norm(d), rtol=1e-10, atol=1e-12)


def test_running_averages_and_inverse_schedule():
    """t = 1: the batch's factors; t = 2: eps = 1/2, the mean of both batches; the inverse is kept
    between its recomputations (every 3 steps here)."""
    params, x, y = problem(NET, n=8, loss=LOSS)
    xa, ya, xb, yb = x[:4], y[:4], x[4:], y[4:]
    opt = fb.kfac(NET, LOSS, learning_rate=0.1, adapt_damping=False, inverse_every=3)
    _, s1 = _step(opt, params, xa, ya)
    _, s2 = _step(opt, params, xb, yb, s1)
    fa, fb_ = (fb.kfac_factors(NET, LOSS)(params, xs, ys) for xs, ys in ((xa, ya), (xb, yb)))
    for got, a, b in zip(s2.factors, fa, fb_):
        np.testing.assert_allclose(got.A, 0.5 * (a.A + b.A), rtol=1e-12)
        np.testing.assert_allclose(got.G, 0.5 * (a.G + b.G), rtol=1e-12)
    chex_same = jax.tree.map(lambda u, v: bool(jnp.array_equal(u, v)), s1.inverse, s2.inverse)
    assert all(jax.tree.leaves(chex_same))


def test_damping_follows_the_reduction_ratio():
    """At a damping step lam moves by omega = (19/20)^damping_every as rho (computed densely here) says."""
    params, x, y = problem(NET, n=7, loss=LOSS)
    lam = 0.02
    opt = fb.kfac(NET, LOSS, damping=lam, damping_every=1)
    d, state = _step(opt, params, x, y)
    C = lambda p: float(fb.losses.get(LOSS)(NET.apply(p, x), y))  # noqa: E731
    df = _flat(d)
    model = (
        _flat(fb.backprop(NET, LOSS)(params, x, y)) @ df + 0.5 * df @ _model_matrix(params, x, y, lam) @ df
    )
    rho = (C(optax.apply_updates(params, d)) - C(params)) / model
    np.testing.assert_allclose(float(state.rho), rho, rtol=1e-8)
    omega = 19.0 / 20.0
    want = lam * omega if rho > 0.75 else (lam / omega if rho < 0.25 else lam)
    np.testing.assert_allclose(float(state.damping), want, rtol=1e-12)


@pytest.mark.parametrize(
    "kind",
    [
        "exact",
        pytest.param("fisher", marks=pytest.mark.slow),
        pytest.param("empirical", marks=pytest.mark.slow),
    ],
)
def test_trains_a_cnn_through_fb_train(kind):
    """fb.train with fb.kfac: every kind lowers the loss of a small CNN by half in 15 epochs, from each of
    three initialisations (a property with a wide margin, not a trajectory)."""
    opt = fb.kfac(CNN, LOSS, kind=kind)  # one object: fb.train compiles once for the three runs
    for seed in range(3):
        params, x, y = problem(CNN, n=24, loss=LOSS, seed=seed)
        r = fb.train(CNN, LOSS, params, x, y, opt, epochs=15)
        assert r.history.loss[-1] < 0.5 * r.history.loss[0]
