"""Conv2D, AvgPool2D, MaxPool2D and Flatten: every hand-written pass and readout against JAX autodiff.

float64 (tests/conftest.py), <= 1e-10 relative: forward against the layer's ``reference``
(``jax.lax.conv_general_dilated`` / ``reduce_window``), ``backward`` against ``jax.vjp`` of ``forward``,
``forward_r`` against ``jax.jvp`` of ``forward``, ``backward_r`` against ``jax.jvp`` of ``(theta, x, g)
-> backward(theta, forward(theta, x)[1], g)``, ``backward2`` against ``jax.hessian`` (exact) and
``J^T H J`` from ``jax.jacobian`` (GGN) of a random scalar function ``phi`` of the output per example,
and the readouts against ``jax.hessian`` / ``jax.grad`` with respect to the parameters.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from fbackprop.initializers import INITIALIZERS
from fbackprop.layers import patches
from fbackprop.layers.conv2d import Conv2D
from fbackprop.layers.flatten import Flatten
from fbackprop.layers.pool import AvgPool2D, MaxPool2D

TOL = 1e-10
N = 2


def assert_close(actual, expected, what):
    """``max |actual - expected| <= TOL max |expected|`` leaf by leaf, shapes equal."""
    leaves_a, tree_a = jax.tree.flatten(actual)
    leaves_e, tree_e = jax.tree.flatten(expected)
    assert tree_a == tree_e, f"{what}: structure {tree_a} != {tree_e}"
    for a, e in zip(leaves_a, leaves_e):
        a, e = np.asarray(a), np.asarray(e)
        assert a.shape == e.shape, f"{what}: shape {a.shape} != {e.shape}"
        scale = max(float(np.max(np.abs(e))), 1e-300)
        err = float(np.max(np.abs(a - e))) / scale
        assert err <= TOL, f"{what}: relative error {err:.2e}"


def normal_like(key, tree):
    """A standard normal tree shaped like ``tree`` (``None`` stays ``None``)."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, max(len(leaves), 1))
    return jax.tree.unflatten(treedef, [jax.random.normal(k, l.shape, l.dtype) for k, l in zip(keys, leaves)])


class Case:
    """A layer at a random point: parameters, input, directions, a random scalar function of the output."""

    def __init__(self, layer, in_shape, seed=0, x=None):
        keys = jax.random.split(jax.random.key(seed), 8)
        self.layer, self.in_shape = layer, tuple(in_shape)
        theta, self.out_shape = layer.init(keys[0], self.in_shape, jnp.float64)
        # random (non-zero) biases too, so that every term is exercised
        self.theta = (
            None if theta is None else {"W": theta["W"], "b": jax.random.normal(keys[1], theta["b"].shape)}
        )
        self.x = jax.random.normal(keys[2], (N,) + self.in_shape) if x is None else x
        self.v = normal_like(keys[3], self.theta)
        self.r_x = jax.random.normal(keys[4], self.x.shape)
        self.g = jax.random.normal(keys[5], (N,) + tuple(self.out_shape))
        self.r_g = jax.random.normal(keys[6], self.g.shape)
        n_out = math.prod(self.out_shape)
        kc, kB, kd = jax.random.split(keys[7], 3)
        self.c = jax.random.normal(kc, (n_out,))
        self.B = jax.random.normal(kB, (3, n_out)) / math.sqrt(n_out)
        self.d = jax.random.normal(kd, (n_out,))

    def f(self, theta, x):
        """The forward's output alone."""
        return self.layer.forward(theta, x)[0]

    def phi(self, y):
        """A scalar function of one example's flattened output, dense and non-constant Hessian."""
        By = self.B @ y
        return self.c @ y + 0.5 * By @ By + self.d @ jnp.tanh(y)

    def phi_sum(self, y):
        """``sum_n phi(y_n)`` over the batch ``(N, *out_shape)``."""
        return jnp.sum(jax.vmap(self.phi)(y.reshape(y.shape[0], -1)))

    def one(self, theta, x_n):
        """One example's flattened output from its flattened input."""
        return self.f(theta, x_n.reshape((1,) + self.in_shape)).reshape(-1)


def conv_cases():
    """(Conv2D, in_shape) over kernels (1,1), (2,3), (3,3), strides 1 and 2, VALID and SAME, channels."""
    channels = [(1, 2), (3, 2), (2, 1)]
    out = []
    i = 0
    for kernel in [(1, 1), (2, 3), (3, 3)]:
        for stride in [1, 2]:
            for padding in ["VALID", "SAME"]:
                c_in, c_out = channels[i % 3]
                i += 1
                out.append((Conv2D(c_out, kernel, stride, padding), (5, 7, c_in)))
    out.append((Conv2D(2, 3, stride=(2, 1), padding="SAME"), (5, 7, 2)))  # unequal strides
    out.append((Conv2D(3, (2, 2), stride=(1, 3), padding="VALID"), (4, 7, 1)))
    return out


POOL_CASES = [
    (pool(window, stride), (5, 7, 2))
    for pool in (AvgPool2D, MaxPool2D)
    for window, stride in [((2, 2), None), ((3, 2), 1), ((2, 3), (1, 2)), (3, 2)]
]
FLATTEN_CASES = [(Flatten(), (5, 7, 2)), (Flatten(), (3,)), (Flatten(), (2, 3))]
CONV_CASES = conv_cases()
ALL_CASES = CONV_CASES + POOL_CASES + FLATTEN_CASES


def case_id(case):
    """A short id: ``Conv2D(2,k3x3,s1x1,SAME)-5x7x1``."""
    layer, in_shape = case
    shape = "x".join(map(str, in_shape))
    if isinstance(layer, Conv2D):
        (kh, kw), (sh, sw) = layer.kernel_size, layer.stride
        return f"Conv2D({layer.out_channels},k{kh}x{kw},s{sh}x{sw},{layer.padding})-{shape}"
    if isinstance(layer, Flatten):
        return f"Flatten-{shape}"
    (kh, kw), (sh, sw) = layer.window, layer.stride
    return f"{type(layer).__name__}(w{kh}x{kw},s{sh}x{sw})-{shape}"


def sweep(cases, core):
    """``cases`` as parameters: those at the indices ``core`` in every run, the rest marked ``sweep``
    (``make test-sweeps``; fb.check_layer's table covers every layer kind in every run)."""
    return [
        pytest.param(c, id=case_id(c), marks=() if i in core else pytest.mark.sweep)
        for i, c in enumerate(cases)
    ]


ALL_GRID = sweep(ALL_CASES, {1, 6, 10, 12, 15, 21, 22})  # conv: 2x3 s2 SAME, 3x3 VALID..., pools, flatten
CONV_GRID = sweep(CONV_CASES, {1, 6, 10, 12})


# ----------------------------------------------------------------------------------------------------
# The passes, every layer kind


@pytest.mark.parametrize("case", ALL_GRID)
def test_forward_matches_reference(case):
    c = Case(*case)

    def both(theta, x):
        y = c.f(theta, x)
        return y, (c.layer.reference(theta, x) if hasattr(c.layer, "reference") else x.reshape(N, -1))

    y, expected = jax.jit(both)(c.theta, c.x)
    assert y.shape == (N,) + tuple(c.out_shape)
    assert_close(y, expected, "forward vs reference")  # Flatten: vs the row-major reshape


@pytest.mark.parametrize("case", ALL_GRID)
def test_backward_matches_vjp(case):
    c = Case(*case)

    def both(theta, x, g):
        _, cache = c.layer.forward(theta, x)
        dtheta_ad, g_in_ad = jax.vjp(c.f, theta, x)[1](g)
        return c.layer.backward(theta, cache, g), (g_in_ad, dtheta_ad)

    (g_in, dtheta), (g_in_ad, dtheta_ad) = jax.jit(both)(c.theta, c.x, c.g)
    assert_close(g_in, g_in_ad, "backward dC/dx")
    if c.layer.has_params:
        assert_close(dtheta, dtheta_ad, "backward dC/dtheta")
    else:
        assert dtheta is None


@pytest.mark.parametrize("case", ALL_GRID)
def test_forward_r_matches_jvp(case):
    """With ``R{x}`` and with ``r_x=None`` (an input that does not move)."""
    c = Case(*case)

    def both(theta, v, x, r_x):
        _, cache = c.layer.forward(theta, x)
        r_y = c.layer.forward_r(theta, v, cache, r_x)[0]
        r_y_fixed = c.layer.forward_r(theta, v, cache, None)[0]
        jvp = jax.jvp(c.f, (theta, x), (v, r_x))[1]
        jvp_fixed = jax.jvp(c.f, (theta, x), (v, jnp.zeros_like(x)))[1]
        return r_y, r_y_fixed, jvp, jvp_fixed

    r_y, r_y_fixed, jvp, jvp_fixed = jax.jit(both)(c.theta, c.v, c.x, c.r_x)
    assert_close(r_y, jvp, "forward_r")
    if c.layer.has_params:
        assert_close(r_y_fixed, jvp_fixed, "forward_r with r_x None")
    else:
        assert r_y_fixed is None  # nothing moves


@pytest.mark.parametrize("case", ALL_GRID)
def test_backward_r_matches_jvp(case):
    """The jvp of ``(theta, x, g) -> backward(theta, forward(theta, x)[1], g)``; with ``R{x}``, ``None``."""
    c = Case(*case)

    def back(theta, x, g):
        return c.layer.backward(theta, c.layer.forward(theta, x)[1], g)

    def both(theta, v, x, r_x, g, r_g):
        _, cache = c.layer.forward(theta, x)
        out = []
        for moves in (r_x, None):
            _, r_cache = c.layer.forward_r(theta, v, cache, moves)
            mine = c.layer.backward_r(theta, v, cache, r_cache, g, r_g)
            tangent_x = jnp.zeros_like(x) if moves is None else r_x
            out.append((mine, jax.jvp(back, (theta, x, g), (v, tangent_x, r_g))[1]))
        return out

    for (r_g_in, r_dtheta), (r_g_in_ad, r_dtheta_ad) in jax.jit(both)(c.theta, c.v, c.x, c.r_x, c.g, c.r_g):
        assert_close(r_g_in, r_g_in_ad, "backward_r dC/dx")
        if c.layer.has_params:
            assert_close(r_dtheta, r_dtheta_ad, "backward_r dC/dtheta")
        else:
            assert r_dtheta is None


@pytest.mark.parametrize("case", ALL_GRID)
def test_backward2_matches_hessian(case):
    """exact: the per-example ``jax.hessian`` of ``phi(forward(x_n))``; GGN: ``J^T H J``, ``jax.jacobian``."""
    c = Case(*case)

    def both(theta, x):
        y, cache = c.layer.forward(theta, x)
        g = jax.grad(c.phi_sum)(y)
        H = jax.vmap(jax.hessian(c.phi))(y.reshape(N, -1))  # (N, n_out, n_out)
        mine = c.layer.backward2(theta, cache, H, g, True), c.layer.backward2(theta, cache, H, g, False)
        xf = x.reshape(N, -1)
        exact = jax.vmap(jax.hessian(lambda x_n: c.phi(c.one(theta, x_n))))(xf)
        J = jax.vmap(jax.jacobian(lambda x_n: c.one(theta, x_n)))(xf)  # (N, n_out, n_in)
        return mine, (exact, jnp.einsum("noi,nop,npj->nij", J, H, J))

    (A, A_ggn), (A_ad, A_ggn_ad) = jax.jit(both)(c.theta, c.x)
    assert A.shape == (N, math.prod(c.in_shape), math.prod(c.in_shape))
    assert_close(A, A_ad, "backward2 exact")
    assert_close(A_ggn, A_ggn_ad, "backward2 GGN")


@pytest.mark.parametrize("case", [CONV_CASES[5], POOL_CASES[2], POOL_CASES[6], FLATTEN_CASES[0]], ids=case_id)
def test_passes_run_under_jit(case):
    """The caches are pytrees of arrays: they pass through ``jax.jit`` boundaries, results as eager."""
    c = Case(*case)
    y, cache = jax.jit(c.layer.forward)(c.theta, c.x)
    g_in, _ = jax.jit(c.layer.backward)(c.theta, cache, c.g)
    _, r_cache = jax.jit(c.layer.forward_r)(c.theta, c.v, cache, c.r_x)
    r_g_in, _ = jax.jit(c.layer.backward_r)(c.theta, c.v, cache, r_cache, c.g, c.r_g)
    _, cache_e = c.layer.forward(c.theta, c.x)
    assert_close(g_in, c.layer.backward(c.theta, cache_e, c.g)[0], "jit backward")
    _, r_cache_e = c.layer.forward_r(c.theta, c.v, cache_e, c.r_x)
    assert_close(
        r_g_in, c.layer.backward_r(c.theta, c.v, cache_e, r_cache_e, c.g, c.r_g)[0], "jit backward_r"
    )


# ----------------------------------------------------------------------------------------------------
# Conv2D's readouts


def curvature_at_output(c, theta, x):
    """``cache``, ``g = dphi/dy``, ``H = d2phi/dy_n^2: (N, n_out, n_out)`` at the layer's output."""
    y, cache = c.layer.forward(theta, x)
    return cache, jax.grad(c.phi_sum)(y), jax.vmap(jax.hessian(c.phi))(y.reshape(N, -1))


@pytest.mark.parametrize("case", CONV_GRID)
def test_conv_per_example_grads(case):
    c = Case(*case)

    def both(theta, x, g):
        _, cache = c.layer.forward(theta, x)

        def grad_n(x_n, g_n):
            return jax.grad(lambda th: jnp.vdot(g_n, c.f(th, x_n[None])[0]))(theta)

        return c.layer.per_example_grads(theta, cache, g), jax.vmap(grad_n)(x, g)

    got, expected = jax.jit(both)(c.theta, c.x, c.g)
    assert_close(got, expected, "per_example_grads")


@pytest.mark.parametrize("case", CONV_GRID)
def test_conv_hessian_block_and_diags(case):
    """The block and the diagonals against ``jax.hessian`` in theta (exact) and ``J^T H J`` (exact=False):
    the same matrix here, as ``z`` is linear in ``W, b``."""
    c = Case(*case)
    flat0, unravel = ravel_pytree(c.theta)

    def both(tf, x):
        theta = unravel(tf)
        cache, g, H = curvature_at_output(c, theta, x)
        L = c.layer
        mine = [
            (
                L.hessian_block(theta, cache, H, g, e),
                L.hessian_diag(theta, cache, H, g, e),
                L.per_example_hessian_diag(theta, cache, H, g, e),
            )
            for e in (True, False)
        ]
        xf = x.reshape(N, -1)
        per_n = jax.vmap(lambda x_n: jax.hessian(lambda t: c.phi(c.one(unravel(t), x_n)))(tf))(xf)
        J = jax.vmap(lambda x_n: jax.jacobian(lambda t: c.one(unravel(t), x_n))(tf))(xf)  # (N, n_out, P_l)
        ggn_n = jnp.einsum("nop,noq,nqr->npr", J, H, J)
        return mine, (per_n, ggn_n)

    mine, expected = jax.jit(both)(flat0, c.x)
    for (block, diag, diag_n), ad_n, what in zip(mine, expected, ["exact", "GGN"]):
        assert_close(block, jnp.sum(ad_n, axis=0), f"hessian_block {what}")
        assert_close(diag, unravel(jnp.diagonal(jnp.sum(ad_n, axis=0))), f"hessian_diag {what}")
        diag_n_ad = jax.vmap(unravel)(jnp.diagonal(ad_n, axis1=1, axis2=2))
        assert_close(diag_n, diag_n_ad, f"per_example_hessian_diag {what}")


@pytest.mark.parametrize("case", CONV_GRID)
def test_conv_jacobian_gram(case):
    c = Case(*case)
    K = 3
    G = jax.random.normal(jax.random.key(7), (K, N) + tuple(c.out_shape))
    flat0, unravel = ravel_pytree(c.theta)

    def both(tf, x, G):
        theta = unravel(tf)
        _, cache = c.layer.forward(theta, x)

        def row(x_n, g_nk):
            return jax.grad(lambda t: jnp.vdot(g_nk, c.f(unravel(t), x_n[None])[0]))(tf)

        rows = jax.vmap(lambda x_n, g_n: jax.vmap(lambda g_nk: row(x_n, g_nk))(g_n))(x, jnp.moveaxis(G, 0, 1))
        return c.layer.jacobian_gram(theta, cache, G), jnp.einsum("nkp,mjp->nkmj", rows, rows)

    got, expected = jax.jit(both)(flat0, c.x, G)
    assert got.shape == (N, K, N, K)
    assert_close(got, expected, "jacobian_gram")


# ----------------------------------------------------------------------------------------------------
# Conv2D: parameters, initialization, equality


def test_conv_params_shapes_and_init_convention():
    layer = Conv2D(4, (2, 3), padding="SAME")
    key = jax.random.key(3)
    theta, out_shape = layer.init(key, (5, 7, 2), jnp.float64)
    assert theta["W"].shape == (4, 2, 3, 2) and theta["b"].shape == (4,) and out_shape == (5, 7, 4)
    W, b = INITIALIZERS["glorot"](key, (4, 2 * 3 * 2), jnp.float64)  # (fan_out, fan_in) = (C_out, kh kw C_in)
    np.testing.assert_array_equal(theta["W"].reshape(4, -1), W)
    np.testing.assert_array_equal(theta["b"], b)


def test_conv_equal_layers_are_equal_and_hash_alike():
    a, b = Conv2D(4, 3), Conv2D(4, (3, 3), stride=(1, 1), padding="VALID")
    assert a == b and hash(a) == hash(b)
    assert a.kernel_size == (3, 3) and a.stride == (1, 1)
    assert Conv2D(4, 3, np.int64(2)).stride == (2, 2)
    assert Conv2D(4, 3) != Conv2D(4, 3, padding="SAME")


@pytest.mark.parametrize(
    "layer,in_shape,out_shape",
    [
        (Conv2D(2, 3), (5, 7, 1), (3, 5, 2)),
        (Conv2D(2, 3, 2, "SAME"), (5, 7, 1), (3, 4, 2)),
        (Conv2D(2, (2, 3), 2), (5, 7, 1), (2, 3, 2)),
        (AvgPool2D(2), (5, 7, 3), (2, 3, 3)),
        (MaxPool2D(3, 1), (5, 7, 3), (3, 5, 3)),
        (Flatten(), (5, 7, 3), (105,)),
    ],
    ids=repr,
)
def test_out_shapes(layer, in_shape, out_shape):
    assert layer.init(jax.random.key(0), in_shape, jnp.float64)[1] == out_shape


# ----------------------------------------------------------------------------------------------------
# patches: the padding rule, unfold and fold


@pytest.mark.parametrize("padding", ["VALID", "SAME"])
def test_padding_rule_matches_lax(padding):
    for n in range(1, 9):
        for k in range(1, 5):
            for s in range(1, 4):
                if padding == "VALID" and k > n:
                    continue
                ((lo, hi),) = jax.lax.padtype_to_pads((n,), (k,), (s,), padding)
                assert patches.padding_amounts(n, k, s, padding) == (lo, hi), (n, k, s)
                assert patches.output_size(n, k, s, padding) == (n + lo + hi - k) // s + 1, (n, k, s)


@pytest.mark.parametrize(
    "kernel,stride,padding", [((2, 3), (1, 1), "VALID"), ((3, 3), (2, 2), "SAME"), ((2, 2), (1, 3), "SAME")]
)
def test_fold_is_the_transpose_of_unfold(kernel, stride, padding):
    x = jax.random.normal(jax.random.key(0), (2, 5, 7, 3))
    P = patches.unfold(x, kernel, stride, padding)
    assert P.shape[3:] == (kernel[0] * kernel[1], 3)
    dP = jax.random.normal(jax.random.key(1), P.shape)

    def both(x, dP):
        folded = patches.fold(dP, x.shape[1:], kernel, stride, padding)
        return folded, jax.vjp(lambda x: patches.unfold(x, kernel, stride, padding), x)[1](dP)[0]

    folded, vjp_x = jax.jit(both)(x, dP)
    assert_close(folded, vjp_x, "fold vs vjp of unfold")
    assert abs(float(jnp.vdot(P, dP) - jnp.vdot(x, folded))) <= TOL * float(jnp.vdot(jnp.abs(P), jnp.abs(dP)))


def test_unfold_patch_order_is_kh_kw_c():
    x = jnp.arange(2 * 4 * 5 * 3, dtype=jnp.float64).reshape(2, 4, 5, 3)
    P = patches.unfold(x, (2, 3), (2, 1), "VALID")  # (2, 2, 3, 6, 3)
    n, i, j = 1, 1, 2
    expected = x[n, 2 * i : 2 * i + 2, j : j + 3, :].reshape(6, 3)  # rows (p, q), columns c
    np.testing.assert_array_equal(P[n, i, j], expected)


# ----------------------------------------------------------------------------------------------------
# Pooling: max pooling's ties, equality


@pytest.mark.parametrize("layer", [MaxPool2D(2), MaxPool2D(3, 1)], ids=repr)
def test_maxpool_ties_share_the_gradient_as_jax_does(layer):
    x = jnp.round(jax.random.normal(jax.random.key(0), (2, 5, 7, 2)))  # integers: many ties
    y, cache = layer.forward(None, x)
    assert int(jnp.sum(cache.mask < 1) - jnp.sum(cache.mask == 0)) > 0  # some windows do tie
    g = jax.random.normal(jax.random.key(1), y.shape)
    r_x = jax.random.normal(jax.random.key(2), x.shape)

    def both(x, g, r_x):
        _, cache = layer.forward(None, x)
        mine = layer.backward(None, cache, g)[0], layer.forward_r(None, None, cache, r_x)[0]
        f = lambda x: layer.forward(None, x)[0]  # noqa: E731
        return mine, (jax.vjp(f, x)[1](g)[0], jax.jvp(f, (x,), (r_x,))[1])

    (g_in, r_y), (g_in_ad, r_y_ad) = jax.jit(both)(x, g, r_x)
    assert_close(g_in, g_in_ad, "maxpool backward with ties")
    assert_close(r_y, r_y_ad, "maxpool forward_r with ties")


def test_maxpool_four_way_tie_shares_a_quarter_each():
    y, cache = MaxPool2D(2).forward(None, jnp.ones((1, 2, 2, 1)))
    g_in, _ = MaxPool2D(2).backward(None, cache, jnp.ones_like(y))
    np.testing.assert_array_equal(g_in, jnp.full((1, 2, 2, 1), 0.25))


def test_pool_equality_and_default_stride():
    assert MaxPool2D(2) == MaxPool2D((2, 2), 2) and hash(MaxPool2D(2)) == hash(MaxPool2D((2, 2), (2, 2)))
    assert AvgPool2D((2, 3)).stride == (2, 3)
    assert AvgPool2D(2) != MaxPool2D(2)
    assert not AvgPool2D(2).has_params and not MaxPool2D(2).has_params and not Flatten().has_params
    assert Conv2D(1, 1).has_params


# ----------------------------------------------------------------------------------------------------
# Bad arguments: a clear error at construction or init, naming the argument and what came


@pytest.mark.parametrize(
    "make,error,match",
    [
        (lambda: Conv2D(0, 3), ValueError, r"Conv2D out_channels must be an integer from 1 .*got 0"),
        (lambda: Conv2D(2.5, 3), TypeError, r"Conv2D out_channels must be an integer; got 2.5"),
        (lambda: Conv2D(4, (3,)), ValueError, r"Conv2D kernel_size must be an int or a pair .*got \(3,\)"),
        (lambda: Conv2D(4, (3, 0)), ValueError, r"Conv2D kernel_size\[1\] must be an integer from 1"),
        (lambda: Conv2D(4, "3"), TypeError, r"Conv2D kernel_size must be an int or a pair .*got '3' \(str\)"),
        (lambda: Conv2D(4, 3.0), TypeError, r"Conv2D kernel_size must be an int or a pair .*got 3.0"),
        (lambda: Conv2D(4, 3, stride=0), ValueError, r"Conv2D stride must be an integer from 1 .*got 0"),
        (lambda: Conv2D(4, 3, stride=(1, True)), TypeError, r"Conv2D stride\[1\] must be an integer"),
        (
            lambda: Conv2D(4, 3, padding="same"),
            ValueError,
            r"Conv2D padding must be one of \['VALID', 'SAME'\]",
        ),
        (lambda: Conv2D(4, 3, init_name="xavier"), ValueError, r"Conv2D init must be one of .*'xavier'"),
        (lambda: AvgPool2D(0), ValueError, r"AvgPool2D window must be an integer from 1"),
        (
            lambda: MaxPool2D((2, 2, 2)),
            ValueError,
            r"MaxPool2D window must be an int or a pair .*\(2, 2, 2\)",
        ),
        (lambda: MaxPool2D(2, stride=1.5), TypeError, r"MaxPool2D stride must be an int or a pair .*1.5"),
    ],
    ids=[
        "conv out 0",
        "conv out float",
        "conv kernel 1-tuple",
        "conv kernel 0",
        "conv kernel str",
        "conv kernel float",
        "conv stride 0",
        "conv stride bool",
        "conv padding lowercase",
        "conv init unknown",
        "avgpool window 0",
        "maxpool window 3-tuple",
        "maxpool stride float",
    ],
)
def test_bad_layer_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize(
    "layer,in_shape,match",
    [
        (
            Conv2D(2, 3),
            (10,),
            r"Conv2D\(.*\) takes images, one example's input shape \(H, W, C\).*got \(10,\)",
        ),
        (Conv2D(2, 3), (5, 5), r"takes images, .*got \(5, 5\)"),
        (Conv2D(2, 3), (5, 0, 1), r"takes images, .*got \(5, 0, 1\)"),
        (Conv2D(2, 3), (2, 7, 1), r"the window \(3, 3\) is larger than the input's spatial size \(2, 7\)"),
        (AvgPool2D(3), (5, 2, 1), r"AvgPool2D\(.*\): the window \(3, 3\) is larger .*\(5, 2\)"),
        (MaxPool2D(2), (4,), r"MaxPool2D\(.*\) takes images, .*got \(4,\)"),
    ],
    ids=[
        "conv flat",
        "conv 2-d",
        "conv zero size",
        "conv kernel too large",
        "avgpool too large",
        "maxpool flat",
    ],
)
def test_bad_input_shapes(layer, in_shape, match):
    with pytest.raises(ValueError, match=match):
        layer.init(jax.random.key(0), in_shape, jnp.float64)


def test_same_padding_takes_any_kernel():
    theta, out_shape = Conv2D(1, 5, padding="SAME").init(jax.random.key(0), (2, 3, 1), jnp.float64)
    assert out_shape == (2, 3, 1)


@pytest.mark.parametrize("case", [CONV_CASES[0], CONV_CASES[9], POOL_CASES[1]], ids=case_id)
def test_shared_congruence_matches_congruence(case):
    """Both routes of a linear layer's ``backward2`` (``J`` formed once, or ``J^T`` on columns) agree."""
    from fbackprop.layers.base import congruence

    c = Case(*case)

    def both(theta, x):
        cache, _, H = curvature_at_output(c, theta, x)

        def jt(g):  # any batch size (Conv2D.backward's dW needs the batch of the cache)
            if isinstance(c.layer, Conv2D):
                return c.layer.input_backward(theta, cache, g)
            return c.layer.backward(theta, cache, g)[0]

        return patches.shared_congruence(jt, H, c.out_shape), congruence(jt, H, c.out_shape)

    shared, columns = jax.jit(both)(c.theta, c.x)
    assert_close(shared, columns, "shared_congruence vs congruence")
