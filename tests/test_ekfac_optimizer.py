"""The EKFAC optimizer (fbackprop/optim/ekfac.py): each step against its closed form, float64."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
import scipy.linalg
from architectures import problem

import fbackprop as fb
from fbackprop import layers as L

NET = fb.mlp([3, 5, 2], activation="tanh")
CNN = fb.serial(
    L.Conv2D(2, (3, 3), padding="SAME"), L.Activation("tanh"), L.AvgPool2D(2), L.Flatten(), L.Dense(3),
    input_shape=(4, 4, 1),
)  # fmt: skip
LOSS = "cross_entropy"


def _flat(tree):
    return fb.flatten(tree)[0]


def _step(net, opt, params, x, y, state=None):
    """One jitted update on the batch: ``(delta, state)``."""
    state = opt.init(params) if state is None else state
    g = fb.backprop(net, LOSS)(params, x, y)
    return jax.jit(opt.update)(g, state, params, x=x, y=y)


def _wb_to_flat(W_shape) -> np.ndarray:
    """Index in fb.flatten's order (W row-major, then b) of each entry of ``[W | b]`` read row-major."""
    out = W_shape[0]
    fan_in = int(np.prod(W_shape[1:]))
    wb = np.empty((out, fan_in + 1), int)
    wb[:, :-1] = np.arange(out * fan_in).reshape(out, fan_in)
    wb[:, -1] = out * fan_in + np.arange(out)
    return wb.ravel()


def _dense_inverse(factors, params, lam) -> np.ndarray:
    """The block-diagonal ``U diag(1 / (S + lam)) U^T``, ``U = kron(U_G, U_A)`` per layer, in fb.flatten's
    order (only the layers with parameters: the networks here have no parameter-free layer between)."""
    blocks = []
    for f, theta in zip(factors, params):
        if not theta:
            continue
        U = np.kron(np.asarray(f.U_G), np.asarray(f.U_A))
        B = U @ np.diag(1.0 / (np.asarray(f.S).ravel() + lam)) @ U.T  # in [W | b] row-major order
        order = _wb_to_flat(theta["W"].shape)
        P = np.zeros_like(B)
        P[np.ix_(order, order)] = B
        blocks.append(P)
    return scipy.linalg.block_diag(*blocks)


@pytest.mark.parametrize("net", [NET, pytest.param(CNN, marks=pytest.mark.slow)], ids=["mlp", "cnn"])
def test_one_step_is_the_dense_ekfac_formula(net):
    """Step 1, fixed rate: delta = -lr U diag(1/(S + lam)) U^T g, with U_A, U_G, S of fb.ekfac_factors
    on the batch, the matrix built densely here."""
    params, x, y = problem(net, n=6, loss=LOSS)
    lr, lam = 0.3, 0.05
    opt = fb.ekfac(net, LOSS, learning_rate=lr, damping=lam, adapt_damping=False)
    delta, state = _step(net, opt, params, x, y)
    f = fb.ekfac_factors(net, LOSS)(params, x, y)
    g = _flat(fb.backprop(net, LOSS)(params, x, y))
    want = -lr * _dense_inverse(f, params, lam) @ g
    np.testing.assert_allclose(_flat(delta), want, rtol=1e-10, atol=1e-14)
    for got, ref in zip(jax.tree.leaves(state.basis), jax.tree.leaves(f)):
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-14)
    assert int(state.step) == 1 and float(state.damping) == lam


def test_scales_refit_every_step_and_restart_with_a_new_basis():
    """kind="empirical", ema=1, new bases every 2 steps, three batches: steps 1-2 keep step 1's bases and
    S is the mean over both steps of (1/N) sum_n (U_G^T dW_n U_A)^2 (fb.per_example_grads at each
    step's params); step 3 takes the bases of the running factors (the mean of the three batches')
    and S restarts from step 3's batch alone."""
    params, x, y = problem(NET, n=12, loss=LOSS)
    batches = [(x[i : i + 4], y[i : i + 4]) for i in (0, 4, 8)]
    opt = fb.ekfac(
        NET, LOSS, kind="empirical", learning_rate=0.2, adapt_damping=False, ema=1.0, inverse_every=2
    )
    states, points, state, p = [], [], None, params
    for xb, yb in batches:
        points.append(p)
        delta, state = _step(NET, opt, p, xb, yb, state)
        states.append(state)
        p = optax.apply_updates(p, delta)

    def batch_scales(bases, p, xb, yb):
        rows = fb.per_example_grads(NET, LOSS)(p, xb, yb)
        out = []
        for b, r in zip(bases, rows):
            wb = np.concatenate([np.asarray(r["W"]), np.asarray(r["b"])[:, :, None]], axis=2)
            proj = np.einsum("io,nij,jp->nop", b.U_G, wb, b.U_A)
            out.append((proj**2).mean(axis=0))
        return out

    first = fb.ekfac_factors(NET, LOSS, kind="empirical")(params, *batches[0])
    s1, s2 = (batch_scales(first, points[i], *batches[i]) for i in (0, 1))
    for layer in range(2):
        b1, b2 = states[0].basis[layer], states[1].basis[layer]
        np.testing.assert_array_equal(b2.U_A, b1.U_A)  # the bases were kept
        np.testing.assert_array_equal(b2.U_G, b1.U_G)
        np.testing.assert_allclose(b1.S, s1[layer], rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(b2.S, 0.5 * (s1[layer] + s2[layer]), rtol=1e-10, atol=1e-15)
        assert np.max(np.abs(b2.S - b1.S)) > 1e-3 * np.max(b1.S)  # re-fitted: it moved
    kf = [fb.kfac_factors(NET, LOSS, kind="empirical")(points[i], *batches[i]) for i in range(3)]
    for layer in range(2):
        A = sum(k[layer].A for k in kf) / 3
        G = sum(k[layer].G for k in kf) / 3
        np.testing.assert_allclose(states[2].factors[layer].A, A, rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(states[2].basis[layer].U_A, np.linalg.eigh(A)[1], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(states[2].basis[layer].U_G, np.linalg.eigh(G)[1], rtol=1e-8, atol=1e-10)
    s3 = batch_scales(states[2].basis, points[2], *batches[2])
    for layer in range(2):
        np.testing.assert_allclose(states[2].basis[layer].S, s3[layer], rtol=1e-9, atol=1e-15)


def test_model_rate_minimises_the_quadratic_model():
    """Step 1 with the model's rate: alpha = -g.Delta / Delta^T (G + lam I) Delta along EKFAC's Delta."""
    params, x, y = problem(NET, n=7, loss=LOSS)
    lam = 0.02
    d1, _ = _step(NET, fb.ekfac(NET, LOSS, damping=lam, adapt_damping=False), params, x, y)
    g = _flat(fb.backprop(NET, LOSS)(params, x, y))
    Delta = -_dense_inverse(fb.ekfac_factors(NET, LOSS)(params, x, y), params, lam) @ g
    yp = fb.losses.get(LOSS).prepare(y, NET.n_out)
    M = np.asarray(fb.ggn(NET, LOSS)(params, x, yp)) + lam * np.eye(g.size)
    np.testing.assert_allclose(_flat(d1), -(g @ Delta) / (Delta @ M @ Delta) * Delta, rtol=1e-9, atol=1e-14)


def test_jitted_update_compiles_once(compiles):
    """The update is one program: a second step (new state, new params) compiles nothing."""
    params, x, y = problem(NET, n=6, loss=LOSS)
    opt = fb.ekfac(NET, LOSS, inverse_every=2, damping_every=1)
    update = jax.jit(opt.update)
    grad = fb.backprop(NET, LOSS)
    state = opt.init(params)
    delta, state = update(grad(params, x, y), state, params, x=x, y=y)
    params = optax.apply_updates(params, delta)
    g = grad(params, x, y)
    before = compiles()
    delta, state = update(g, state, params, x=x, y=y)
    assert compiles() == before and int(state.step) == 2 and np.isfinite(float(state.rho))
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(delta))


@pytest.mark.slow
def test_trains_a_cnn_through_fb_train():
    """fb.train with fb.ekfac: the median over three initialisations of the loss ratio after 15 epochs
    is below 1/2 (a property with a wide margin, not a trajectory)."""
    opt = fb.ekfac(CNN, LOSS)  # one object: fb.train compiles once for the three runs
    ratios = []
    for seed in range(3):
        params, x, y = problem(CNN, n=24, loss=LOSS, seed=seed)
        r = fb.train(CNN, LOSS, params, x, y, opt, epochs=15)
        ratios.append(r.history.loss[-1] / r.history.loss[0])
    assert np.median(ratios) < 0.5, ratios
