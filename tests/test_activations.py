"""Every activation's hand-written f' and f'' against jax.grad of its f, float64, |z| 1e-8 ... 1e4."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fbackprop import activations as A

MAGNITUDES = np.array(
    [1e-8, 1e-6, 1e-4, 1e-2, 0.1, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 50.0, 100.0, 1e3, 1e4]
)
GRID = np.concatenate([-MAGNITUDES[::-1], [0.0], MAGNITUDES])


def grid(name):
    return jnp.asarray(GRID[~np.isin(GRID, A.KINKS.get(name, ()))])


@pytest.mark.parametrize("name", sorted(A.ACTIVATIONS))
def test_first_and_second_derivative_match_autodiff(name):
    act = A.ACTIVATIONS[name]
    z = grid(name)
    d1 = jax.vmap(jax.grad(act.f))(z)
    d2 = jax.vmap(jax.grad(jax.grad(act.f)))(z)
    # rtol 1e-10; the absolute floor covers values that are zero up to rounding (far tails),
    # where autodiff's own formula (e.g. s(1 - s)) cancels and ours does not.
    np.testing.assert_allclose(act.df(z), d1, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(act.d2f(z), d2, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name", sorted(A.ACTIVATIONS))
def test_derivatives_match_finite_differences(name):
    act = A.ACTIVATIONS[name]
    z = jnp.linspace(-4.0, 4.0, 41) + 0.0123  # off the kinks
    h = 1e-5
    np.testing.assert_allclose(act.df(z), (act.f(z + h) - act.f(z - h)) / (2 * h), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(act.d2f(z), (act.df(z + h) - act.df(z - h)) / (2 * h), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("name", sorted(A.ACTIVATIONS))
def test_finite_at_extremes(name, dtype):
    z = jnp.asarray([-1e4, -1e3, -100.0, -40.0, 40.0, 100.0, 1e3, 1e4], dtype)
    act = A.ACTIVATIONS[name]
    for fn in (act.f, act.df, act.d2f):
        out = fn(z)
        assert out.dtype == dtype
        assert bool(jnp.all(jnp.isfinite(out))), (name, fn, out)


def test_known_values():
    z = jnp.asarray([0.0, 1.0, -1.0])
    np.testing.assert_allclose(A.sigmoid.df(z)[0], 0.25)
    np.testing.assert_allclose(A.tanh.df(z)[0], 1.0)
    np.testing.assert_allclose(A.gelu.f(z)[1], 0.8413447460685429)
    np.testing.assert_allclose(A.leaky_relu.f(z)[2], -0.01)
    np.testing.assert_allclose(A.elu.f(z)[2], np.expm1(-1.0))


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown activation 'sigmod'.*'sigmoid'"):
        A.get("sigmod")


def test_elu_autodiff_at_zero_equals_the_hand_written_derivatives():
    """At z = 0 both one-sided first derivatives of elu are 1 and f'' takes the left side, e^0 = 1: the
    values' autodiff agrees (a dead relu feeding a zero bias puts z exactly there)."""
    f, z = A.elu.f, jnp.zeros(3)
    assert jnp.allclose(jax.vmap(jax.grad(f))(z), A.elu.df(z))
    assert jnp.allclose(jax.vmap(jax.grad(jax.grad(f)))(z), A.elu.d2f(z))
