"""The layer protocol: what a layer kind is made of, and the helpers every kind shares.

A layer kind is a frozen dataclass (hashable: networks are cache keys) with these pure functions.
``x: (N, *in_shape)`` is a batch, one example per leading row; ``y: (N, *out_shape)``; ``n_in`` and
``n_out`` are ``prod(in_shape)`` and ``prod(out_shape)``. ``theta`` is the layer's parameters (a
dict of arrays) or ``None`` for a layer without any.

Attributes and passes (every layer):

- ``has_params: bool``: whether ``init`` returns parameters (a class attribute).
- ``init(key, in_shape, dtype) -> (theta, out_shape)``: fresh parameters (``None`` without any) and
  the shape of one example's output, from one example's input shape; raises ``ValueError`` for an
  input shape the layer cannot take.
- ``forward(theta, x) -> (y, cache)``: the output and what the backward passes need.
- ``backward(theta, cache, g) -> (g_in, dtheta)``: from ``g = dC/dy: (N, *out_shape)``, the
  gradient ``dC/dx: (N, *in_shape)`` and ``dC/dtheta`` summed over the batch (``None`` without
  parameters). In matrix form: ``g_in = J^T g`` per example, ``J = dy_n/dx_n``.
- ``forward_r(theta, v, cache, r_x) -> (r_y, r_cache)``: Pearlmutter's (1994) R-operator of
  ``forward``, ``R{q} = d/dr q(theta + r v)|_{r=0}``; ``v`` is the direction for this layer's
  parameters (``None`` without any), ``r_x = R{x}``, or ``None`` when the input does not move (the
  network input ``x``).
- ``backward_r(theta, v, cache, r_cache, g, r_g) -> (r_g_in, r_dtheta)``: the R-operator of
  ``backward``, ``r_g = R{g}``.
- ``backward2(theta, cache, H, g, exact) -> A``: second-order backpropagation (Bishop 1992; Dangel,
  Harmeling & Hennig 2020). From ``H = d2C/dy_n dy_n: (N, n_out, n_out)`` per example (over the
  flattened output, row-major) and ``g = dC/dy``, the ``A = d2C/dx_n dx_n: (N, n_in, n_in)``
  ``= J^T H J + sum_k g_k d2y_k/dx^2``; ``exact=False`` drops the second term (the generalized
  Gauss-Newton recursion, Schraudolph 2002).

Optional:

- ``reference(theta, x) -> y``: an independent definition of ``forward`` (e.g. through
  ``jax.lax.conv_general_dilated``) that ``fb.check_layer`` compares ``forward`` with.

Readouts (layers with parameters; ``H``, ``g`` at the layer's output as above; the curvature
readouts take ``g`` and ``exact`` for a layer whose output is not linear in its own parameters;
every built-in layer's is, so they ignore both):

- ``per_example_grads(theta, cache, g) -> dtheta_n``: the gradient of each example, every leaf with
  a leading ``N`` axis (from ``g = dl_n/dy_n``). The Jacobian rows are this readout seeded with
  unit vectors (Marquardt backpropagation, Hagan & Menhaj 1994).
- ``hessian_diag(theta, cache, H, g, exact) -> diag``: the diagonal of ``d2C/dtheta^2`` of the
  layer's own parameters, shaped like ``theta``, summed over the batch.
- ``per_example_hessian_diag(theta, cache, H, g, exact)``: the same before the sum (leading ``N``).
- ``hessian_block(theta, cache, H, g, exact) -> (P_l, P_l)``: the whole block of the layer's own
  parameters, in ``ravel_pytree``'s order of ``theta`` (dict keys sorted: ``W`` row-major, then ``b``).
- ``jacobian_gram(theta, cache, G) -> (N, K, N, K)``: ``sum_p J_nk,p J_mj,p`` over this layer's
  parameters, from ``G: (K, N, *out_shape)``, the output gradients of ``K`` unit-seeded backward
  passes. Optional: without it the Gram matrix is formed from ``per_example_grads``' rows.
- ``kfac_factors(theta, cache, G) -> KFactors(A, G)``: the two Kronecker factors of K-FAC (Martens &
  Grosse 2015) from the layer's inputs and ``G: (K, N, *out_shape)``, ``K`` columns of per-example
  output gradients (``fb.kfac_factors``): ``A = (1/N) sum abar abar^T`` over the inputs with a 1
  appended, ``G = (1/N) sum g g^T`` (over positions too for a convolution: ``kron_factors``).
  Optional: only ``fb.kfac_factors`` and the K-FAC optimizer need it (Dense and Conv2D have it).

Combinators (``Serial``, ``Residual``) follow the same protocol (their ``theta`` is the tuple of
their layers' parameters), so they nest; they own the walks over their layers.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp

Shape = tuple[int, ...]

#: The passes without which a layer is not one (``fb.serial`` and ``fb.check_layer`` refuse it).
REQUIRED = {
    "init": "init(key, in_shape, dtype) -> (theta, out_shape)",
    "forward": "forward(theta, x) -> (y, cache)",
    "backward": "backward(theta, cache, g) -> (g_in, dtheta)",
}
#: The other passes: the curvature quantities need them (the R-operator, second-order backprop).
PASSES = {
    "forward_r": "forward_r(theta, v, cache, r_x) -> (r_y, r_cache)",
    "backward_r": "backward_r(theta, v, cache, r_cache, g, r_g) -> (r_g_in, r_dtheta)",
    "backward2": "backward2(theta, cache, H, g, exact) -> A",
}
#: The readouts of a layer with parameters (each needed only by the quantities that read it).
READOUTS = {
    "per_example_grads": "per_example_grads(theta, cache, g) -> dtheta_n",
    "hessian_diag": "hessian_diag(theta, cache, H, g, exact) -> diag",
    "per_example_hessian_diag": "per_example_hessian_diag(theta, cache, H, g, exact) -> diag_n",
    "hessian_block": "hessian_block(theta, cache, H, g, exact) -> (P_l, P_l)",
    "kfac_factors": "kfac_factors(theta, cache, G) -> KFactors(A, G)",
}


class Layer(Protocol):
    """The protocol above, for type checkers and for the documentation."""

    has_params: bool

    def init(self, key: jax.Array, in_shape: Shape, dtype: Any) -> tuple[Any, Shape]: ...

    def forward(self, theta: Any, x: jax.Array) -> tuple[jax.Array, Any]: ...

    def backward(self, theta: Any, cache: Any, g: jax.Array) -> tuple[jax.Array, Any]: ...

    def forward_r(self, theta: Any, v: Any, cache: Any, r_x: jax.Array | None) -> tuple[jax.Array, Any]: ...

    def backward_r(
        self, theta: Any, v: Any, cache: Any, r_cache: Any, g: jax.Array, r_g: jax.Array
    ) -> tuple[jax.Array, Any]: ...

    def backward2(self, theta: Any, cache: Any, H: jax.Array, g: jax.Array, exact: bool) -> jax.Array: ...


class KFactors(NamedTuple):
    """One layer's Kronecker factors: its curvature block over ``[W | b]`` (read as a ``(fan_out,
    fan_in + 1)`` matrix, flattened row-major) is approximated by ``kron(G, A)``.

    Attributes:
        A: ``(fan_in + 1, fan_in + 1)``, the second moment of the inputs with a 1 appended.
        G: ``(fan_out, fan_out)``, the second moment of the output gradients.
    """

    A: jax.Array
    G: jax.Array


def kron_factors(abar: jax.Array, g: jax.Array, n: int, positions: int = 1) -> KFactors:
    """``A = (1/N) sum_r abar_r abar_r^T`` and ``G = (1/(N T)) sum_r g_r g_r^T`` from rows (Martens &
    Grosse 2015; over the ``T`` positions of a convolution, Grosse & Martens 2016).

    Args:
        abar: ``(N T, fan_in + 1)``, the inputs (patches) with a 1 appended, one row per example and position.
        g: ``(K N T, fan_out)``, the output gradients of ``K`` columns at every example and position.
        n: ``N``, the examples.
        positions: ``T``, the output positions of one example (1 for a dense layer).

    Returns:
        ``KFactors(A, G)``.
    """
    hi = jax.lax.Precision.HIGHEST
    return KFactors(
        jnp.matmul(abar.T, abar, precision=hi) / n, jnp.matmul(g.T, g, precision=hi) / (n * positions)
    )


def with_ones(a: jax.Array) -> jax.Array:
    """``[a, 1]``: rows ``(R, k) -> (R, k + 1)``, the bias a weight on a constant input of 1."""
    return jnp.concatenate([a, jnp.ones(a.shape[:-1] + (1,), a.dtype)], axis=-1)


def size(shape: Shape) -> int:
    """The number of features of one example of ``shape`` (``prod(shape)``, 1 for ``()``)."""
    return math.prod(shape)


def input_jt(layer, theta, cache):
    """``g -> J^T g``: the input part of ``layer.backward`` at ``cache``, a linear map of ``g: (N, *out)``."""
    return lambda g: layer.backward(theta, cache, g)[0]


def apply_to_columns(jt, M: jax.Array, out_shape: Shape) -> jax.Array:
    """``J^T M`` per example, for ``M: (N, n_out, k)``, by ``jt`` (``(N, *out_shape) -> (N, *in)``)
    applied to each of the ``k`` columns: ``(N, n_in, k)``."""
    n, _, k = M.shape
    cols = jnp.moveaxis(M, 2, 0).reshape((k, n) + tuple(out_shape))
    out = jax.vmap(jt)(cols)  # (k, N, *in_shape)
    return jnp.moveaxis(out.reshape(k, n, -1), 0, 2)


def congruence(jt, H: jax.Array, out_shape: Shape) -> jax.Array:
    """``J^T H J`` per example, ``H: (N, n_out, n_out)`` -> ``(N, n_in, n_in)``, by ``jt`` applied to the
    columns of ``H`` and then to the rows of ``J^T H`` (``H`` symmetric, so ``(J^T H J)^T = J^T H J``)."""
    M = apply_to_columns(jt, H, out_shape)  # (N, n_in, n_out) = J^T H
    return apply_to_columns(jt, jnp.swapaxes(M, 1, 2), out_shape)  # J^T (J^T H)^T = J^T H J


def flat(a: jax.Array) -> jax.Array:
    """``(N, *shape) -> (N, prod(shape))``: one example's features in a row, row-major."""
    return a.reshape(a.shape[0], -1)


def add_diag(H: jax.Array, d: jax.Array) -> jax.Array:
    """``H + diag(d)`` per example: ``H: (N, n, n)``, ``d: (N, n)``."""
    return H + d[:, :, None] * jnp.eye(H.shape[1], dtype=H.dtype)


def gram_from_rows(layer, theta, cache, G: jax.Array) -> jax.Array:
    """A layer's part of ``J J^T`` from its Jacobian rows, for a layer without a factorised ``jacobian_gram``.

    Args:
        layer: the layer (with ``per_example_grads``).
        theta: its parameters.
        cache: its forward cache.
        G: ``(K, N, *out_shape)``, the output gradients of ``K`` unit-seeded backward passes.

    Returns:
        ``(N, K, N, K)``: ``sum_p J_nk,p J_mj,p`` over the layer's parameters.
    """
    rows = jax.vmap(lambda g: layer.per_example_grads(theta, cache, g))(G)  # leaves (K, N, ...)
    k, n = G.shape[:2]
    R = jnp.concatenate([leaf.reshape(k, n, -1) for leaf in jax.tree.leaves(rows)], axis=-1)
    return jnp.einsum("knp,jmp->nkmj", R, R, precision=jax.lax.Precision.HIGHEST)
