"""The references accept any apply(params, x) callable, not only a Network."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fbackprop as fb


def rbf_apply(params, x):
    """A model fbackprop knows nothing about: radial basis features and a linear read-out."""
    d2 = jnp.sum((x[:, None, :] - params["centres"][None]) ** 2, axis=-1)
    return jnp.exp(-d2 / params["width"] ** 2) @ params["out"]


def rbf_problem():
    k = jax.random.split(jax.random.key(3), 4)
    params = {
        "centres": jax.random.normal(k[0], (5, 2)),
        "width": jnp.array(1.3),
        "out": jax.random.normal(k[1], (5, 3)),
    }
    return params, jax.random.normal(k[2], (11, 2)), jax.random.randint(k[3], (11,), 0, 3)


@pytest.mark.parametrize("method", [fb.forward_mode, fb.numerical_grad])
def test_references_agree_on_any_callable(method):
    params, x, y = rbf_problem()
    reverse = fb.autodiff(rbf_apply, "cross_entropy")(params, x, y)
    tol = 1e-6 if method is fb.numerical_grad else 1e-10
    assert fb.compare(method(rbf_apply, "cross_entropy")(params, x, y), reverse).max_rel <= tol


def test_callable_targets_are_checked():
    params, x, _ = rbf_problem()
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        fb.autodiff(rbf_apply, "cross_entropy")(params, x, jnp.full((11,), 3))
    with pytest.raises(ValueError, match="y has shape"):
        fb.autodiff(rbf_apply, "squared_error")(params, x, jnp.zeros((11, 2)))


def test_network_apply_callable_equals_network():
    net = fb.mlp([2, 4, 3], activation="gelu")
    params = net.init(jax.random.key(0))
    _, x, y = rbf_problem()
    a = fb.autodiff(net, "cross_entropy")(params, x, y)
    b = fb.autodiff(net.apply, "cross_entropy")(params, x, y)
    assert fb.compare(a, b).max_rel == 0.0


def test_forward_mode_chunking_does_not_change_the_result():
    net = fb.mlp([4, 6, 2], activation="tanh")
    params = net.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (9, 4))
    y = jax.random.normal(jax.random.key(2), (9, 2))
    whole = fb.forward_mode(net, "squared_error", chunk_size=10_000)(params, x, y)
    chunked = fb.forward_mode(net, "squared_error", chunk_size=7)(
        params, x, y
    )  # P = 44: 6 chunks + remainder
    assert fb.compare(chunked, whole).max_rel <= 1e-14


def test_default_finite_difference_step():
    from fbackprop.autodiff import default_eps

    assert default_eps(jnp.float64) == 1e-6
    np.testing.assert_allclose(
        default_eps(jnp.float32), float(np.finfo(np.float32).eps) ** (1 / 3), rtol=1e-12
    )


FACTORIES = {
    "autodiff": fb.autodiff,
    "value_and_autodiff": fb.value_and_autodiff,
    "forward_mode": fb.forward_mode,
    "numerical_grad": fb.numerical_grad,
}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_inline_calls_compile_once(name, compiles):
    """``fb.autodiff(model, loss)(params, x, y)`` inline in a loop: one program per shape, for a
    Network and for an apply callable (the same function object each time)."""
    factory = FACTORIES[name]
    params, x, labels = rbf_problem()
    y = jax.nn.one_hot(labels, 3, dtype=x.dtype)
    xs, x5, y5 = jax.block_until_ready(([x + step for step in range(5)], x[:5], y[:5]))
    start = compiles()
    for step in range(5):
        out = factory(rbf_apply, "squared_error")(params, xs[step], y)
    jax.block_until_ready(out)
    assert compiles() - start == 1
    factory(rbf_apply, "squared_error")(params, x5, y5)
    assert compiles() - start == 2


def test_options_are_part_of_the_cache_key():
    assert fb.numerical_grad(rbf_apply, "cross_entropy", eps=1e-5) is fb.numerical_grad(
        rbf_apply, "cross_entropy", eps=1e-5
    )
    assert fb.numerical_grad(rbf_apply, "cross_entropy", eps=1e-5) is not fb.numerical_grad(
        rbf_apply, "cross_entropy", eps=1e-4
    )
    assert fb.forward_mode(rbf_apply, "cross_entropy", chunk_size=np.int64(7)) is fb.forward_mode(
        rbf_apply, "cross_entropy", chunk_size=np.int64(7)
    )


def test_numerical_grad_step_changes_the_error_as_central_differences_do():
    """Central differences: error O(h^2) until rounding dominates; a step of 1e-3 is worse than 1e-5."""
    params, x, y = rbf_problem()
    exact = fb.autodiff(rbf_apply, "cross_entropy")(params, x, y)
    coarse = fb.compare(fb.numerical_grad(rbf_apply, "cross_entropy", eps=1e-2)(params, x, y), exact).max_rel
    fine = fb.compare(fb.numerical_grad(rbf_apply, "cross_entropy", eps=1e-4)(params, x, y), exact).max_rel
    assert fine < 1e-2 * coarse  # h 100x smaller: error ~1e4 smaller, with a wide margin
