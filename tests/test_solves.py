"""The solve parts: each equals the string option it stands for, options live on the part, and the
K-FAC solve equals its closed form."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import fbackprop as fb
from fbackprop.optim import solvers as S


def _sine(n=30):
    net = fb.mlp([1, 5, 1], activation="tanh")
    x, y = fb.data.sine(n, dtype=np.float64)
    return net, net.init(jax.random.key(0), jnp.float64), x, y


@pytest.mark.parametrize(
    "name, part, flat",
    [
        ("dense", fb.optim.Dense(), {}),
        ("accumulate", fb.optim.Accumulate(chunk_size=7), {"chunk_size": 7}),
        ("cg", fb.optim.CG(tol=1e-12, maxiter=40), {"cg_tol": 1e-12, "cg_maxiter": 40}),
        ("dual", fb.optim.Dual(), {}),
    ],
)
def test_a_part_runs_exactly_as_its_name_and_flat_options(name, part, flat):
    net, p, x, y = _sine(12 if name == "dual" else 30)  # dual: fewer residuals than params
    a = fb.levenberg_marquardt(net, p, x, y, solver=name, max_steps=12, **flat)
    b = fb.levenberg_marquardt(net, p, x, y, solver=part, max_steps=12)
    np.testing.assert_array_equal(a.history.loss, b.history.loss)


def test_newton_is_curvature_hessian():
    net, p, x, y = _sine()
    a = fb.newton(net, p, x, y, max_steps=8)
    b = fb.levenberg_marquardt(net, p, x, y, solver="dense", curvature="hessian", max_steps=8)
    np.testing.assert_array_equal(a.history.loss, b.history.loss)


def test_the_kfac_solve_is_the_damped_kronecker_inverse_and_the_exact_model_decrease():
    net = fb.mlp([3, 4, 2], activation="tanh")
    p = net.init(jax.random.key(1), jnp.float64)
    x = jax.random.normal(jax.random.key(2), (9, 3))
    y = jax.random.normal(jax.random.key(3), (9, 2))
    theta, unflatten = ravel_pytree(p)
    loss = fb.losses.get("squared_error")
    pb = S.Problem(net, loss, x, y, unflatten, False, 9, 0.0, 1)
    part, mu = fb.optim.KFAC(), 0.3
    lin = part.linearize(pb, theta)
    delta, predicted = part.solve(pb, lin, mu)
    f = fb.kfac_factors(net, "squared_error")(p, x, y)
    want = ravel_pytree(fb.kfac_inverse_vp(f, unflatten(-lin.g / 9), mu / 9))[0]
    np.testing.assert_allclose(delta, want, rtol=1e-12)
    dense = S.linearize_dense(pb, theta)  # the exact G and g
    np.testing.assert_allclose(lin.g, dense.g, rtol=1e-12)
    exact = -(dense.g @ delta + 0.5 * delta @ dense.G @ delta)
    np.testing.assert_allclose(predicted, exact, rtol=1e-12)


def test_levenberg_marquardt_with_the_kfac_solve_fits_and_never_raises_the_loss():
    net, p, x, y = _sine(40)
    r = fb.levenberg_marquardt(net, p, x, y, solver=fb.optim.KFAC(), max_steps=60)
    loss = np.asarray(r.history.loss[: int(r.iterations) + 1])
    assert np.all(np.diff(loss) <= 0) and loss[-1] < 0.1 * loss[0]


@dataclasses.dataclass(frozen=True)
class DiagonalSolve:
    """A solve part of one's own: the Levenberg-Marquardt step with G replaced by its diagonal."""

    def linearize(self, pb, theta):
        return S.linearize_dense(pb, theta)  # G, g and d

    def solve(self, pb, lin, mu):
        delta = -lin.g / (jnp.diag(lin.G) + mu * lin.d)
        return delta, -(lin.g @ delta + 0.5 * delta @ lin.G @ delta)


def test_a_users_solve_part_plugs_in():
    net, p, x, y = _sine(40)
    r = fb.levenberg_marquardt(net, p, x, y, solver=DiagonalSolve(), max_steps=40)
    loss = np.asarray(r.history.loss[: int(r.iterations) + 1])
    assert np.all(np.diff(loss) <= 0) and loss[-1] < 0.5 * loss[0]
    first = int(np.argmax(np.asarray(r.history.accepted[1:]) == 1)) + 1  # its step is not the dense one
    dense = fb.levenberg_marquardt(net, p, x, y, max_steps=first)
    assert float(dense.history.loss[first]) != float(r.history.loss[first])


def test_a_truncated_cg_step_is_a_descent_step_whose_model_falls_as_the_tolerance_tightens():
    """Every CG iterate from zero lowers ``m(delta) = g.delta + delta.(G + mu I).delta / 2`` (CG
    minimises it over growing Krylov spaces), so a loose tolerance (an inexact Newton step; Dembo,
    Eisenstat & Steihaug 1982) still gives ``g.delta < 0`` and a positive predicted decrease."""
    net, p, x, y = _sine()
    theta, unflatten = ravel_pytree(p)
    pb = S.Problem(net, fb.losses.get("squared_error"), x, y, unflatten, False, 30, 0.0, 1)
    mu, dense = 1e-3, S.linearize_dense(pb, theta)
    model = lambda d: dense.g @ d + 0.5 * d @ (dense.G + mu * jnp.eye(theta.size)) @ d
    values = []
    for tol in (0.5, 1e-1, 1e-3, 1e-12):
        part = fb.optim.CG(tol=tol, maxiter=200)
        delta, predicted = part.solve(pb, part.linearize(pb, theta), mu)
        assert dense.g @ delta < 0 and predicted > 0 and predicted >= -model(delta) * (1 - 1e-12), tol
        values.append(float(model(delta)))
    assert all(b <= a * (1 - 1e-12) for a, b in zip(values, values[1:])) and values[-1] < values[0], values
    want = S.solve_normal(dense, mu)[0]  # tol 1e-12: the exact step's model value
    np.testing.assert_allclose(values[-1], model(want), rtol=1e-8)
