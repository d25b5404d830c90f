"""Every loss's hand-written gradient, Hessian and Hessian-vector product against autodiff, float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fbackprop import losses as L
from problems import LOSS_NAMES, targets


def batch(loss_name, n=7, k=4, seed=0, scale=3.0):
    kz, ky, kv = jax.random.split(jax.random.key(seed), 3)
    loss = L.get(loss_name)
    yhat = scale * jax.random.normal(kz, (n, k))
    y = loss.prepare(targets(ky, loss_name, n, k), k)
    return loss, yhat, y, jax.random.normal(kv, (n, k))


def per_example(loss, fn):
    """Apply ``fn`` to the single-example loss ``l(yhat_n, y_n)`` row by row."""
    single = lambda yh, yy: loss.value(yh[None], yy[None])[0]
    return jax.vmap(fn(single), in_axes=(0, 0))


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_gradient_matches_autodiff(name):
    loss, yhat, y, _ = batch(name)
    np.testing.assert_allclose(loss.grad(yhat, y), per_example(loss, jax.grad)(yhat, y), rtol=1e-10, atol=1e-14)
    # the batch-mean convention: dC/dyhat = grad / N
    np.testing.assert_allclose(jax.grad(loss)(yhat, y), loss.grad(yhat, y) / yhat.shape[0], rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_hessian_and_hvp_match_autodiff(name):
    loss, yhat, y, v = batch(name)
    H = per_example(loss, jax.hessian)(yhat, y)
    np.testing.assert_allclose(loss.hessian(yhat, y), H, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(loss.hvp(yhat, y, v), jnp.einsum("nij,nj->ni", H, v), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_gradient_matches_finite_differences(name):
    loss, yhat, y, v = batch(name, scale=1.0)
    h = 1e-6
    fd = (loss.value(yhat + h * v, y) - loss.value(yhat - h * v, y)) / (2 * h)
    np.testing.assert_allclose(jnp.sum(loss.grad(yhat, y) * v, axis=-1), fd, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("scale", [1e2, 1e4])
def test_stable_for_huge_logits(name, scale):
    loss, yhat, y, v = batch(name, scale=scale)
    for out in (loss.value(yhat, y), loss.grad(yhat, y), loss.hessian(yhat, y), loss.hvp(yhat, y, v)):
        assert bool(jnp.all(jnp.isfinite(out)))


def test_values():
    z = jnp.array([[0.0, 0.0]])
    np.testing.assert_allclose(L.cross_entropy(z, L.cross_entropy.prepare(jnp.array([1]), 2)), np.log(2.0))
    np.testing.assert_allclose(L.binary_cross_entropy(jnp.array([[0.0]]), jnp.array([[1.0]])), np.log(2.0))
    np.testing.assert_allclose(L.squared_error(jnp.array([[3.0], [1.0]]), jnp.array([[1.0], [1.0]])), 1.0)  # (4/2 + 0)/2


def test_integer_labels_equal_one_hot():
    loss, yhat, _, _ = batch("cross_entropy")
    labels = jnp.array([0, 3, 1, 2, 2, 0, 1])
    one_hot = jax.nn.one_hot(labels, 4)
    assert L.cross_entropy(yhat, L.cross_entropy.prepare(labels, 4)) == L.cross_entropy(yhat, one_hot)


def test_label_errors():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\).*from 0 to 4"):
        L.cross_entropy.prepare(jnp.array([0, 4]), 4)
    with pytest.raises(TypeError, match="must be integers"):
        L.cross_entropy.prepare(jnp.array([0.0, 1.0]), 4)
    with pytest.raises(ValueError, match=r"y has shape \(5, 3\).*\(N, 2\)"):
        L.squared_error.prepare(jnp.zeros((5, 3)), 2)


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown loss 'mse'.*'squared_error'"):
        L.get("mse")
