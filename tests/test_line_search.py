"""The line-search part against closed forms."""

import jax.numpy as jnp
import pytest

import fbackprop as fb


@pytest.mark.parametrize("factor", [0.5, 0.8])
def test_backtracking_returns_the_first_step_that_satisfies_armijo(factor):
    phi = lambda a: (a - 0.1) ** 2  # phi(0) = 0.01, slope -0.2
    alpha, value, ok = fb.optim.Backtracking(factor=factor, armijo=1e-4).search(phi, 0.01, -0.2, phi(1.0))
    holds = lambda a: phi(a) <= 0.01 - 1e-4 * a * 0.2
    j = next(j for j in range(60) if holds(factor**j))  # the first power that passes
    assert float(alpha) == pytest.approx(factor**j) and float(value) == pytest.approx(phi(factor**j))
    assert bool(ok)


def test_backtracking_fails_on_an_ascent_direction_and_on_nan():
    ls = fb.optim.Backtracking(max_steps=10)
    _, _, ok = ls.search(lambda a: 1.0 + a, 1.0, 1.0, 2.0)
    assert not bool(ok)
    _, _, ok = ls.search(lambda a: jnp.nan * a, 1.0, -1.0, jnp.nan)
    assert not bool(ok)
