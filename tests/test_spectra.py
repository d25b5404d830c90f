"""Lanczos, power iteration and Hutchinson against the dense eigendecomposition, float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from problems import make_problem

import fbackprop as fb


@pytest.fixture(scope="module", params=["tanh", "relu"])
def case(request):
    """A tiny net's Hessian product and its dense Hessian (relu: many repeated eigenvalues)."""
    pb = make_problem([3, 4, 4, 2], [request.param] * 2, "squared_error", n=9, seed=1)
    hvp = fb.hvp(pb.net, pb.loss)
    H = np.asarray(fb.hessian(pb.net, pb.loss)(pb.params, pb.x, pb.y))
    return (lambda v: hvp(pb.params, pb.x, pb.y, v)), pb.params, H


def test_lanczos_run_to_p_steps_recovers_the_whole_spectrum(case):
    matvec, params, H = case
    theta, V = fb.lanczos(matvec, params, jax.random.key(3), num_iter=H.shape[0]).ritz()
    np.testing.assert_allclose(np.sort(theta), np.linalg.eigvalsh(H), atol=1e-10)
    np.testing.assert_allclose(V @ V.T, np.eye(H.shape[0]), atol=1e-10)


@pytest.mark.parametrize("which", ["top", "bottom"])
def test_extreme_eigenpairs_from_fewer_steps(case, which):
    matvec, params, H = case
    ev = np.linalg.eigvalsh(H)
    values, vectors = fb.eigenvalues(matvec, params, jax.random.key(0), k=3, which=which, num_iter=30)
    np.testing.assert_allclose(values, ev[::-1][:3] if which == "top" else ev[:3], atol=1e-8)
    u = jax.vmap(lambda v: fb.flatten(v)[0])(vectors)
    np.testing.assert_allclose(u @ H.T, values[:, None] * u, atol=1e-6)  # H u = lambda u


def test_power_iteration_finds_the_largest_magnitude(case):
    matvec, params, H = case
    ev = np.linalg.eigvalsh(H)
    lam, _ = fb.power_iteration(matvec, params, jax.random.key(0), num_iter=500)
    assert abs(float(lam) - ev[np.argmax(np.abs(ev))]) <= 1e-6 * np.abs(ev).max()


def test_hutchinson_trace_within_its_standard_error_and_converging(case):
    matvec, params, H = case
    errors = []
    for n in (100, 3000):
        est, se = fb.hutchinson_trace(matvec, params, jax.random.key(1), n_samples=n)
        assert abs(float(est) - np.trace(H)) <= 4 * float(se)
        errors.append(float(se))
    assert errors[1] < errors[0] / 4  # se ~ 1/sqrt(n)


def test_hutchinson_diag_at_3000_samples_within_10_percent_of_the_largest_entry(case):
    matvec, params, H = case
    d = fb.flatten(fb.hutchinson_diag(matvec, params, jax.random.key(2), n_samples=3000))[0]
    assert float(jnp.max(jnp.abs(d - np.diag(H)))) <= 0.10 * np.abs(np.diag(H)).max()


def test_bad_arguments_are_named(case):
    matvec, params, _ = case
    with pytest.raises(ValueError, match=r"which must be one of \['top', 'bottom'\]; got 'largest'"):
        fb.eigenvalues(matvec, params, jax.random.key(0), which="largest")
    with pytest.raises(ValueError, match="k must be an integer from 1 to 46; got 100"):
        fb.eigenvalues(matvec, params, jax.random.key(0), k=100)
