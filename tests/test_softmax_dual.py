"""The reduced dual solve for softmax cross-entropy (``optim/softmax_dual.py``): its factor against
the loss Hessian and LAPACK's Cholesky, its step against the dense solve of ``(G + mu I) delta = -g``
(float64), and finite steps where the softmax saturates."""

import jax
import jax.numpy as jnp
import pytest

import fbackprop as fb
from fbackprop.optim import dual
from fbackprop.optim import softmax_dual as SD
from fbackprop.optim import solvers as S
from fbackprop.validate import check_call

CE = fb.losses.get("cross_entropy")


def _rel(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


def _logits_and_targets(key, n, k, soft, scale=3.0, dtype=jnp.float64):
    kz, ky = jax.random.split(key)
    z = scale * jax.random.normal(kz, (n, k), dtype)
    y = jax.nn.one_hot(jax.random.randint(ky, (n,), 0, k), k, dtype=dtype)
    if soft:  # label smoothing, rows summing to 1 + 1e-9 (within the loss's sqrt(eps)): u leaves S's range
        y = 0.8 * y + 0.2 / k + 1e-9 * jnp.arange(k, dtype=dtype) / k
    return z, y


@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("soft", [False, True])
def test_factor_squares_to_the_softmax_hessian_and_splits_the_gradient(key, k, soft):
    z, y = _logits_and_targets(key, 9, k, soft)
    u = CE.grad(z, y)
    S_, L, r, v = SD.softmax_factor(z, u)
    assert S_.shape == (9, k, k - 1) and r.shape == (9, k - 1)
    assert _rel(jnp.einsum("nki,nji->nkj", S_, S_), CE.hessian(z, y)) <= 1e-13
    assert _rel(jnp.einsum("nki,ni->nk", S_, r) + v, u) <= 1e-13
    v_max = float(jnp.max(jnp.abs(v)))  # sum(u) = sum(p) - sum(y): rounding, or the soft targets' 1e-9
    assert v_max <= 1e-15 if not soft else 1e-11 < v_max < 1e-8


@pytest.mark.parametrize("k", [2, 4])
def test_closed_form_factor_is_the_cholesky_of_the_reduced_hessian(key, k):
    z, y = _logits_and_targets(key, 6, k, False)
    _, L, _, _ = SD.softmax_factor(z, CE.grad(z, y))
    p, m = jax.nn.softmax(z), jnp.argmax(z, axis=1)
    for n in range(6):
        q = jnp.delete(p[n], m[n])
        Hh = jnp.diag(q) - jnp.outer(q, q)
        assert _rel(L[n], jnp.linalg.cholesky(Hh)) <= 1e-12


def _problem(key, k, soft, n=7, sizes=(2, 5)):
    net = fb.mlp([*sizes, k], activation="tanh")
    params = net.init(key, jnp.float64)
    kx, ky = jax.random.split(jax.random.fold_in(key, 1))
    x = jax.random.normal(kx, (n, sizes[0]), jnp.float64)
    labels = jax.random.randint(ky, (n,), 0, k)
    y = 0.8 * jax.nn.one_hot(labels, k) + 0.2 / k + 1e-9 * jnp.arange(k) / k if soft else labels
    x, y = check_call(net, CE, params, x, y)
    theta, unflatten = jax.flatten_util.ravel_pytree(params)
    return S.Problem(net, CE, x, y, unflatten, False, 3, 1e-10, 100), theta


@pytest.mark.parametrize("k, soft", [(2, False), (3, False), (3, True), (4, True)])
@pytest.mark.parametrize("mu", [1e-2, 1.0, 100.0])
def test_reduced_dual_step_equals_the_dense_solve(key, k, soft, mu):
    pb, theta = _problem(key, k, soft)
    lin = dual.linearize_dual(pb, theta)
    assert isinstance(lin, SD.SoftmaxDual) and lin.K.shape == (7 * (k - 1),) * 2
    delta, predicted = dual.solve_dual(pb, lin, mu)
    dense = S.linearize_dense(pb, theta)  # G = sum_n J_n^T H_n J_n, g = J^T u, formed
    delta_ref, predicted_ref = S.solve_normal(dense, mu)
    assert _rel(delta, delta_ref) <= 1e-10
    assert abs(float(predicted - predicted_ref)) <= 1e-10 * abs(float(predicted_ref))


@pytest.mark.parametrize("dtype, margin", [(jnp.float64, 800.0), (jnp.float32, 120.0)])
def test_saturated_softmax_gives_a_finite_factor_and_step(key, dtype, margin):
    z = jnp.array([[margin, 0.0, -margin], [0.0, margin, 1.0], [0.0, 0.0, 0.0]], dtype)  # p underflows to 0
    y = jax.nn.one_hot(jnp.array([2, 1, 0]), 3, dtype=dtype)  # the first row confidently wrong
    S_, L, r, v = SD.softmax_factor(z, CE.grad(z, y))
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in (S_, L, r, v))
    assert bool(jnp.all(jnp.diagonal(L, axis1=1, axis2=2) > 0))
    net = fb.mlp([2, 3], activation="identity")
    params = jax.tree.map(lambda a: a.astype(dtype), net.init(key, jnp.float64))
    params[0]["W"] = params[0]["W"].at[:, 0].set(jnp.array([margin, 0.0, -margin], dtype))  # saturating
    x, labels = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype), jnp.array([2, 1, 0])
    r_lm = fb.levenberg_marquardt(net, params, x, labels, loss="cross_entropy", solver="dual", max_steps=5)
    assert bool(jnp.all(jnp.isfinite(jax.flatten_util.ravel_pytree(r_lm.params)[0])))
    assert float(r_lm.history.loss[int(r_lm.iterations)]) < float(r_lm.history.loss[0])
