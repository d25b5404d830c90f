"""Autodiff curvature products (HVP, GGN, Fisher) and dense matrices against their definitions, float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from problems import LOSS_NAMES, make_problem
from test_second_order import rel, tangent

import fbackprop as fb


def jacobian_rows(pb):
    """``J: (N, n_out, P)`` by reverse mode, one example at a time (independent of ``fb.ggn``'s jacfwd)."""
    theta, unflatten = fb.flatten(pb.params)
    return jax.vmap(lambda x: jax.jacrev(lambda t: pb.net.apply(unflatten(t), x[None])[0])(theta))(pb.x)


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_ggn_is_jt_h_j_and_ggn_vp_is_its_product(loss):
    pb = make_problem([3, 5, 4, 3], ["tanh", "elu"], loss, n=10, seed=4)
    args, v = (pb.params, pb.x, pb.y), tangent(pb.params)
    J = jacobian_rows(pb)
    H_loss = fb.losses.get(loss).hessian(pb.net.apply(pb.params, pb.x), fb.losses.get(loss).prepare(pb.y, 3))
    G = jnp.einsum("nap,nab,nbq->pq", J, H_loss, J) / pb.x.shape[0]
    np.testing.assert_allclose(fb.ggn(pb.net, loss)(*args), G, rtol=0, atol=1e-12 * float(jnp.abs(G).max()))
    theta_v, unflatten = fb.flatten(v)
    assert rel(fb.ggn_vp(pb.net, loss)(*args, v), unflatten(G @ theta_v)) <= 1e-10


def test_for_a_linear_model_with_squared_error_the_hessian_is_the_ggn():
    pb = make_problem([4, 3], [], "squared_error", n=12, seed=1)
    args = (pb.params, pb.x, pb.y)
    np.testing.assert_allclose(fb.hessian(pb.net, pb.loss)(*args), fb.ggn(pb.net, pb.loss)(*args), atol=1e-13)


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_empirical_fisher_is_the_mean_outer_product_of_per_example_grads(loss):
    pb = make_problem([3, 4, 2], ["sigmoid"], loss, n=9, seed=6)
    v = tangent(pb.params)
    g = fb.per_example_grads(pb.net, loss)(pb.params, pb.x, pb.y)  # hand-written, (N, ...)
    g_flat = jax.vmap(
        lambda *leaves: fb.flatten(jax.tree.unflatten(jax.tree.structure(pb.params), leaves))[0]
    )(*jax.tree.leaves(g))
    theta_v, unflatten = fb.flatten(v)
    F_v = g_flat.T @ (g_flat @ theta_v) / pb.x.shape[0]
    assert (
        rel(fb.fisher_vp(pb.net, loss, kind="empirical")(pb.params, pb.x, pb.y, v), unflatten(F_v)) <= 1e-10
    )


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_monte_carlo_fisher_estimates_the_ggn(loss):
    """For all three losses the true Fisher equals the GGN; 4000 draws per example bring the MC
    estimate within 5% (relative, max over entries) of G v; the empirical Fisher is farther."""
    pb = make_problem([3, 4, 2], ["tanh"], loss, n=6, seed=8)
    args, v = (pb.params, pb.x, pb.y), tangent(pb.params)
    Gv = fb.ggn_vp(pb.net, loss)(*args, v)
    mc = fb.fisher_vp(pb.net, loss, kind="mc", n_samples=4000)(*args, v, jax.random.key(0))
    assert rel(mc, Gv) <= 0.05
    again = fb.fisher_vp(pb.net, loss, kind="mc", n_samples=4000)(*args, v, jax.random.key(0))
    assert rel(again, mc) == 0.0  # same key, same estimate
    assert rel(fb.fisher_vp(pb.net, loss, kind="empirical")(*args, v), Gv) > 0.05


def test_hessian_against_finite_differences_of_the_gradient():
    pb = make_problem([2, 4, 2], ["swish"], "cross_entropy", n=7, seed=9)
    theta, unflatten = fb.flatten(pb.params)
    grad = fb.backprop(pb.net, pb.loss)
    eps = 1e-5
    column = lambda e: fb.flatten(
        jax.tree.map(
            lambda a, b: (a - b) / (2 * eps),
            grad(unflatten(theta + eps * e), pb.x, pb.y),
            grad(unflatten(theta - eps * e), pb.x, pb.y),
        )
    )[0]
    fd = jax.jit(jax.vmap(column))(jnp.eye(theta.size))
    H = fb.hessian(pb.net, pb.loss)(pb.params, pb.x, pb.y)
    np.testing.assert_allclose(H, fd, atol=1e-7)
    np.testing.assert_allclose(H, H.T, atol=1e-14)


def test_autodiff_curvature_accepts_any_apply_callable():
    pb = make_problem([3, 4, 2], ["tanh"], "squared_error", n=5, seed=2)
    args, v = (pb.params, pb.x, pb.y), tangent(pb.params)
    apply = lambda params, x: pb.net.apply(params, x)  # a plain function
    for fn in (fb.hvp, fb.ggn_vp, fb.fisher_vp):
        assert rel(fn(apply, pb.loss)(*args, v), fn(pb.net, pb.loss)(*args, v)) == 0.0
    np.testing.assert_array_equal(fb.hessian(apply, pb.loss)(*args), fb.hessian(pb.net, pb.loss)(*args))


def test_unknown_options_are_named():
    pb = make_problem([2, 2, 1], ["tanh"], "squared_error", n=3)
    with pytest.raises(ValueError, match=r"method must be one of \['autodiff', 'backprop'\]; got 'reverse'"):
        fb.hvp(pb.net, pb.loss, method="reverse")
    with pytest.raises(ValueError, match=r"kind must be one of \['empirical', 'mc'\]; got 'true'"):
        fb.fisher_vp(pb.net, pb.loss, kind="true")


def test_flatten_order_is_w_row_major_then_b_per_layer():
    params = (
        {"W": jnp.array([[1.0, 2.0], [3.0, 4.0]]), "b": jnp.array([5.0, 6.0])},
        {"W": jnp.array([[7.0, 8.0]]), "b": jnp.array([9.0])},
    )
    theta, unflatten = fb.flatten(params)
    np.testing.assert_array_equal(theta, np.arange(1.0, 10.0))
    assert rel(unflatten(theta), params) == 0.0


# --- issue 11: inline calls compile once; every function and what it returns is documented --------
def _inline_calls(pb, v):
    args = (pb.params, pb.x, pb.y)
    return {
        "hvp": lambda: fb.hvp(pb.net, pb.loss)(*args, v),
        "hvp backprop": lambda: fb.hvp(pb.net, pb.loss, method="backprop")(*args, v),
        "ggn_vp": lambda: fb.ggn_vp(pb.net, pb.loss)(*args, v),
        "fisher_vp": lambda: fb.fisher_vp(pb.net, pb.loss)(*args, v),
        "fisher_vp mc": lambda: fb.fisher_vp(pb.net, pb.loss, kind="mc", n_samples=2)(
            *args, v, jax.random.key(0)
        ),
        "hessian": lambda: fb.hessian(pb.net, pb.loss)(*args),
        "ggn": lambda: fb.ggn(pb.net, pb.loss)(*args),
    }


@pytest.mark.parametrize(
    "name", list(_inline_calls(make_problem([2, 3, 1], ["tanh"], "squared_error", n=4), None))
)
def test_inline_factory_calls_compile_once(name, compiles):
    """``fb.hvp(net, loss)(params, x, y, v)`` written inline in a loop: one compile, then none."""
    pb = make_problem([2, 3, 2], ["tanh"], "squared_error", n=5, seed=11)
    call = _inline_calls(pb, tangent(pb.params))[name]
    first = call()
    after_first = compiles()
    again = [call() for _ in range(3)]
    assert compiles() == after_first, f"{name}: {compiles() - after_first} compiles after the first call"
    assert all(rel(out, first) == 0.0 for out in again)
    assert fb.hvp(pb.net, pb.loss) is fb.hvp(pb.net, pb.loss)


def _documented(fn):
    doc = fn.__doc__ or ""
    return "Args:" in doc and "Returns:" in doc


def test_every_public_function_and_every_function_a_factory_returns_has_args_and_returns():
    import importlib
    import inspect

    names = ["curvature", "jacobian", "second_order", "spectra"] + [
        f"optim.{m}"
        for m in (
            "levenberg_marquardt",
            "gauss_newton",
            "hessian_free",
            "least_squares",
            "damping",
            "solvers",
        )
    ]
    modules = [importlib.import_module(f"fbackprop.{name}") for name in names]
    missing = []
    for module in modules:
        for name, fn in vars(module).items():
            if (
                name.startswith("_")
                or not inspect.isfunction(fn)
                or not fn.__module__.startswith("fbackprop")
            ):
                continue
            if fn.__module__ == module.__name__ and not _documented(fn):
                missing.append(f"{module.__name__}.{name}")
    assert not missing, missing
    pb = make_problem([2, 3, 1], ["tanh"], "squared_error", n=4)
    returned = [
        fb.hvp(pb.net, pb.loss),
        fb.hvp(pb.net, pb.loss, method="backprop"),
        fb.ggn_vp(pb.net, pb.loss),
        fb.fisher_vp(pb.net, pb.loss),
        fb.fisher_vp(pb.net, pb.loss, kind="mc"),
        fb.hessian(pb.net, pb.loss),
        fb.ggn(pb.net, pb.loss),
        fb.hessian_diag(pb.net, pb.loss),
        fb.ggn_diag(pb.net, pb.loss, per_example=True),
        fb.hessian_blocks(pb.net, pb.loss),
        fb.jacobian(pb.net),
        fb.jacobian(pb.net, "autodiff"),
        fb.jacobian_gram(pb.net),
        fb.jacobian_gram(pb.net, "autodiff"),
    ]
    assert all(_documented(fn) for fn in returned), [fn.__doc__ for fn in returned if not _documented(fn)]
    assert "v: a tangent shaped like params" in fb.hvp(pb.net, pb.loss).__doc__
    assert "key: a JAX PRNG key" in fb.fisher_vp(pb.net, pb.loss, kind="mc").__doc__
