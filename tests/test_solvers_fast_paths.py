"""The linear solvers' specialised paths equal the general formulas they replace (float64, 1e-12): the
Jacobian built transposed against autodiff's, ``G = J^T J`` by one product where the loss Hessian is the
identity (squared error) against the three-operand ``sum_n J_n^T H_n J_n``, ``J^T (H J)`` against the
same for a non-identity ``H``, and the dual solver's ``K w = u - mu w`` (read off the system) against
``K w`` formed."""

import jax
import jax.numpy as jnp
import pytest

import fbackprop as fb
from fbackprop.optim import dual
from fbackprop.optim import solvers as S
from fbackprop.validate import check_call

HI = jax.lax.Precision.HIGHEST


def _rel(a, b):
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


def _general(Jt, H, u):
    return (
        jnp.einsum("pna,nab,qnb->pq", Jt, H, Jt, precision=HI),
        jnp.einsum("pna,na->p", Jt, u, precision=HI),
    )


def _problem(key, loss, sizes=(3, 5, 4, 2), n=7):
    net = fb.mlp(list(sizes), activation="tanh")
    params = net.init(key, jnp.float64)
    kx, ky = jax.random.split(jax.random.fold_in(key, 1))
    x = jax.random.normal(kx, (n, sizes[0]), jnp.float64)
    y = jax.random.randint(ky, (n,), 0, sizes[-1]) if loss == "cross_entropy" else x[:, : sizes[-1]] ** 2
    lo = fb.losses.get(loss)
    x, y = check_call(net, lo, params, x, y)
    theta, unflatten = jax.flatten_util.ravel_pytree(params)
    return S.Problem(net, lo, x, y, unflatten, False, 3, 1e-10, 100), theta


def test_transposed_jacobian_is_autodiffs_jacobian_transposed(key):
    pb, theta = _problem(key, "squared_error")
    params = pb.unflatten(theta)
    J = fb.as_matrix(fb.jacobian(pb.net, "autodiff")(params, pb.x))  # (N, n_out, P)
    Jt = S.transposed_jacobian(pb.net, params, pb.x)
    assert Jt.shape == (theta.size,) + J.shape[:2] and _rel(Jt, J.transpose(2, 0, 1)) <= 1e-12


@pytest.mark.parametrize("loss", ["squared_error", "cross_entropy"])
def test_normal_equations_equal_the_three_operand_einsum(key, loss):
    pb, theta = _problem(key, loss)
    Jt, H, u = pb.residual_pieces(theta, pb.x, pb.y)
    G_ref, g_ref = _general(Jt, H, u)
    G, g = S.normal_equations(Jt, None if loss == "squared_error" else H, u)
    assert _rel(G, G_ref) <= 1e-12 and _rel(g, g_ref) <= 1e-12
    if loss == "squared_error":  # H_n = I: the identity path is the same as passing H
        G_H, _ = S.normal_equations(Jt, H, u)
        assert _rel(G, G_H) <= 1e-12


@pytest.mark.parametrize("loss", ["squared_error", "cross_entropy"])
@pytest.mark.parametrize("solver", ["dense", pytest.param("accumulate", marks=pytest.mark.slow)])
def test_linearize_equals_the_general_normal_equations(key, loss, solver):
    pb, theta = _problem(key, loss)
    lin = {"dense": S.linearize_dense, "accumulate": S.linearize_accumulate}[solver](pb, theta)
    G_ref, g_ref = _general(*pb.residual_pieces(theta, pb.x, pb.y))
    assert _rel(lin.G, G_ref) <= 1e-12 and _rel(lin.g, g_ref) <= 1e-12


@pytest.mark.parametrize(
    "mu", [1e-6, pytest.param(1e-2, marks=pytest.mark.slow), pytest.param(10.0, marks=pytest.mark.slow)]
)
def test_dual_model_decrease_from_the_system_equals_the_formed_K_w(key, mu):
    pb, theta = _problem(key, "squared_error", sizes=(2, 6, 6, 1), n=5)  # M = 5 < P
    lin = dual.linearize_dual(pb, theta)
    delta, predicted = dual.solve_dual(pb, lin, mu)
    w = jnp.linalg.solve(lin.K + mu * jnp.eye(lin.K.shape[0]), lin.u.reshape(-1))
    Kw = jnp.matmul(lin.K, w, precision=HI)
    predicted_ref = -(lin.g @ delta + 0.5 * Kw @ Kw)
    assert abs(float(predicted - predicted_ref)) <= 1e-12 * abs(float(predicted_ref))
    J = fb.as_matrix(fb.jacobian(pb.net)(pb.unflatten(theta), pb.x)).reshape(lin.K.shape[0], -1)
    G = J.T @ J  # and the model's decrease is -(g.delta + delta.G delta / 2) of the primal
    assert abs(float(predicted + lin.g @ delta + 0.5 * delta @ G @ delta)) <= 1e-10 * abs(float(predicted))
