"""K-FAC, KFC and EKFAC factors (fbackprop/kronecker.py) against the exact GGN blocks and autodiff."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from architectures import problem

import fbackprop as fb
from fbackprop import layers as L
from fbackprop.kronecker import as_wb

MLP = fb.mlp([3, 4, 2], activation="tanh")
CNN = fb.serial(
    L.Conv2D(2, (3, 3), padding="SAME"), L.Activation("tanh"), L.AvgPool2D(2),
    L.Residual(L.Conv2D(2, (3, 3), padding="SAME"), L.Activation("tanh")),
    L.Conv2D(3, (2, 2)), L.Flatten(), L.Dense(2),
    input_shape=(4, 4, 1),
)  # fmt: skip
# the layers whose output has one position (dense, and the last Conv2D: 2x2 -> 1x1), where K-FAC is exact
ONE_POSITION = {id(MLP): (0, 1), id(CNN): (2, 3)}
LOSSES = ("squared_error", "cross_entropy")


def _wb_order(W_shape) -> np.ndarray:
    """Where ``fb.flatten``'s order of ``{"W", "b"}`` (W row-major, then b) sits in ``[W | b]``'s."""
    out, k = W_shape[0], int(np.prod(W_shape[1:]))
    return np.array(
        [i * (k + 1) + j for i in range(out) for j in range(k)] + [i * (k + 1) + k for i in range(out)]
    )


def _as_wb_block(B, W_shape) -> np.ndarray:
    """A ``(P_l, P_l)`` block in ``fb.flatten``'s order, reordered to ``[W | b]`` row-major."""
    order = _wb_order(W_shape)
    out = np.zeros_like(np.asarray(B))
    out[np.ix_(order, order)] = B
    return out


def _layers(tree):
    """The per-layer entries of a params-shaped tuple, nested blocks flattened, in order."""
    return jax.tree.leaves(tree, is_leaf=lambda t: isinstance(t, (dict, fb.KFactors, fb.EKFactors)))


def _rel(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


@pytest.mark.parametrize("net", [MLP, CNN], ids=["mlp", "cnn"])
@pytest.mark.parametrize("loss", LOSSES)
def test_one_example_kron_is_the_ggn_block(net, loss):
    """N = 1, kind="exact": kron(G, A) is the layer's GGN block wherever the output has one position."""
    params, x, y = problem(net, n=1, loss=loss)
    factors = _layers(fb.kfac_factors(net, loss)(params, x, y))
    blocks = jax.tree.leaves(fb.hessian_blocks(net, loss, exact=False)(params, x, y))
    thetas = _layers(params)
    for i in ONE_POSITION[id(net)]:
        f, B = factors[i], _as_wb_block(blocks[i], thetas[i]["W"].shape)
        assert _rel(jnp.kron(f.G, f.A), B) <= 1e-12


def _perturbed_apply(net, l_index):
    """``(params, x, e) -> yhat`` with ``e`` added to the output of the ``l_index``-th layer with
    parameters (nested blocks flattened): autodiff of it in ``e`` is that layer's output gradient."""
    flat_layers = [layer for _, layer in fb.layers.serial.leaves(net.body)]
    target = [layer for layer in flat_layers if layer.has_params][l_index]

    def run(layers, thetas, x, e):
        for layer, th in zip(layers, thetas):
            if isinstance(layer, L.Residual):
                x = x + run(layer.block.layers, layer.block.thetas(th), x, e)
            else:
                x = layer.forward(th, x)[0]
                x = x + e if layer is target else x
        return x

    return lambda params, x, e: run(net.body.layers, net.body.thetas(params), x, e), target


def _twin_factors(net, loss, params, x, y, l_index, seeds):
    """Autodiff twin of one layer's ``(A, G)``: the output gradients by ``jax.vjp`` in an added
    perturbation of the layer's output, the inputs from the layer's cache (patches by
    ``jax.jacobian`` of ``lax.conv`` for a convolution)."""
    apply, layer = _perturbed_apply(net, l_index)
    thetas = _layers(params)
    z_shape = jax.eval_shape(lambda: _layer_input_and_output(net, params, x, layer))[1].shape
    _, vjp = jax.vjp(lambda e: apply(params, x, e), jnp.zeros(z_shape))
    g = jax.vmap(lambda s: vjp(s)[0])(seeds)  # (K, N, *z)
    a_in = _layer_input_and_output(net, params, x, layer)[0]
    n, c = x.shape[0], g.shape[-1]
    if isinstance(layer, L.Conv2D):  # the patch of (n, s) is dz_(n, s, o)/dW_o, for any o
        theta = thetas[l_index]
        J = jax.jacobian(lambda W: layer.reference(dict(theta, W=W), a_in))(theta["W"])
        rows = J[..., 0, 0, :, :, :].reshape(-1, int(np.prod(theta["W"].shape[1:])))
    else:
        rows = a_in
    abar = jnp.concatenate([rows, jnp.ones((rows.shape[0], 1))], axis=1)
    gr = g.reshape(-1, c)
    return abar.T @ abar / n, gr.T @ gr / (n * (rows.shape[0] // n))


def _layer_input_and_output(net, params, x, target):
    """The input and output of layer ``target`` in the forward pass (nested blocks entered)."""
    found = {}

    def run(layers, thetas, x):
        for layer, th in zip(layers, thetas):
            if isinstance(layer, L.Residual):
                x = x + run(layer.block.layers, layer.block.thetas(th), x)
            else:
                y = layer.forward(th, x)[0]
                if layer is target:
                    found["io"] = (x, y)
                x = y
        return x

    run(net.body.layers, net.body.thetas(params), x)
    return found["io"]


def _autodiff_seeds(loss_name, kind, yhat, y):
    """``(K, N, n_out)``: the loss Hessian's symmetric square root (``"exact"``: any square root gives
    the same ``G``) or the gradient (``"empirical"``), per example, by autodiff."""
    value = fb.losses.get(loss_name).value
    l_n = lambda z, t: value(z[None], t[None])[0]  # noqa: E731
    if kind == "empirical":
        return jax.vmap(jax.grad(l_n))(yhat, y)[None]
    e, U = jnp.linalg.eigh(jax.vmap(jax.hessian(l_n))(yhat, y))
    return jnp.moveaxis(U * jnp.sqrt(jnp.maximum(e, 0.0))[:, None, :], 2, 0)


@pytest.mark.parametrize(
    "kind, net",
    [
        pytest.param("exact", MLP, id="exact-mlp"),
        pytest.param("exact", CNN, id="exact-cnn", marks=pytest.mark.slow),  # 20 s: one pass per class
        pytest.param("empirical", MLP, id="empirical-mlp"),
        pytest.param("empirical", CNN, id="empirical-cnn"),
    ],
)
def test_factors_match_autodiff_twin(net, kind):
    """Every layer's (A, G), KFC's positions included, against the twin built on autodiff."""
    loss = "cross_entropy"
    params, x, y = problem(net, n=6, loss=loss)
    factors = _layers(fb.kfac_factors(net, loss, kind)(params, x, y))
    y = fb.losses.get(loss).prepare(y, net.n_out)
    seeds = _autodiff_seeds(loss, kind, net.apply(params, x), y)
    for i, f in enumerate(factors):
        A, G = _twin_factors(net, loss, params, x, y, i, seeds)
        assert _rel(f.A, A) <= 1e-10
        assert _rel(f.G, G) <= 1e-10


def test_fisher_expectation_is_exact():
    """kind="fisher": the mean over 10^4 target draws per example is "exact"'s G (Monte Carlo error
    ~ 1/sqrt(10^4) = 1e-2: margin 5x); A does not depend on the kind."""
    loss = "cross_entropy"
    params, x, y = problem(CNN, n=4, loss=loss)
    exact = _layers(fb.kfac_factors(CNN, loss)(params, x, y))
    fisher = _layers(fb.kfac_factors(CNN, loss, "fisher", n_samples=10_000)(params, x, y, jax.random.key(3)))
    for e, f in zip(exact, fisher):
        assert _rel(f.A, e.A) <= 1e-13
        assert float(jnp.linalg.norm(f.G - e.G) / jnp.linalg.norm(e.G)) <= 0.05


def _dense_kron(f):
    return np.kron(np.asarray(f.G), np.asarray(f.A))


@pytest.mark.parametrize("net", [MLP, CNN], ids=["mlp", "cnn"])
def test_products_and_damped_inverse_match_dense(net):
    """kfac_vp is kron(G, A) on [W | b]; kfac_inverse_vp is the damped Kronecker inverse with pi."""
    loss, lam = "cross_entropy", 1e-2
    params, x, y = problem(net, n=5, loss=loss)
    factors = fb.kfac_factors(net, loss)(params, x, y)
    v = jax.tree.map(lambda p: jnp.cos(3.0 * p), params)
    Fv, Iv = _layers(fb.kfac_vp(factors, v)), _layers(fb.kfac_inverse_vp(factors, v, lam))
    for f, t, fv, iv in zip(_layers(factors), _layers(v), Fv, Iv):
        vec = np.asarray(as_wb(t)).ravel()
        assert _rel(as_wb(fv).ravel(), _dense_kron(f) @ vec) <= 1e-12
        pi = np.sqrt((np.trace(f.A) / f.A.shape[0]) / (np.trace(f.G) / f.G.shape[0]))
        damped = np.kron(
            f.G + np.sqrt(lam) / pi * np.eye(len(f.G)), f.A + pi * np.sqrt(lam) * np.eye(len(f.A))
        )
        assert _rel(as_wb(iv).ravel(), np.linalg.solve(damped, vec)) <= 1e-10


@pytest.mark.parametrize("net", [MLP, CNN], ids=["mlp", "cnn"])
def test_ekfac_scales_are_the_ggn_in_kfac_basis(net):
    """kind="exact": EKFAC's S is the diagonal of the exact GGN block in K-FAC's eigenbasis (George et
    al. 2018's refit), so EKFAC is closer to the block than K-FAC in Frobenius norm; its products
    match the dense form and its damped inverse undoes ``ekfac_vp + lam``."""
    loss, lam = "cross_entropy", 1e-3
    params, x, y = problem(net, n=5, loss=loss)
    ek = fb.ekfac_factors(net, loss)(params, x, y)
    kf = _layers(fb.kfac_factors(net, loss)(params, x, y))
    blocks = jax.tree.leaves(fb.hessian_blocks(net, loss, exact=False)(params, x, y))
    v = jax.tree.map(lambda p: jnp.sin(2.0 * p), params)
    Ev, back = fb.ekfac_vp(ek, v), fb.ekfac_inverse_vp(ek, v, lam)
    reback = _layers(jax.tree.map(lambda a, b: a + lam * b, fb.ekfac_vp(ek, back), back))
    for f, k, B, t, th, ev, rb in zip(
        _layers(ek), kf, blocks, _layers(v), _layers(params), _layers(Ev), reback
    ):
        B = _as_wb_block(B, th["W"].shape)
        Q = np.kron(np.asarray(f.U_G), np.asarray(f.U_A))
        assert _rel(np.asarray(f.S).ravel(), np.diag(Q.T @ B @ Q)) <= 1e-10
        dense = Q @ np.diag(np.asarray(f.S).ravel()) @ Q.T
        assert np.linalg.norm(dense - B) <= np.linalg.norm(_dense_kron(k) - B) * (1 + 1e-12)
        vec = np.asarray(as_wb(t)).ravel()
        assert _rel(as_wb(ev).ravel(), dense @ vec) <= 1e-12
        assert _rel(as_wb(rb).ravel(), vec) <= 1e-8


def test_jit_and_nested_layout():
    """The factors are laid out like params (the residual block's entry a tuple) and trace under jit."""
    loss = "cross_entropy"
    params, x, y = problem(CNN, n=3, loss=loss)
    factors = fb.kfac_factors(CNN, loss)(params, x, y)
    assert isinstance(factors[1], tuple) and len(factors) == len(params)
    step = jax.jit(lambda p: fb.kfac_inverse_vp(fb.kfac_factors(CNN, loss)(p, x, y), p, 1e-2))
    chex_shapes = jax.tree.map(jnp.shape, step(params))
    assert chex_shapes == jax.tree.map(jnp.shape, params)


def test_a_zero_factor_gives_the_inverse_of_the_damping():
    """At a perfect fit the empirical G is 0: pi = 1, and the damped inverse is finite,
    (A + sqrt(lam) I)^-1 (x) I / sqrt(lam), not NaN."""
    f = (fb.KFactors(jnp.eye(3) * 2.0, jnp.zeros((2, 2))),)
    v = ({"W": jnp.ones((2, 2)), "b": jnp.arange(2.0)},)
    out = fb.kfac_inverse_vp(f, v, 0.5)
    r = np.sqrt(0.5)
    np.testing.assert_allclose(as_wb(out[0]), as_wb(v[0]) / ((2.0 + r) * r), rtol=1e-12)
