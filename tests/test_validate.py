"""Bad input gets a clear ValueError/TypeError naming what was expected and what came."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fbackprop as fb

NET = fb.mlp([3, 4, 2], activation="tanh")
PARAMS = NET.init(jax.random.key(0))
X = jnp.ones((5, 3))
Y = jnp.zeros((5, 2))
GRADIENTS = [
    fb.backprop,
    fb.value_and_backprop,
    fb.per_example_grads,
    fb.backprop_trace,
    fb.autodiff,
    fb.forward_mode,
    fb.numerical_grad,
]


@pytest.mark.parametrize("gradient", GRADIENTS)
def test_x_with_wrong_number_of_features(gradient):
    with pytest.raises(ValueError, match=r"x has 4 features but the network expects 3.*\(N, 3\).*\(5, 4\)"):
        gradient(NET, "squared_error")(PARAMS, jnp.ones((5, 4)), Y)


@pytest.mark.parametrize("gradient", GRADIENTS)
def test_y_shape_does_not_match_output(gradient):
    with pytest.raises(ValueError, match=r"y has shape \(5, 3\) but the network output is \(N, 2\)"):
        gradient(NET, "squared_error")(PARAMS, X, jnp.zeros((5, 3)))
    with pytest.raises(ValueError, match="y has 4 rows but x has 5"):
        gradient(NET, "squared_error")(PARAMS, X, jnp.zeros((4, 2)))


def test_labels_out_of_range():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\).*got labels from -1 to 1"):
        fb.backprop(NET, "cross_entropy")(PARAMS, X, jnp.array([0, 1, 1, -1, 0]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\).*from 0 to 2"):
        fb.autodiff(NET, "cross_entropy")(PARAMS, X, np.array([0, 1, 2, 1, 0]))


@pytest.mark.parametrize("gradient", GRADIENTS)
def test_params_from_another_network(gradient):
    other = fb.mlp([3, 5, 2]).init(jax.random.key(0))
    with pytest.raises(
        ValueError,
        match=r"params\[0\]\['W'\] has shape \(5, 3\) but a network of sizes \[3, 4, 2\] needs \(4, 3\)",
    ):
        gradient(NET, "squared_error")(other, X, Y)


def test_params_with_wrong_tree():
    deeper = fb.mlp([3, 4, 4, 2]).init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"tuple of 2 dicts.*got a tuple of length 3"):
        NET.apply(deeper, X)
    with pytest.raises(
        ValueError, match=r"params\[1\] must be a dict with keys \['W', 'b'\]; got \['W', 'bias'\]"
    ):
        NET.apply((PARAMS[0], {"W": PARAMS[1]["W"], "bias": PARAMS[1]["b"]}), X)
    with pytest.raises(ValueError, match="got a dict"):
        fb.backprop(NET, "squared_error")(PARAMS[0], X, Y)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(
        ValueError, match=r"unknown activation 'sigmoidal'; expected one of \[.*'sigmoid'.*\]"
    ):
        fb.mlp([2, 2], activation="sigmoidal")
    with pytest.raises(ValueError, match=r"unknown activation 'softmax'.*'identity'"):
        fb.mlp([2, 2], output="softmax")
    with pytest.raises(
        ValueError,
        match=r"unknown loss 'mse'; expected one of "
        r"\['binary_cross_entropy', 'cross_entropy', 'squared_error'\]",
    ):
        fb.backprop(NET, "mse")
    with pytest.raises(ValueError, match=r"unknown init 'xavier'.*'glorot'"):
        fb.mlp([2, 2], init="xavier")


@pytest.mark.parametrize(
    "sizes, error",
    [
        ([], ValueError),
        ([3], ValueError),
        ([3, 0, 1], ValueError),
        ([3, -2, 1], ValueError),
        ([3, 2.5, 1], TypeError),
    ],
)
def test_bad_sizes(sizes, error):
    with pytest.raises(error, match="sizes"):
        fb.mlp(sizes)


def test_activation_list_of_wrong_length():
    with pytest.raises(ValueError, match="activation lists 1 names but sizes .* has 2 hidden layers"):
        fb.mlp([2, 3, 3, 1], activation=["tanh"])


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.complex64, jnp.bool_])
@pytest.mark.parametrize("gradient", [fb.backprop, fb.autodiff])
def test_integer_or_complex_x(gradient, dtype):
    with pytest.raises(
        TypeError, match=f"x must be a real floating-point array.*got dtype {jnp.dtype(dtype).name}"
    ):
        gradient(NET, "squared_error")(PARAMS, X.astype(dtype), Y)


@pytest.mark.parametrize("gradient", [fb.backprop, fb.autodiff, fb.per_example_grads])
def test_empty_batch(gradient):
    with pytest.raises(ValueError, match=r"x is an empty batch: shape \(0, 3\)"):
        gradient(NET, "squared_error")(PARAMS, jnp.ones((0, 3)), jnp.ones((0, 2)))


def test_x_not_a_matrix():
    with pytest.raises(ValueError, match=r"x must have shape \(N, 3\).*got shape \(3,\).*x\[None, :\]"):
        NET.apply(PARAMS, jnp.ones(3))


def test_hand_written_needs_a_network():
    with pytest.raises(
        TypeError,
        match="backprop is hand-written.*needs an fbackprop Network.*got <function.*use fb.autodiff",
    ):
        fb.backprop(lambda p, x: x, "squared_error")


def test_checks_hold_under_an_outer_jit():
    with pytest.raises(ValueError, match="x has 4 features"):
        jax.jit(fb.backprop(NET, "squared_error"))(PARAMS, jnp.ones((5, 4)), Y)
