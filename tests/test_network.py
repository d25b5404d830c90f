"""fb.serial and Network: shapes from eval_shape, the boundary checks, and every quantity on nested nets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from architectures import assert_twins_agree, problem

import fbackprop as fb
from fbackprop import layers as L

LOSSES = ["squared_error", "cross_entropy", "binary_cross_entropy"]


def test_mlp_is_a_serial_of_dense_and_activation_layers():
    net = fb.mlp([3, 4, 2], activation="tanh")
    same = fb.serial(L.Dense(4), L.Activation("tanh"), L.Dense(2), L.Activation("identity"), input_shape=(3,))
    assert net == same and hash(net) == hash(same)
    key = jax.random.key(0)
    for p, q in zip(net.init(key), same.init(key)):
        np.testing.assert_array_equal(p["W"], q["W"])


def test_shapes_come_from_eval_shape_without_computing(compiles):
    net = fb.serial(
        L.Dense(4),
        L.Activation("relu"),
        L.Residual(L.Dense(4), L.Activation("tanh")),
        L.Dense(2),
        input_shape=(3,),
    )
    assert net.output_shape == (2,) and net.n_params == 16 + 20 + 10
    assert [type(s).__name__ for s in jax.tree.leaves(net.param_shapes)] == ["ShapeDtypeStruct"] * 6
    assert net.layer_names() == ("layer 1 Dense", ("layer 3 Residual > 1 Dense",), "layer 4 Dense")
    assert compiles() == 0


NESTED = {
    "residual": (
        L.Dense(4),
        L.Activation("tanh"),
        L.Residual(L.Dense(4), L.Activation("sigmoid")),
        L.Dense(3),
    ),
    "nested": (
        L.Dense(3),
        L.Activation("softplus"),
        L.Residual(L.Serial(L.Dense(3), L.Activation("tanh")), L.Residual(L.Dense(3), L.Activation("elu"))),
        L.Activation("gelu"),
        L.Dense(3),
    ),
    "parameterless residual": (L.Dense(3), L.Residual(L.Activation("tanh")), L.Dense(2)),
    "residual first": (L.Residual(L.Dense(2), L.Activation("swish")), L.Dense(2)),
}


@pytest.mark.parametrize(("name", "loss"), list(zip(NESTED, LOSSES + ["squared_error"])))
def test_every_quantity_matches_autodiff_on_nested_networks(name, loss):
    net = fb.serial(*NESTED[name], input_shape=(2,))
    params, x, y = problem(net, n=4, loss=loss)
    assert_twins_agree(net, params, x, y, loss)


def test_image_inputs_are_checked_against_the_input_shape():
    net = fb.serial(L.Activation("tanh"), L.Residual(L.Activation("tanh")), L.Dense(2), input_shape=(3,))
    params = net.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"x has 4 features but the network expects 3"):
        net.apply(params, jnp.ones((2, 4)))


def test_params_of_a_nested_layer_are_named_by_position_and_kind():
    net = fb.serial(*NESTED["residual"], input_shape=(2,))
    params = list(net.init(jax.random.key(0)))
    params[1] = ({"W": jnp.ones((4, 3)), "b": jnp.ones(4)},)
    with pytest.raises(
        ValueError,
        match=r"params\[1\]\[0\]\['W'\] has shape \(4, 3\) but layer 3 Residual > 1 Dense "
        r"needs \(4, 4\)",
    ):
        net.apply(tuple(params), jnp.ones((2, 2)))
    params[1] = {"W": jnp.ones((4, 4)), "b": jnp.ones(4)}
    with pytest.raises(ValueError, match=r"params\[1\] must be a tuple of 1 entries .*got a dict"):
        net.apply(tuple(params), jnp.ones((2, 2)))


def test_construction_errors_name_the_layer():
    with pytest.raises(
        ValueError,
        match=r"layer 2 Residual: Residual's block must keep the shape of its input, "
        r"\(4,\).*give \(3,\)",
    ):
        fb.serial(L.Dense(4), L.Residual(L.Dense(3)), input_shape=(2,))
    with pytest.raises(ValueError, match=r"layer 1 Dense: Dense takes one flat vector per example.*Flatten"):
        fb.serial(L.Dense(4), input_shape=(2, 2))
    with pytest.raises(TypeError, match=r"layer 2 \('tanh'\) is not an fbackprop layer"):
        fb.serial(L.Dense(4), "tanh", input_shape=(2,))
    with pytest.raises(ValueError, match=r"input_shape\[0\] must be an integer from 1"):
        fb.serial(L.Dense(4), input_shape=(0,))
    with pytest.raises(ValueError, match=r"Residual needs at least one layer"):
        L.Residual()


def test_compare_names_leaves_by_layer_position_and_kind():
    net = fb.serial(*NESTED["residual"], input_shape=(2,))
    params, x, y = problem(net)
    g = fb.backprop(net, "squared_error")(params, x, y)
    names = [leaf.name for leaf in fb.compare(g, g, net=net).leaves]
    assert names[:4] == [
        "layer 1 Dense W",
        "layer 1 Dense b",
        "layer 3 Residual > 1 Dense W",
        "layer 3 Residual > 1 Dense b",
    ]
    with pytest.raises(TypeError, match="compare: net must be an fbackprop Network"):
        fb.compare(g, g, net="mlp")


class _Scale:
    """A user's layer y = s * x with s: (d,), passes only (no curvature readouts)."""

    has_params = True

    def init(self, key, in_shape, dtype):
        return {"s": jnp.ones(in_shape[-1:], dtype)}, in_shape

    def forward(self, theta, x):
        return theta["s"] * x, x

    def backward(self, theta, x, g):
        return theta["s"] * g, {"s": jnp.sum(g * x, axis=0)}

    def per_example_grads(self, theta, x, g):
        return {"s": g * x}


def test_a_quantity_needing_a_missing_readout_names_the_layer_and_the_method():
    net = fb.serial(L.Dense(3), _Scale(), L.Dense(2), input_shape=(2,))
    params, x, y = problem(net)
    got = fb.backprop(net, "squared_error")(params, x, y)
    assert fb.compare(got, fb.autodiff(net.apply, "squared_error")(params, x, y)).ok()
    with pytest.raises(
        TypeError,
        match=r"fb.hessian_diag needs backward2 on every layer; layer 2 _Scale has none: "
        r"add _Scale.backward2\(theta, cache, H, g, exact\) -> A",
    ):
        fb.hessian_diag(net, "squared_error")
    with pytest.raises(TypeError, match=r"needs forward_r on every layer; layer 2 _Scale has none"):
        fb.hvp(net, "squared_error", method="backprop")
