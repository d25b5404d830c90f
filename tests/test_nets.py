"""Networks: the parameter layout (the package's convention), forward pass, initializers, composition."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fbackprop as fb


def test_params_layout_is_the_contract():
    net = fb.mlp([2, 3, 1], activation="sigmoid", output="identity")
    params = net.init(jax.random.key(0))
    assert isinstance(params, tuple) and len(params) == 2
    assert [set(p) for p in params] == [{"W", "b"}, {"W", "b"}]
    assert params[0]["W"].shape == (3, 2) and params[0]["b"].shape == (3,)  # (fan_out, fan_in)
    assert params[1]["W"].shape == (1, 3) and params[1]["b"].shape == (1,)
    assert net.sizes == (2, 3, 1) and net.n_params == 3 * 3 + 4
    assert params[0]["W"].dtype == jnp.float64  # the suite runs with x64 on


def test_apply_is_the_textbook_forward_pass():
    net = fb.mlp([2, 3, 2], activation="tanh", output="sigmoid")
    params = net.init(jax.random.key(1))
    x = jax.random.normal(jax.random.key(2), (4, 2))
    a1 = jnp.tanh(x @ params[0]["W"].T + params[0]["b"])
    expected = jax.nn.sigmoid(a1 @ params[1]["W"].T + params[1]["b"])
    np.testing.assert_allclose(net.apply(params, x), expected, rtol=1e-14)


def test_per_layer_activations_and_depth():
    net = fb.mlp([4, 8, 8, 8, 3], activation=["relu", "gelu", "elu"], output="identity")
    names = [l.activation.name for l in net.layers if isinstance(l, fb.layers.Activation)]
    assert names == ["relu", "gelu", "elu", "identity"]
    assert len(net.layers) == 8 and net.n_out == 3
    assert "sizes=[4, 8, 8, 8, 3]" in repr(net)


def test_single_layer_network():
    net = fb.mlp([3, 2])  # no hidden layer: a linear model
    params = net.init(jax.random.key(0))
    x = jnp.ones((2, 3))
    np.testing.assert_allclose(net.apply(params, x), x @ params[0]["W"].T + params[0]["b"])


@pytest.mark.parametrize(
    "init, check",
    [
        ("uniform", lambda W, b, fan_in, fan_out: W.min() >= -1 and W.max() <= 1 and abs(b).max() > 0),
        (
            "glorot",
            lambda W, b, fan_in, fan_out: abs(W).max() <= np.sqrt(6 / (fan_in + fan_out)) and not b.any(),
        ),
        ("he", lambda W, b, fan_in, fan_out: abs(W.std() / np.sqrt(2 / fan_in) - 1) < 0.05 and not b.any()),
        (
            "lecun",
            lambda W, b, fan_in, fan_out: abs(W.std() / np.sqrt(1 / fan_in) - 1) < 0.05 and not b.any(),
        ),
    ],
)
def test_initializers(init, check):
    params = fb.mlp([400, 300, 10], init=init).init(jax.random.key(0))
    W, b = np.asarray(params[0]["W"]), np.asarray(params[0]["b"])
    assert check(W, b, 400, 300)


def test_init_is_deterministic_and_dtype_selectable():
    net = fb.mlp([3, 5, 2])
    a, b = net.init(jax.random.key(7)), net.init(jax.random.key(7))
    assert all(np.array_equal(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    assert net.init(jax.random.key(7), jnp.float32)[0]["W"].dtype == jnp.float32
    assert not np.array_equal(net.init(jax.random.key(8))[0]["W"], a[0]["W"])


def test_seed_example_params_follow_the_tutorial_draw():
    import numpy.random as npr

    npr.seed(1)
    hidden = 2 * npr.random((4, 3)) - 1
    W, b = fb.data.seed_example_params(np.float64)[0].values()
    np.testing.assert_array_equal(W, hidden[1:].T)
    np.testing.assert_array_equal(b, hidden[0])


def test_sizes_accept_any_integer_type():
    """``fb.mlp([3, 8, labels.max() + 1])`` with NumPy or JAX labels: the same network as Python ints."""
    labels_np, labels_jax = np.array([0, 2, 1]), jnp.array([0, 2, 1])
    net = fb.mlp([3, np.int64(8), labels_np.max() + 1])
    assert net == fb.mlp([3, 8, 3]) == fb.mlp([jnp.int32(3), 8, labels_jax.max() + 1])
    assert all(type(s) is int for s in net.sizes) and hash(net) == hash(fb.mlp([3, 8, 3]))
    assert net.init(jax.random.key(0))[1]["W"].shape == (3, 8)
