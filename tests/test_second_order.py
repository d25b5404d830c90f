"""Hand-written curvature (R-operator, second-order backprop) against dense autodiff, float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from problems import LOSS_NAMES, make_problem, problems

import fbackprop as fb

FEWER = max(3, settings().max_examples // 4)  # each example compiles seven programs
TOL = 1e-10


def rel(a, b):
    """Max abs difference over max abs of the reference (both flattened pytrees or arrays)."""
    a, b = fb.flatten(a)[0], fb.flatten(b)[0]
    return float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(b)), 1e-300))


def tangent(params, seed=7):
    theta, unflatten = fb.flatten(params)
    return unflatten(jax.random.normal(jax.random.key(seed), theta.shape, theta.dtype))


def blocks_of(H, params):
    """The diagonal blocks of a dense (P, P) matrix, one per dense layer (flatten's order)."""
    out, start = [], 0
    for theta in params:
        k = theta["W"].size + theta["b"].size
        out.append(H[start : start + k, start : start + k])
        start += k
    return out


@settings(max_examples=FEWER)
@given(problems(max_depth=4, max_width=6, max_batch=8))
def test_second_order_backprop_equals_the_dense_hessian(pb):
    """hvp (R-operator), hessian_diag, hessian_blocks and ggn_diag vs jax.hessian / the dense GGN."""
    args = (pb.params, pb.x, pb.y)
    H = fb.hessian(pb.net, pb.loss)(*args)
    v = tangent(pb.params)
    Hv = fb.flatten(v)[1](H @ fb.flatten(v)[0])
    assert rel(fb.hvp(pb.net, pb.loss, method="backprop")(*args, v), Hv) <= TOL
    assert rel(fb.hvp(pb.net, pb.loss, method="autodiff")(*args, v), Hv) <= TOL
    scale = float(jnp.max(jnp.abs(H))) or 1.0
    diag = fb.flatten(fb.hessian_diag(pb.net, pb.loss)(*args))[0]
    assert float(jnp.max(jnp.abs(diag - jnp.diag(H)))) <= TOL * scale
    for block, ref in zip(fb.hessian_blocks(pb.net, pb.loss)(*args), blocks_of(H, pb.params)):
        assert float(jnp.max(jnp.abs(block - ref))) <= TOL * scale
    G = fb.ggn(pb.net, pb.loss)(*args)
    gdiag = fb.flatten(fb.ggn_diag(pb.net, pb.loss)(*args))[0]
    assert float(jnp.max(jnp.abs(gdiag - jnp.diag(G)))) <= TOL * (float(jnp.max(jnp.abs(G))) or 1.0)


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_hvp_by_backprop_against_finite_differences_of_the_gradient(loss):
    pb = make_problem([3, 5, 4, 3], ["tanh", "softplus"], loss, n=11, seed=3)
    v, eps = tangent(pb.params), 1e-5
    grad = fb.backprop(pb.net, loss)
    shifted = lambda s: grad(jax.tree.map(lambda p, d: p + s * eps * d, pb.params, v), pb.x, pb.y)
    fd = jax.tree.map(lambda a, b: (a - b) / (2 * eps), shifted(1), shifted(-1))
    assert rel(fb.hvp(pb.net, loss, method="backprop")(pb.params, pb.x, pb.y, v), fd) <= 1e-7


@pytest.mark.parametrize("exact", [True, False])
def test_chunks_and_per_example_pieces_sum_to_the_whole(exact):
    pb = make_problem([4, 6, 5, 3], ["gelu", "sigmoid"], "cross_entropy", n=13, seed=1)
    args = (pb.params, pb.x, pb.y)
    diag = fb.hessian_diag if exact else fb.ggn_diag
    whole = diag(pb.net, pb.loss)(*args)
    assert rel(diag(pb.net, pb.loss, chunk_size=4)(*args), whole) <= 1e-13  # 3 chunks and a remainder of 1
    per_example = diag(pb.net, pb.loss, per_example=True)(*args)
    assert jax.tree.leaves(per_example)[0].shape[0] == 13
    assert rel(jax.tree.map(lambda d: d.mean(0), per_example), whole) <= 1e-13  # C is the mean of the l_n
    blocks = fb.hessian_blocks(pb.net, pb.loss, exact=exact)
    for a, b in zip(blocks(*args), fb.hessian_blocks(pb.net, pb.loss, chunk_size=5, exact=exact)(*args)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-13 * float(jnp.max(jnp.abs(a))))


def test_ggn_blocks_are_the_ggn_and_differ_from_the_hessian():
    pb = make_problem([3, 6, 2], ["tanh"], "squared_error", n=9, seed=5)
    args = (pb.params, pb.x, pb.y)
    G, H = fb.ggn(pb.net, pb.loss)(*args), fb.hessian(pb.net, pb.loss)(*args)
    ggn_blocks = fb.hessian_blocks(pb.net, pb.loss, exact=False)(*args)
    for block, ref in zip(ggn_blocks, blocks_of(G, pb.params)):
        np.testing.assert_allclose(block, ref, rtol=0, atol=1e-12)
    assert float(jnp.max(jnp.abs(ggn_blocks[0] - blocks_of(H, pb.params)[0]))) > 1e-3  # the f'' term matters


def test_float32_matches_float64_within_its_precision():
    pb64 = make_problem([3, 5, 2], ["tanh"], "binary_cross_entropy", n=8, seed=2)
    p32 = jax.tree.map(lambda a: a.astype(jnp.float32), pb64.params)
    d64 = fb.hessian_diag(pb64.net, pb64.loss)(pb64.params, pb64.x, pb64.y)
    d32 = fb.hessian_diag(pb64.net, pb64.loss)(p32, pb64.x.astype(jnp.float32), pb64.y)
    assert jax.tree.leaves(d32)[0].dtype == jnp.float32
    assert rel(d32, d64) <= 1e-4


def test_hand_written_curvature_refuses_a_plain_callable():
    pb = make_problem([2, 3, 1], ["tanh"], "squared_error", n=4)
    for fn in (fb.hessian_diag, fb.ggn_diag, fb.hessian_blocks):
        with pytest.raises(TypeError, match="needs an fbackprop Network"):
            fn(pb.net.apply, "squared_error")
    with pytest.raises(TypeError, match="needs an fbackprop Network"):
        fb.hvp(pb.net.apply, "squared_error", method="backprop")


def test_a_tangent_of_the_wrong_shape_is_named():
    pb = make_problem([2, 3, 1], ["tanh"], "squared_error", n=4)
    v = tangent(pb.params)
    bad = (v[0], {"W": v[1]["W"].T, "b": v[1]["b"]})
    for method in ("backprop", "autodiff"):
        with pytest.raises(ValueError, match=r"v\[1\]\['W'\] has shape \(3, 1\)"):
            fb.hvp(pb.net, pb.loss, method=method)(pb.params, pb.x, pb.y, bad)
    with pytest.raises(ValueError, match="shaped like params"):
        fb.hvp(pb.net, pb.loss)(pb.params, pb.x, pb.y, v[:1])


# --- issue 11: inline calls compile once ------------------------------------------------------------
@pytest.mark.parametrize("name", ["hessian_diag", "ggn_diag", "hessian_blocks", "chunked"])
def test_inline_factory_calls_compile_once(name, compiles):
    pb = make_problem([2, 3, 2], ["tanh"], "cross_entropy", n=5, seed=12)
    factory = {
        "hessian_diag": lambda: fb.hessian_diag(pb.net, pb.loss),
        "ggn_diag": lambda: fb.ggn_diag(pb.net, pb.loss, per_example=True),
        "hessian_blocks": lambda: fb.hessian_blocks(pb.net, pb.loss, exact=False),
        "chunked": lambda: fb.hessian_diag(pb.net, pb.loss, chunk_size=np.int64(2)),
    }[name]
    first = factory()(pb.params, pb.x, pb.y)
    after_first = compiles()
    again = [factory()(pb.params, pb.x, pb.y) for _ in range(3)]
    assert compiles() == after_first and factory() is factory()
    assert all(rel(out, first) == 0.0 for out in again)


def test_chunk_size_accepts_numpy_and_jax_integers():
    pb = make_problem([2, 3, 2], ["tanh"], "squared_error", n=5, seed=12)
    whole = fb.hessian_diag(pb.net, pb.loss)(pb.params, pb.x, pb.y)
    for chunk in (np.int32(2), jnp.int64(3)):
        assert rel(fb.hessian_diag(pb.net, pb.loss, chunk_size=chunk)(pb.params, pb.x, pb.y), whole) <= 1e-13
        for a, b in zip(
            fb.hessian_blocks(pb.net, pb.loss, chunk_size=chunk)(pb.params, pb.x, pb.y),
            fb.hessian_blocks(pb.net, pb.loss)(pb.params, pb.x, pb.y),
        ):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-13 * float(jnp.max(jnp.abs(b))))


def test_hvp_at_a_dead_relu_feeding_an_elu_exactly_at_zero():
    """The case hypothesis found: relu's z < 0, zero biases, so the elu layer sits exactly at z = 0."""
    net = fb.mlp([1, 1, 1, 1], activation=["relu", "elu"])
    params = tuple({"W": jnp.array([[w]]), "b": jnp.zeros(1)} for w in (-0.99246531, 0.9620415, -1.64642139))
    x, y = jnp.array([[0.69387248]]), jnp.array([[0.0]])
    v = tuple(
        {"W": jnp.array([[a]]), "b": jnp.array([c])} for a, c in ((1.0, -1.7), (-0.8, -1.5), (-2.3, 1.0))
    )
    H = fb.hessian(net, "binary_cross_entropy")(params, x, y)
    flat = fb.flatten(fb.hvp(net, "binary_cross_entropy", method="backprop")(params, x, y, v))[0]
    np.testing.assert_allclose(flat, H @ fb.flatten(v)[0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "loss", ["cross_entropy", pytest.param("squared_error", marks=pytest.mark.sweep),
             pytest.param("binary_cross_entropy", marks=pytest.mark.sweep)]
)  # fmt: skip
def test_the_factored_ggn_diagonal_equals_second_order_backprop_on_a_cnn(loss):
    """Propagating the n_out columns of S (H = S S^T) gives the same diagonal as propagating H."""
    L = fb.layers
    net = fb.serial(
        L.Conv2D(3, (3, 3), padding="SAME"), L.Activation("tanh"),
        L.Residual(L.Conv2D(3, (3, 3), padding="SAME"), L.Activation("softplus")), L.LayerNorm(),
        L.MaxPool2D(2), L.Flatten(), L.Dense(3), input_shape=(4, 4, 1),
    )  # fmt: skip
    kp, kx, ky = jax.random.split(jax.random.key(7), 3)
    params, x = net.init(kp), jax.random.normal(kx, (5, 4, 4, 1))
    y = (
        jax.random.randint(ky, (5,), 0, 3)
        if loss == "cross_entropy"
        else jax.random.bernoulli(ky, 0.5, (5, 3)) * 1.0
    )
    for per_example, chunk in [(False, 2), (True, None)]:  # chunked sums, and per-example diagonals
        a = fb.ggn_diag(net, loss, chunk_size=chunk, per_example=per_example)(params, x, y)
        b = fb.ggn_diag(net, loss, chunk_size=chunk, per_example=per_example, factored=True)(params, x, y)
        assert fb.compare(b, a, rtol=1e-12).ok()
