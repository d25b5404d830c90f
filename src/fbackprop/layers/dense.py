"""The dense layer: ``z = a_prev @ W.T + b``, ``W: (n_out, n_in)``, ``b: (n_out,)``.

Its part of backpropagation in matrix form (Rumelhart, Hinton & Williams 1986), with ``delta =
dC/dz: (N, n_out)`` arriving from above:

    dC/db = sum_n delta_n                 (BP3)
    dC/dW = delta^T a_prev                (BP4)
    dC/da_prev = delta W                  (BP2, first half; the activation's f' is the second)

Its R-operator (Pearlmutter 1994) is the tangent of each line, and its second-order backward is
``A = W^T H W`` (``z`` is linear in ``a_prev``: no second-derivative term). ``z`` is also linear in
``W, b``, so the block of the Hessian of the layer's own parameters is exactly
``sum_n H_n (x) abar_n abar_n^T``, ``abar = [a_prev, 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from ..initializers import INITIALIZERS
from ..options import as_int, check_choice
from .base import kron_factors, with_ones


@dataclass(frozen=True)
class Dense:
    """A dense (fully connected) layer on ``(N, n_in)`` inputs.

    Attributes:
        n_out: the fan-out.
        init_name: the initializer's name in ``fb.initializers.INITIALIZERS`` (default ``"glorot"``).

    Examples:
        >>> layer = fb.layers.Dense(3)
        >>> theta, out_shape = layer.init(jax.random.key(0), (2,), jnp.float64)
        >>> theta["W"].shape, out_shape
        ((3, 2), (3,))
    """

    n_out: int
    init_name: str = "glorot"

    has_params = True

    def __post_init__(self):
        object.__setattr__(self, "n_out", as_int(self.n_out, "Dense n_out"))
        check_choice(self.init_name, "Dense init", tuple(INITIALIZERS))

    def init(self, key, in_shape, dtype):
        """Fresh ``{"W": (n_out, n_in), "b": (n_out,)}`` from ``key``, and the output shape.

        Args:
            key: a ``jax.random`` key.
            in_shape: one example's input shape, ``(n_in,)``.
            dtype: the parameters' dtype.

        Returns:
            ``(theta, (n_out,))``.
        """
        if len(in_shape) != 1:
            raise ValueError(
                f"Dense takes one flat vector per example, input shape (n_in,); got {tuple(in_shape)}: "
                "put fb.layers.Flatten() before it"
            )
        W, b = INITIALIZERS[self.init_name](key, (self.n_out, in_shape[0]), dtype)
        return {"W": W, "b": b}, (self.n_out,)

    def forward(self, theta, a_prev):
        """``z = a_prev @ W.T + b``.

        Args:
            theta: ``{"W": (n_out, n_in), "b": (n_out,)}``.
            a_prev: ``(N, n_in)``.

        Returns:
            ``(z: (N, n_out), a_prev)``: the cache is the input.
        """
        return a_prev @ theta["W"].T + theta["b"], a_prev

    def backward(self, theta, a_prev, delta):
        """(BP3), (BP4) and the first half of (BP2).

        Args:
            theta: ``{"W", "b"}``.
            a_prev: the cache, ``(N, n_in)``.
            delta: ``dC/dz: (N, n_out)``.

        Returns:
            ``(dC/da_prev: (N, n_in), {"W": (n_out, n_in), "b": (n_out,)})``, summed over the batch.
        """
        dW = delta.T @ a_prev  # (BP4) dC/dW^l = delta^l (a^{l-1})^T, summed over the batch
        db = jnp.sum(delta, axis=0)  # (BP3) dC/db^l = delta^l, summed over the batch
        g = delta @ theta["W"]  # (BP2, first half) (W^l)^T delta^l
        return g, {"W": dW, "b": db}

    def forward_r(self, theta, v, a_prev, r_a_prev):
        """``R{z} = R{a_prev} @ W.T + a_prev @ V_W.T + v_b`` (Pearlmutter 1994).

        Args:
            theta: ``{"W", "b"}``.
            v: the direction's ``{"W", "b"}``.
            a_prev: the cache, ``(N, n_in)``.
            r_a_prev: ``R{a_prev}: (N, n_in)``, or ``None`` for an input that does not move.

        Returns:
            ``(R{z}: (N, n_out), r_a_prev)``.
        """
        r_z = a_prev @ v["W"].T + v["b"]
        return (r_z if r_a_prev is None else r_z + r_a_prev @ theta["W"].T), r_a_prev

    def backward_r(self, theta, v, a_prev, r_a_prev, delta, r_delta):
        """The R-operator of ``backward``.

        Args:
            theta: ``{"W", "b"}``.
            v: the direction's ``{"W", "b"}``.
            a_prev: the cache, ``(N, n_in)``.
            r_a_prev: the R-cache, ``R{a_prev}`` or ``None``.
            delta: ``(N, n_out)``.
            r_delta: ``R{delta}: (N, n_out)``.

        Returns:
            ``(R{dC/da_prev}: (N, n_in), {"W": R{dW}, "b": R{db}})``.
        """
        r_dW = r_delta.T @ a_prev if r_a_prev is None else r_delta.T @ a_prev + delta.T @ r_a_prev
        return r_delta @ theta["W"] + delta @ v["W"], {"W": r_dW, "b": jnp.sum(r_delta, axis=0)}

    def backward2(self, theta, a_prev, H, g, exact=True):
        """``A^{l-1} = (W^l)^T H^l W^l``: ``z`` is linear in ``a_prev`` (``g``, ``exact`` unused).

        Args:
            theta: ``{"W", "b"}``.
            a_prev: the cache (not used).
            H: ``d2C/dz_n^2: (N, n_out, n_out)``.
            g: not used.
            exact: not used.

        Returns:
            ``A = d2C/da_prev_n^2: (N, n_in, n_in)``.
        """
        W = theta["W"]
        return W.T @ H @ W

    def per_example_grads(self, theta, a_prev, delta):
        """``dW_n = delta_n a_prev_n^T``, ``db_n = delta_n``.

        Args:
            theta: ``{"W", "b"}`` (not used).
            a_prev: ``(N, n_in)``.
            delta: ``(N, n_out)``, each row ``dl_n/dz_n``.

        Returns:
            ``{"W": (N, n_out, n_in), "b": (N, n_out)}``.
        """
        return {"W": delta[:, :, None] * a_prev[:, None, :], "b": delta}

    def per_example_hessian_diag(self, theta, a_prev, H, g=None, exact=True):
        """``d2l_n/dW_ij^2 = a_nj^2 H_n,ii`` and ``d2l_n/db_i^2 = H_n,ii``.

        Args:
            theta: not used.
            a_prev: ``(N, n_in)``.
            H: ``(N, n_out, n_out)``.
            g: not used (``z`` is linear in ``W, b``).
            exact: not used.

        Returns:
            ``{"W": (N, n_out, n_in), "b": (N, n_out)}``.
        """
        h = jnp.diagonal(H, axis1=1, axis2=2)
        return {"W": h[:, :, None] * (a_prev * a_prev)[:, None, :], "b": h}

    def hessian_diag(self, theta, a_prev, H, g=None, exact=True):
        """``d2C/dW_ij^2 = sum_n a_nj^2 H_n,ii``, ``d2C/db_i^2 = sum_n H_n,ii``.

        Args:
            theta: not used.
            a_prev: ``(N, n_in)``.
            H: ``(N, n_out, n_out)`` (carrying the cost's ``1/N``).
            g: not used.
            exact: not used.

        Returns:
            ``{"W": (n_out, n_in), "b": (n_out,)}``.
        """
        h = jnp.diagonal(H, axis1=1, axis2=2)  # (N, n_out)
        return {"W": h.T @ (a_prev * a_prev), "b": jnp.sum(h, axis=0)}

    def hessian_block(self, theta, a_prev, H, g=None, exact=True):
        """``sum_n H_n (x) abar_n abar_n^T`` with ``abar = [a_prev, 1]``: ``(P_l, P_l)``,
        ``P_l = n_out (n_in + 1)``, ordered W row-major, then b.

        Args:
            theta: not used.
            a_prev: ``(N, n_in)``.
            H: ``(N, n_out, n_out)``.
            g: not used.
            exact: not used.

        Returns:
            The ``(P_l, P_l)`` block.
        """
        n_in = a_prev.shape[1]
        n_out = H.shape[1]
        abar = with_ones(a_prev)
        G = jnp.einsum("nik,nj,nl->ijkl", H, abar, abar)  # (n_out, n_in + 1, n_out, n_in + 1)
        m = n_out * n_in
        WW = G[:, :n_in, :, :n_in].reshape(m, m)
        Wb = G[:, :n_in, :, n_in].reshape(m, n_out)
        bb = G[:, n_in, :, n_in]
        return jnp.block([[WW, Wb], [Wb.T, bb]])

    def jacobian_gram(self, theta, a_prev, G):
        """``sum_p J_nk,p J_mj,p`` over ``W, b``, rows never formed: as ``dyhat_nk/dW = delta_nk a_n^T``,
        ``<J_nk, J_mj> = (delta_nk . delta_mj) (a_n . a_m + 1)``: ``(N K)^2 (n_in + n_out)`` multiply-adds.

        Args:
            theta: not used.
            a_prev: ``(N, n_in)``.
            G: ``(K, N, n_out)``, the deltas of ``K`` unit-seeded backward passes.

        Returns:
            ``(N, K, N, K)``.
        """
        k, n, _ = G.shape
        hi = jax.lax.Precision.HIGHEST
        rows = jnp.moveaxis(G, 0, 1).reshape(n * k, -1)  # (N K, n_out), rows (n, k)
        dd = jnp.matmul(rows, rows.T, precision=hi).reshape(n, k, n, k)
        return dd * (jnp.matmul(a_prev, a_prev.T, precision=hi) + 1.0)[:, None, :, None]

    def kfac_factors(self, theta, a_prev, G):
        """K-FAC's factors (Martens & Grosse 2015): ``A = (1/N) sum_n abar_n abar_n^T`` with
        ``abar = [a_prev, 1]``, and ``G = (1/N) sum_(k, n) g_kn g_kn^T``.

        Args:
            theta: not used.
            a_prev: ``(N, n_in)``.
            G: ``(K, N, n_out)``, ``K`` columns of per-example output gradients ``dl_n/dz_n``.

        Returns:
            ``KFactors(A: (n_in + 1, n_in + 1), G: (n_out, n_out))``.
        """
        return kron_factors(with_ones(a_prev), G.reshape(-1, self.n_out), a_prev.shape[0])
