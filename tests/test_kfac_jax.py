"""fbackprop's K-FAC factors (``fb.kfac_factors``) against kfac-jax's for the same network, data and
convention, float64 (runs only where kfac-jax is installed: ``pip install -e '.[bench]'``).

The network is handed to kfac-jax as a function it traces (``benchmarks/kfac_entries.py``:
``kfac_jax_params``, ``kfac_jax_loss``): the same params with a dense ``W`` transposed to
``(n_in, n_out)`` and a convolution's to HWIO, the layers written as ``x @ W + b`` and
``lax.conv_general_dilated + b`` (registered by kfac-jax's graph matcher), the loss registered with
``register_softmax_cross_entropy_loss`` or ``register_squared_error_loss``. kfac-jax's factors are read
from one curvature update of its ``BlockDiagonalCurvature`` (no moving average: ``ema_old = 0``).

Kinds and modes: ``kind="exact"`` is kfac-jax's ``"ggn_exact"`` and, for these two losses (whose GGN
is their Fisher), its ``"fisher_exact"``; ``"empirical"`` is ``"fisher_empirical"``; ``"fisher"`` (Monte
Carlo) is ``"fisher_gradients"``, compared in expectation (both within 10% of the exact ``G`` at 2,000
draws an example; a wrong scaling would be off by a factor of the batch size or of 2).

The scaling (``kfac_jax_scaling``), with ``A_kj, G_kj`` kfac-jax's stored factors, ``N`` the batch
and ``T`` a convolution's number of output positions:

- Dense: ``A = A_kj`` (both append the bias as the last row and column: ``abar = [a, 1]``) and
  ``G = G_kj`` for ``"ggn_exact"``, ``"fisher_exact"`` and (in expectation) ``"fisher_gradients"``;
  ``G = N G_kj`` for ``"fisher_empirical"``: kfac-jax divides its per-example gradients by
  ``sqrt(N)`` besides the batch mean, so its empirical ``G`` is ``(1/N^2) sum_n g_n g_n^T``.
- Conv2D: ``A = T A_kj`` (kfac-jax averages the patches over the positions, including the bias
  corner, which is 1 there and ``T`` here; fbackprop sums them) and ``G`` as for a dense layer (both
  average over the positions). kfac-jax scales its block by ``T`` (its ``fixed_scale``), so the two
  curvature blocks are equal: ``T kron(A_kj, G_kj) = kron(A, G)`` up to the order of the entries.
- The order: kfac-jax's block over ``[W_kj; b]`` (``(n_in + 1, n_out)``, row-major) is
  ``kron(A_kj, G_kj)``; fbackprop's over ``[W | b]`` (``(n_out, n_in + 1)``, row-major) is
  ``kron(G, A)``; the patches of both are flattened in ``(kh, kw, C_in)`` order.
- Squared error: kfac-jax's loss is ``weight * sum (y - yhat)^2 / N``, fbackprop's
  ``(1/N) sum_n 0.5 ||yhat_n - y_n||^2``; registered with ``weight=0.5`` the factors are equal as
  above, with kfac-jax's default ``weight=1`` its ``G`` is twice fbackprop's.

Equality is asserted to 1e-10 relative after that scaling.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("kfac_jax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from architectures import problem  # noqa: E402

import fbackprop as fb  # noqa: E402
from fbackprop import layers as L  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import kfac_entries  # noqa: E402

kfac_jax = kfac_entries.import_kfac_jax()

MLP = fb.mlp([3, 5, 4], activation="tanh")
CNN = fb.serial(
    L.Conv2D(2, (3, 3), padding="SAME"), L.Activation("tanh"),
    L.Conv2D(3, (2, 2), stride=2), L.Activation("tanh"),
    L.Flatten(), L.Dense(3),
    input_shape=(4, 4, 1),
)  # fmt: skip
NETS = {"mlp": MLP, "cnn": CNN}
N = 6
TOL = 1e-10
CASES = [
    ("mlp", "cross_entropy", "exact", "ggn_exact"),
    ("mlp", "cross_entropy", "exact", "fisher_exact"),
    ("mlp", "cross_entropy", "empirical", "fisher_empirical"),
    ("mlp", "squared_error", "exact", "ggn_exact"),
    ("mlp", "squared_error", "exact", "fisher_exact"),
    ("mlp", "squared_error", "empirical", "fisher_empirical"),
    ("cnn", "cross_entropy", "exact", "ggn_exact"),
    ("cnn", "cross_entropy", "exact", "fisher_exact"),
    ("cnn", "cross_entropy", "empirical", "fisher_empirical"),
]


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _data(net, loss):
    params, x, y = problem(net, n=N, loss=loss)
    if loss == "cross_entropy":
        y = jnp.asarray(y)
        y = y if y.ndim == 1 else jnp.argmax(y, axis=1)  # kfac-jax and fbackprop: integer labels
    return params, x, y


def _kfac_jax(net, loss, mode, params, x, y, weight=0.5):
    """kfac-jax's estimator, its state after one update (jitted) and its factors per layer."""
    est = kfac_jax.BlockDiagonalCurvature(kfac_entries.kfac_jax_loss(kfac_jax, net, loss, weight))
    kp, key = kfac_entries.kfac_jax_params(net, params), jax.random.key(7)
    state = est.init(key, (kp, (x, y)), None, None)
    update = jax.jit(
        lambda s, kp, x, y: est.update_curvature_matrix_estimate(
            s, 0.0, 1.0, 0.0, N, key, (kp, (x, y)), estimation_mode=mode
        )
    )
    new = update(state, kp, x, y)
    return est, new, kfac_entries.read_factors(est, new, kp)


def _kj_to_fb_order(W_shape) -> np.ndarray:
    """For each entry of kfac-jax's ``[W_kj; b]`` (row-major), its place in fbackprop's ``[W | b]``."""
    out, k = W_shape[0], int(np.prod(W_shape[1:]))
    rows = [i * (k + 1) + j for j in range(k) for i in range(out)]  # W_kj[j, i] = W[i, j]
    return np.array(rows + [i * (k + 1) + k for i in range(out)])  # then b


@pytest.mark.parametrize(("net_name", "loss", "kind", "mode"), CASES, ids=["-".join(c) for c in CASES])
def test_factors_agree_with_kfac_jax(net_name, loss, kind, mode):
    """A and G of every layer equal kfac-jax's after the stated scaling (A: T for a convolution; G: N
    for the empirical Fisher), and so do the whole Kronecker blocks (kfac-jax's scaled by its T)."""
    net = NETS[net_name]
    params, x, y = _data(net, loss)
    ours = fb.kfac_factors(net, loss, kind=kind)(params, x, y)
    est, state, theirs = _kfac_jax(net, loss, mode, params, x, y)
    scale = kfac_entries.kfac_jax_scaling(net, mode, N)
    index = est.params_block_index
    assert len(ours) == len(theirs) == len(scale) == len(est.blocks)
    for l, (f, (A_kj, G_kj), (a, g), theta) in enumerate(zip(ours, theirs, scale, params)):
        assert f.A.shape == A_kj.shape and f.G.shape == G_kj.shape
        assert _rel(a * A_kj, f.A) <= TOL, f"layer {l} A"
        assert _rel(g * G_kj, f.G) <= TOL, f"layer {l} G"
        order = _kj_to_fb_order(theta["W"].shape)
        b = index[l]["W"]
        dense = est.blocks[b].scale(state.blocks_states[b], False) * jnp.kron(A_kj, G_kj)  # to_dense_matrix
        block = np.asarray(jnp.kron(f.G, f.A))[np.ix_(order, order)] / g
        assert _rel(dense, block) <= TOL, f"layer {l} block"


def test_conv_positions_scale_A():
    """The scaling is not vacuous: the CNN's convolutions have T = 16 and 4 positions, and kfac-jax's
    empirical G is 1/N of fbackprop's."""
    assert kfac_entries.kfac_jax_scaling(CNN, "ggn_exact", N) == ((16.0, 1.0), (4.0, 1.0), (1.0, 1.0))
    assert kfac_entries.kfac_jax_scaling(MLP, "fisher_empirical", N) == ((1.0, 6.0), (1.0, 6.0))


def test_squared_error_default_weight_doubles_G():
    """kfac-jax's squared error with its default weight=1 is twice fbackprop's loss: G_kj = 2 G."""
    params, x, y = _data(MLP, "squared_error")
    ours = fb.kfac_factors(MLP, "squared_error")(params, x, y)
    _, _, theirs = _kfac_jax(MLP, "squared_error", "ggn_exact", params, x, y, weight=1.0)
    for f, (A_kj, G_kj) in zip(ours, theirs):
        assert _rel(A_kj, f.A) <= TOL and _rel(G_kj, 2.0 * f.G) <= TOL


@pytest.mark.parametrize("loss", ["cross_entropy", "squared_error"])
def test_fisher_in_expectation(loss):
    """kind="fisher" and kfac-jax's "fisher_gradients" (targets drawn from the model, 2,000 draws an
    example) both estimate the exact G: each within 10% of it (a wrong scaling would be off by N or 2),
    and their A (no sampling there) is the exact A."""
    params, x, y = _data(MLP, loss)
    S = 2000
    exact = fb.kfac_factors(MLP, loss)(params, x, y)
    ours = fb.kfac_factors(MLP, loss, kind="fisher", n_samples=S)(params, x, y, jax.random.key(3))
    est = kfac_jax.BlockDiagonalCurvature(
        kfac_entries.kfac_jax_loss(kfac_jax, MLP, loss), num_samples=S, should_vmap_samples=True
    )
    kp, key = kfac_entries.kfac_jax_params(MLP, params), jax.random.key(4)
    state = est.init(key, (kp, (x, y)), None, None)
    state = est.update_curvature_matrix_estimate(
        state, 0.0, 1.0, 0.0, N, key, (kp, (x, y)), estimation_mode="fisher_gradients"
    )
    for l, f in enumerate(exact):
        A_kj, G_kj = (state.blocks_states[l].factors[i].value for i in (0, 1))
        assert _rel(A_kj, f.A) <= TOL and _rel(ours[l].A, f.A) <= TOL
        assert _rel(ours[l].G, f.G) <= 0.1, f"layer {l}: fbackprop's Monte Carlo G"
        assert _rel(G_kj, f.G) <= 0.1, f"layer {l}: kfac-jax's Monte Carlo G"
