"""Marquardt backpropagation (hand-written Jacobian rows) and per-example reverse mode vs jax.jacrev."""

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from problems import problems

import fbackprop as fb


@settings(max_examples=max(3, settings().max_examples // 4))
@given(problems(max_depth=4, max_width=6, max_batch=6))
def test_both_methods_equal_jacrev_of_the_whole_batch(pb):
    theta, unflatten = fb.flatten(pb.params)
    reference = jax.jacrev(lambda t: pb.net.apply(unflatten(t), pb.x))(theta)  # (N, n_out, P)
    scale = max(float(np.abs(reference).max()), 1e-300)
    for method in ("backprop", "autodiff"):
        rows = fb.jacobian(pb.net, method)(pb.params, pb.x)
        assert rows[0]["W"].shape == (pb.x.shape[0], pb.net.n_out) + pb.params[0]["W"].shape
        assert float(np.abs(fb.as_matrix(rows) - reference).max()) <= 1e-10 * scale


@settings(max_examples=max(3, settings().max_examples // 4))
@given(problems(max_depth=4, max_width=6, max_batch=6))
def test_the_gram_matrix_from_the_layers_equals_J_J_transpose(pb):
    """K_(nk),(mj) = sum_l (delta^l_nk . delta^l_mj)(a_n . a_m + 1), never forming J, vs autodiff's J J^T."""
    J = fb.as_matrix(fb.jacobian(pb.net, "autodiff")(pb.params, pb.x))
    reference = np.einsum("nkp,mjp->nkmj", J, J)
    scale = max(float(np.abs(reference).max()), 1e-300)
    for method in ("backprop", "autodiff"):
        K = fb.jacobian_gram(pb.net, method)(pb.params, pb.x)
        assert K.shape == (pb.x.shape[0], pb.net.n_out) * 2
        assert float(np.abs(K - reference).max()) <= 1e-10 * scale, method
    with pytest.raises(ValueError, match="features"):
        fb.jacobian_gram(pb.net)(pb.params, np.ones((2, pb.net.n_in + 1)))


def test_autodiff_takes_any_apply_and_backprop_refuses_it():
    pb_net = fb.mlp([2, 3, 2], activation="tanh")
    params = pb_net.init(jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (4, 2))
    rows = fb.jacobian(lambda p, x: pb_net.apply(p, x), "autodiff")(params, x)
    np.testing.assert_array_equal(
        fb.as_matrix(rows), fb.as_matrix(fb.jacobian(pb_net, "autodiff")(params, x))
    )
    with pytest.raises(TypeError, match="needs an fbackprop Network"):
        fb.jacobian(pb_net.apply, "backprop")
    with pytest.raises(ValueError, match=r"method must be one of \['backprop', 'autodiff'\]; got 'forward'"):
        fb.jacobian(pb_net, "forward")
    with pytest.raises(ValueError, match="x has 3 features but the network expects 2"):
        fb.jacobian(pb_net)(params, np.ones((4, 3)))


# --- issue 11: inline calls compile once ------------------------------------------------------------
@pytest.mark.parametrize(
    "factory, method",
    [
        (fb.jacobian, "backprop"),
        (fb.jacobian, "autodiff"),
        (fb.jacobian_gram, "backprop"),
        (fb.jacobian_gram, "autodiff"),
    ],
)
def test_inline_factory_calls_compile_once(factory, method, compiles):
    net = fb.mlp([2, 3, 2], activation="tanh")
    params, x = net.init(jax.random.key(0)), jax.random.normal(jax.random.key(1), (4, 2))
    first = factory(net, method)(params, x)
    after_first = compiles()
    again = [factory(net, method)(params, x) for _ in range(3)]
    assert compiles() == after_first and factory(net, method) is factory(net, method)
    for out in again:
        jax.tree.map(np.testing.assert_array_equal, out, first)
