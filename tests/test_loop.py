"""The one loop: its stopping record, and a run continued from its returned damping."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fbackprop as fb
from fbackprop.optim.loop import Stop
from fbackprop.status import Status


def test_the_stopping_record_tests_in_order():
    stop = Stop(goal=0.1, min_grad=1e-3, max_steps=10, mu_max=1e3, max_fail=2)
    s = lambda **kw: int(stop.status(**{"k": 3, "C": 1.0, "grad_norm": 1.0, "mu": 1.0, "fails": 0, **kw}))
    assert s() == Status.RUNNING
    assert s(C=0.05, grad_norm=0.0) == Status.GOAL  # the goal comes first
    assert s(grad_norm=1e-4, mu=1e4) == Status.MIN_GRAD
    assert s(mu=1e4, fails=2) == Status.MU_MAX
    assert s(fails=2, k=10) == Status.MAX_FAIL
    assert s(k=10) == Status.MAX_STEPS


@pytest.mark.parametrize("damping", ["marquardt", "trust_region"])
def test_a_run_continued_from_its_mu_equals_one_run(damping):
    net = fb.mlp([1, 6, 1], activation="tanh")
    x, y = fb.data.sine(40, dtype=np.float64)
    p = net.init(jax.random.key(0), jnp.float64)
    first = fb.levenberg_marquardt(net, p, x, y, damping=damping, max_steps=10)
    more = fb.levenberg_marquardt(net, first.params, x, y, damping=damping, mu=float(first.mu), max_steps=10)
    whole = fb.levenberg_marquardt(net, p, x, y, damping=damping, max_steps=20)
    np.testing.assert_allclose(more.history.loss[1:], whole.history.loss[11:], rtol=1e-10)
    np.testing.assert_allclose(more.history.mu[1:], whole.history.mu[11:], rtol=1e-12)
    assert float(more.mu) == pytest.approx(float(whole.mu), rel=1e-12)


def test_hessian_free_returns_its_lambda_and_gauss_newton_none():
    net = fb.mlp([1, 4, 1], activation="tanh")
    x, y = fb.data.sine(20, dtype=np.float64)
    p = net.init(jax.random.key(0), jnp.float64)
    hf = fb.hessian_free(net, p, x, y, max_steps=4, cg_iters=5)
    assert float(hf.mu) == float(hf.history.mu[int(hf.iterations)])
    assert np.isnan(float(fb.gauss_newton(net, p, x, y, max_steps=2).mu))
