"""LayerNorm's own properties (its passes against autodiff are in test_check_layer.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fbackprop.layers.norm import LayerNorm


def _x(key, shape, scale=3.0, shift=2.0):
    return shift + scale * jax.random.normal(key, shape, jnp.float64)


@pytest.mark.parametrize("eps", [1e-5, 0.5])
def test_at_init_each_position_has_mean_zero_and_variance_var_over_var_plus_eps(eps, key):
    layer = LayerNorm(eps)
    theta, out_shape = layer.init(key, (2, 3, 4), jnp.float64)
    x = _x(key, (3, 2, 3, 4))
    y, _ = layer.forward(theta, x)
    assert out_shape == (2, 3, 4) and y.shape == x.shape
    var = jnp.var(x, axis=-1)
    np.testing.assert_allclose(jnp.mean(y, axis=-1), 0.0, atol=1e-14)
    np.testing.assert_allclose(jnp.var(y, axis=-1), var / (var + eps), rtol=1e-12)


def test_an_image_is_normalised_per_position_over_its_channels(key):
    layer = LayerNorm()
    theta, _ = layer.init(key, (4,), jnp.float64)
    theta = {"gamma": jnp.arange(1.0, 5.0), "beta": jnp.arange(4.0)}
    x = _x(key, (2, 3, 5, 4))
    y_image, _ = layer.forward(theta, x)
    y_rows, _ = layer.forward(theta, x.reshape(-1, 4))
    np.testing.assert_allclose(y_image.reshape(-1, 4), y_rows, rtol=1e-14, atol=1e-14)


def test_the_input_gradient_sums_to_zero_over_the_normalised_axis(key):
    # y(x + c 1) = y(x): the gradient is orthogonal to 1 at every position
    layer = LayerNorm()
    k1, k2, k3 = jax.random.split(key, 3)
    theta = {"gamma": jax.random.normal(k1, (5,)), "beta": jnp.zeros(5)}
    x = _x(k2, (4, 3, 5))
    _, cache = layer.forward(theta, x)
    g_in, _ = layer.backward(theta, cache, jax.random.normal(k3, x.shape))
    np.testing.assert_allclose(jnp.sum(g_in, axis=-1), 0.0, atol=1e-13)


def test_the_second_derivative_term_is_the_closed_form(key):
    # S = sum_k u_k d2xhat_k/dx2 against jax.hessian of u . xhat(x), one position at a time
    layer = LayerNorm(eps=0.1)
    k1, k2, k3 = jax.random.split(key, 3)
    d = 4
    theta = {"gamma": jax.random.normal(k1, (d,)), "beta": jnp.zeros(d)}
    x = _x(k2, (3, 2, d))
    g = jax.random.normal(k3, x.shape)
    S = jax.jit(lambda x, g: layer._curvature_term(theta, layer.forward(theta, x)[1], g))(
        x, g
    )  # (N, p, d, d)

    def u_dot_xhat(xp, up):
        xhat = (xp - xp.mean()) / jnp.sqrt(xp.var() + 0.1)
        return jnp.dot(up, xhat)

    u = theta["gamma"] * g
    ref = jax.jit(jax.vmap(jax.vmap(jax.hessian(u_dot_xhat))))(x, u)
    np.testing.assert_allclose(S, ref, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(S, jnp.swapaxes(S, -1, -2), atol=1e-15)


def test_frozen_hashable_and_eps_as_float():
    assert LayerNorm() == LayerNorm(1e-5) and hash(LayerNorm(1)) == hash(LayerNorm(1.0))
    assert LayerNorm(1).eps == 1.0 and isinstance(LayerNorm(np.float32(0.5)).eps, float)
    assert repr(LayerNorm()) == "LayerNorm(eps=1e-05)"


@pytest.mark.parametrize(
    "eps, error",
    [(0.0, ValueError), (-1e-5, ValueError), (float("nan"), ValueError), (float("inf"), ValueError)]
    + [("1e-5", TypeError), (True, TypeError), (None, TypeError)],
)
def test_bad_eps(eps, error):
    with pytest.raises(error, match="LayerNorm eps"):
        LayerNorm(eps)


@pytest.mark.parametrize(
    "in_shape, match",
    [((), r"input shape \(\.\.\., d\); got \(\)"), ((3, 1), "at least 2 features on the last axis")],
)
def test_init_refuses_shapes_it_cannot_normalise(in_shape, match, key):
    with pytest.raises(ValueError, match=match):
        LayerNorm().init(key, in_shape, jnp.float64)
