"""The hand-written backward pass against its references (float64 unless a test says otherwise)."""

import sys
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from problems import LOSS_NAMES, make_problem, problems

import fbackprop as fb
from fbackprop.train import full_batch

FEWER = max(4, settings().max_examples // 2)  # for the properties that compile P-fold programs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import seed_numpy  # noqa: E402


@given(problems())
def test_backprop_equals_autodiff(pb):
    net, params, x, y, loss = pb
    both = jax.jit(
        lambda p, x, y: (
            fb.backprop(net, loss)(p, x, y),
            fb.autodiff(net, loss)(p, x, y),
            fb.value_and_backprop(net, loss)(p, x, y),
            fb.value_and_autodiff(net, loss)(p, x, y),
        )
    )  # one compilation
    manual, reverse, (C, grads), (C_ad, _) = both(params, x, y)
    assert fb.compare(manual, reverse).max_rel <= 1e-10
    np.testing.assert_allclose(C, C_ad, rtol=1e-12)
    chex.assert_trees_all_close(grads, manual, rtol=1e-14, atol=0)


@settings(max_examples=FEWER)
@given(problems(max_depth=4))
def test_forward_mode_and_finite_differences_agree(pb):
    net, params, x, y, loss = pb
    reference = jax.jit(
        lambda p, x, y: (
            fb.backprop(net, loss)(p, x, y),
            fb.forward_mode(net, loss)(p, x, y),
            fb.numerical_grad(net, loss)(p, x, y),
        )
    )
    manual, forward, numerical = reference(params, x, y)
    assert fb.compare(forward, manual).max_rel <= 1e-10
    assert fb.compare(numerical, manual).max_rel <= 1e-6


@settings(max_examples=FEWER)
@given(problems(max_depth=3))
def test_per_example_grads_mean_is_backprop(pb):
    net, params, x, y, loss = pb
    per = fb.per_example_grads(net, loss)(params, x, y)
    chex.assert_trees_all_equal_shapes(
        per, jax.tree.map(lambda p: jnp.broadcast_to(p, (x.shape[0],) + p.shape), params)
    )
    mean = jax.tree.map(lambda g: g.mean(axis=0), per)
    assert fb.compare(mean, fb.backprop(net, loss)(params, x, y)).max_rel <= 1e-10
    # and row n is the gradient of l_n alone
    n = x.shape[0] - 1
    one = fb.autodiff(net, loss)(params, x[n : n + 1], y[n : n + 1])
    assert fb.compare(jax.tree.map(lambda g: g[n], per), one).max_rel <= 1e-10


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_jit_and_eager_agree(loss):
    net, params, x, y, _ = make_problem([3, 4, 2], ["softplus"], loss, n=5)
    compiled = fb.backprop(net, loss)(params, x, y)
    with jax.disable_jit():
        eager = fb.backprop(net, loss)(params, x, y)
    assert fb.compare(eager, compiled).max_rel <= 1e-12
    outer = jax.jit(fb.backprop(net, loss))(params, x, y)  # inside a user's jit: checks run at trace time
    assert fb.compare(outer, compiled).max_rel <= 1e-12


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_float32_within_documented_tolerance(loss):
    pb = make_problem([8, 16, 16, 4], ["tanh", "swish"], loss, n=64, dtype=jnp.float32)
    manual = fb.backprop(pb.net, loss)(pb.params, pb.x, pb.y)
    assert jax.tree.leaves(manual)[0].dtype == jnp.float32
    ref64 = fb.autodiff(pb.net, loss)(*jax.tree.map(lambda a: a.astype(jnp.float64), (pb.params, pb.x)), pb.y)
    report = fb.compare(manual, fb.autodiff(pb.net, loss)(pb.params, pb.x, pb.y))
    assert report.dtype == "float32" and report.ok() and report.max_rel <= fb.tolerance(jnp.float32)
    assert fb.compare(manual, ref64).max_rel <= fb.tolerance(jnp.float32)  # against the float64 truth too
    fd = fb.numerical_grad(pb.net, loss)(pb.params, pb.x, pb.y)
    assert fb.compare(fd, ref64).max_rel <= fb.tolerance(jnp.float32, finite_differences=True)


def test_trace_holds_every_quantity_of_the_pass():
    net, params, x, y, loss = make_problem([3, 5, 4, 2], ["sigmoid", "tanh"], "squared_error", n=6)
    t = fb.backprop_trace(net, loss)(params, x, y)
    assert [a.shape for a in t.a] == [(6, 3), (6, 5), (6, 4), (6, 2)]
    assert [d.shape for d in t.delta] == [(6, 5), (6, 4), (6, 2)]
    np.testing.assert_allclose(t.delta[-1], (t.a[-1] - y) / 6)  # delta^L, identity output
    W2 = params[1]["W"]
    np.testing.assert_allclose(t.delta[0], fb.activations.sigmoid.df(t.z[0]) * (t.delta[1] @ W2))  # (BP2)
    np.testing.assert_allclose(t.grads[1]["W"], t.delta[1].T @ t.a[1])  # (BP4)
    # delta^l is dC/dz^l: compare with autodiff through a perturbation of z^l
    dz = jax.grad(lambda e: _cost_from_z1(net, params, x, y, e))(jnp.zeros((6, 5)))
    np.testing.assert_allclose(t.delta[0], dz, rtol=1e-10, atol=1e-16)


def _cost_from_z1(net, params, x, y, e):
    """C as a function of a perturbation e added to z^1."""
    z1 = x @ params[0]["W"].T + params[0]["b"] + e
    a = z1
    for layer, theta in zip(net.layers[1:], [None, params[1], None, params[2], None]):
        a = layer.forward(theta, a)[0]  # a layer returns (output, cache)
    return fb.losses.squared_error(a, y)


def seed_example_run(gradient):
    net = fb.mlp([3, 3, 1], activation="sigmoid", output="identity", init="uniform")
    x, y = fb.data.seed_example(np.float64)
    params = fb.data.seed_example_params(np.float64)
    return net, x, y, full_batch(gradient(net, "squared_error"), optax.sgd(0.1), params, x, y, 10000)


def test_seed_example_reproduces():
    net, x, y, (params, losses) = seed_example_run(fb.value_and_backprop)
    assert np.abs(net.apply(params, x) - y).max() < 0.01  # outputs within 0.01 of 0 1 0 1 1 0
    _, hidden, output = seed_numpy.train(x, y, *seed_numpy.initial_weights())  # the tutorial's own NumPy code
    np.testing.assert_allclose(params[0]["W"], hidden[1:].T, rtol=1e-10)
    np.testing.assert_allclose(params[1]["b"], output[0], rtol=1e-10)
    _, _, _, (params_ad, losses_ad) = seed_example_run(fb.value_and_autodiff)  # same curve with autodiff
    np.testing.assert_allclose(losses, losses_ad, rtol=1e-10)
    assert losses[-1] < 1e-3 * losses[0]


FACTORIES = {
    "backprop": fb.backprop,
    "value_and_backprop": fb.value_and_backprop,
    "backprop_trace": fb.backprop_trace,
    "per_example_grads": fb.per_example_grads,
}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_inline_calls_compile_once(name, compiles):
    """The README's pattern, ``fb.backprop(net, loss)(params, x, y)`` inline in a loop: one program
    per shape (the factory is cached on its arguments; an equal network is the same key)."""
    factory = FACTORIES[name]
    params = fb.mlp([3, 5, 2], activation="tanh").init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (7, 3))
    y = jax.random.normal(jax.random.key(2), (7, 2))
    xs, x4, y4 = jax.block_until_ready(([x + step for step in range(5)], x[:4], y[:4]))
    start = compiles()
    for step in range(5):
        out = factory(fb.mlp([3, 5, 2], activation="tanh"), "squared_error")(params, xs[step], y)
    jax.block_until_ready(out)
    assert compiles() - start == 1
    factory(fb.mlp([3, 5, 2], activation="tanh"), "squared_error")(
        params, x4, y4
    )  # a new shape: a new program
    assert compiles() - start == 2


def test_backprop_equations_are_numbered_as_the_textbook():
    """BP1 output error, BP2 recursion, BP3 bias, BP4 weights (Rumelhart, Hinton & Williams 1986)."""
    net, params, x, y, loss = make_problem([3, 4, 2], ["tanh"], "squared_error", n=5)
    t = fb.backprop_trace(net, loss)(params, x, y)
    np.testing.assert_allclose(t.delta[-1], (t.a[-1] - y) / 5, rtol=1e-14)  # BP1
    np.testing.assert_allclose(
        t.delta[0], fb.activations.tanh.df(t.z[0]) * (t.delta[1] @ params[1]["W"]), rtol=1e-14
    )  # BP2
    np.testing.assert_allclose(t.grads[0]["b"], t.delta[0].sum(axis=0), rtol=1e-14)  # BP3
    np.testing.assert_allclose(t.grads[0]["W"], t.delta[0].T @ t.a[0], rtol=1e-14)  # BP4


def test_returned_functions_have_docstrings():
    net = fb.mlp([2, 3, 1])
    for factory in FACTORIES.values():
        doc = factory(net, "squared_error").__doc__
        assert "Args:" in doc and "Returns:" in doc and "params" in doc and "(N, n_in)" in doc


def test_finite_check_reads_values_in_the_same_program(compiles):
    """NaN in x: a ValueError naming x and the index, from the one compiled program (no extra compile)."""
    net, params, x, y, loss = make_problem([3, 4, 2], ["tanh"], "squared_error", n=5)
    grad = fb.backprop(net, loss)
    x_nan = jax.block_until_ready(x.at[1, 2].set(jnp.nan))
    jax.block_until_ready(grad(params, x, y))
    start = compiles()
    with pytest.raises(
        ValueError, match=r"^x holds 1 non-finite value \(the first, nan, at index \(1, 2\)\)"
    ):
        grad(params, x_nan, y)
    assert compiles() == start
    under_jit = jax.jit(grad)(params, x_nan, y)  # under jit: not checked, and NaN gives NaN
    assert not np.isfinite(np.asarray(under_jit[0]["W"])).all()
