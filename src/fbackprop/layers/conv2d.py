"""The 2-D convolution layer in the matrix form of backpropagation on unfolded patches (im2col).

``x: (N, H, W, C_in)`` channels last; ``W: (C_out, kh, kw, C_in)``, ``b: (C_out,)``; ``P = unfold(x):
(N, Ho, Wo, kh kw C_in)``, each row one patch in ``(kh, kw, C_in)`` order (``layers.patches``), so
``W.reshape(C_out, -1)`` (written ``W`` below) is the ``(fan_out, fan_in)`` matrix acting on patches
and, with the ``S = Ho Wo`` positions of every example stacked as rows,

    z = P W^T + b                          z: (N S, C_out), P: (N S, kh kw C_in)

the dense layer's equations with one row per position instead of one per example (Chellapilla, Puri
& Simard 2006). Its part of backpropagation (Rumelhart, Hinton & Williams 1986), ``delta = dC/dz``:

    dC/db = sum_(n, s) delta_ns            (BP3)
    dC/dW = delta^T P                      (BP4)
    dC/dP = delta W                        (BP2, first half)
    dC/dx = fold(dC/dP)                    (col2im: the transpose of unfolding)

The R-operator (Pearlmutter 1994) is the tangent of each line (``R{P} = unfold(R{x})``: unfolding is
linear). ``z`` is linear in ``x``, so the second-order backward is ``A = J^T H J`` with no
second-derivative term, ``J^T`` applied by the input backward above (``base.congruence``); ``z`` is
linear in ``W, b`` too, so the exact Hessian block of the layer's own parameters is
``sum_n sum_(s, s') Pbar_ns (x) H_n[(s, .), (s', .)] (x) Pbar_ns'``, ``Pbar = [P, 1]`` (the bias a
patch column of ones), and the exact diagonal its diagonal.

Memory: ``H`` at the output is ``(N, n_out, n_out)`` per example, ``n_out = Ho Wo C_out``; ``A`` at
the input ``(N, n_in, n_in)``, ``n_in = H W C_in`` (a 28x28x8 map: 6272^2 = 3.9e7 entries an example).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..initializers import INITIALIZERS
from ..options import as_int, check_choice
from .base import congruence, kron_factors, with_ones
from .patches import PADDINGS, as_pair, check_image_shape, fold, out_shape, shared_congruence, unfold


class ConvCache(NamedTuple):
    """What ``Conv2D.forward`` keeps for the backward passes.

    Attributes:
        x: the input, ``(N, H, W, C_in)`` (its shape places the folded gradient).
        P: its patches, ``(N, Ho, Wo, kh kw C_in)``, rows in ``(kh, kw, C_in)`` order.
    """

    x: jax.Array
    P: jax.Array


@dataclass(frozen=True)
class Conv2D:
    """A 2-D convolution (cross-correlation, as in every deep learning library) on ``(N, H, W, C_in)``.

    Attributes:
        out_channels: ``C_out``, the number of filters.
        kernel_size: ``(kh, kw)``, or one int for a square kernel (stored as a pair).
        stride: ``(sh, sw)``, or one int (default 1; stored as a pair).
        padding: ``"VALID"`` (default: no padding) or ``"SAME"`` (``Ho = ceil(H / sh)``, zeros split as
            ``jax.lax`` and TensorFlow do: the odd one after).
        init_name: the initializer's name in ``fb.initializers.INITIALIZERS`` (default ``"glorot"``),
            applied to the ``(C_out, kh kw C_in)`` matrix: ``fan_in = kh kw C_in`` (the patch),
            ``fan_out = C_out`` (Keras and PyTorch count ``fan_out = kh kw C_out`` instead; Glorot's
            range is then a little wider here).

    Examples:
        >>> layer = fb.layers.Conv2D(4, (3, 3), padding="SAME")
        >>> theta, out_shape = layer.init(jax.random.key(0), (5, 7, 2), jnp.float64)
        >>> theta["W"].shape, theta["b"].shape, out_shape
        ((4, 3, 3, 2), (4,), (5, 7, 4))
    """

    out_channels: int
    kernel_size: int | tuple[int, int]
    stride: int | tuple[int, int] = 1
    padding: str = "VALID"
    init_name: str = "glorot"

    has_params = True

    def __post_init__(self):
        object.__setattr__(self, "out_channels", as_int(self.out_channels, "Conv2D out_channels"))
        object.__setattr__(self, "kernel_size", as_pair(self.kernel_size, "Conv2D kernel_size"))
        object.__setattr__(self, "stride", as_pair(self.stride, "Conv2D stride"))
        check_choice(self.padding, "Conv2D padding", PADDINGS)
        check_choice(self.init_name, "Conv2D init", tuple(INITIALIZERS))

    def _out_shape(self, in_shape):
        """``(Ho, Wo, C_out)`` from ``(H, W, C_in)``."""
        return out_shape(in_shape, self.kernel_size, self.stride, self.padding, self.out_channels)

    def init(self, key, in_shape, dtype):
        """Fresh ``{"W": (C_out, kh, kw, C_in), "b": (C_out,)}`` from ``key``, and the output shape.

        Args:
            key: a ``jax.random`` key.
            in_shape: one example's input shape, ``(H, W, C_in)``.
            dtype: the parameters' dtype.

        Returns:
            ``(theta, (Ho, Wo, C_out))``.

        Raises:
            ValueError: for an input shape that is not ``(H, W, C_in)``, or a kernel larger than the input
                under ``"VALID"`` padding.
        """
        h, w, c = check_image_shape(in_shape, self.kernel_size, self.padding, repr(self))
        kh, kw = self.kernel_size
        W, b = INITIALIZERS[self.init_name](key, (self.out_channels, kh * kw * c), dtype)
        return {"W": W.reshape(self.out_channels, kh, kw, c), "b": b}, self._out_shape((h, w, c))

    def _unfold(self, x):
        """``(N, H, W, C_in) -> (N, Ho, Wo, kh kw C_in)``: the patches as rows."""
        P = unfold(x, self.kernel_size, self.stride, self.padding)
        return P.reshape(P.shape[:3] + (-1,))

    def forward(self, theta, x):
        """``z = P W^T + b``.

        Args:
            theta: ``{"W": (C_out, kh, kw, C_in), "b": (C_out,)}``.
            x: ``(N, H, W, C_in)``.

        Returns:
            ``(z: (N, Ho, Wo, C_out), ConvCache(x, P))``.
        """
        P = self._unfold(x)
        W = theta["W"].reshape(self.out_channels, -1)
        return P @ W.T + theta["b"], ConvCache(x, P)

    def input_backward(self, theta, cache, delta):
        """``dC/dx = fold(delta W)``: the input part of ``backward`` alone (``J^T delta`` per example).

        Args:
            theta: ``{"W", "b"}``.
            cache: the ``ConvCache``.
            delta: ``dC/dz: (N, Ho, Wo, C_out)``.

        Returns:
            ``dC/dx: (N, H, W, C_in)``.
        """
        dP = delta @ theta["W"].reshape(self.out_channels, -1)  # (BP2, first half) dC/dP = delta W
        return self._fold(dP, cache.x)

    def _fold(self, dP, x):
        """col2im: ``(B, Ho, Wo, kh kw C_in)`` rows onto ``(B, H, W, C_in)`` (``x`` gives the shape)."""
        dP = dP.reshape(dP.shape[:3] + (self.kernel_size[0] * self.kernel_size[1], x.shape[3]))
        return fold(dP, x.shape[1:], self.kernel_size, self.stride, self.padding)

    def backward(self, theta, cache, delta):
        """(BP3), (BP4) and the first half of (BP2), folded back onto the input.

        Args:
            theta: ``{"W", "b"}``.
            cache: the ``ConvCache``.
            delta: ``dC/dz: (N, Ho, Wo, C_out)``.

        Returns:
            ``(dC/dx: (N, H, W, C_in), {"W": (C_out, kh, kw, C_in), "b": (C_out,)})``, summed over the
            batch and the positions.
        """
        D = delta.reshape(-1, self.out_channels)  # (N S, C_out)
        dW = D.T @ cache.P.reshape(D.shape[0], -1)  # (BP4) dC/dW = delta^T P
        db = jnp.sum(D, axis=0)  # (BP3) dC/db = sum over examples and positions of delta
        return self.input_backward(theta, cache, delta), {"W": dW.reshape(theta["W"].shape), "b": db}

    def forward_r(self, theta, v, cache, r_x):
        """``R{z} = R{P} W^T + P V_W^T + v_b``, ``R{P} = unfold(R{x})`` (Pearlmutter 1994).

        Args:
            theta: ``{"W", "b"}``.
            v: the direction's ``{"W", "b"}``.
            cache: the ``ConvCache``.
            r_x: ``R{x}: (N, H, W, C_in)``, or ``None`` for an input that does not move.

        Returns:
            ``(R{z}: (N, Ho, Wo, C_out), R{P})`` (the R-cache ``R{P}: (N, Ho, Wo, kh kw C_in)`` or ``None``).
        """
        r_z = cache.P @ v["W"].reshape(self.out_channels, -1).T + v["b"]
        if r_x is None:
            return r_z, None
        r_P = self._unfold(r_x)
        return r_z + r_P @ theta["W"].reshape(self.out_channels, -1).T, r_P

    def backward_r(self, theta, v, cache, r_P, delta, r_delta):
        """The R-operator of ``backward``: ``R{dW} = R{delta}^T P + delta^T R{P}``, ``R{db} = sum R{delta}``,
        ``R{dC/dx} = fold(R{delta} W + delta V_W)``.

        Args:
            theta: ``{"W", "b"}``.
            v: the direction's ``{"W", "b"}``.
            cache: the ``ConvCache``.
            r_P: the R-cache, ``R{P}`` or ``None``.
            delta: ``(N, Ho, Wo, C_out)``.
            r_delta: ``R{delta}: (N, Ho, Wo, C_out)``.

        Returns:
            ``(R{dC/dx}: (N, H, W, C_in), {"W": R{dW}, "b": R{db}})``.
        """
        o = self.out_channels
        D, r_D = delta.reshape(-1, o), r_delta.reshape(-1, o)  # (N S, C_out)
        r_dW = r_D.T @ cache.P.reshape(D.shape[0], -1)
        if r_P is not None:
            r_dW = r_dW + D.T @ r_P.reshape(D.shape[0], -1)
        r_dP = r_delta @ theta["W"].reshape(o, -1) + delta @ v["W"].reshape(o, -1)
        r_d = {"W": r_dW.reshape(theta["W"].shape), "b": jnp.sum(r_D, axis=0)}
        return self._fold(r_dP, cache.x), r_d

    def backward2(self, theta, cache, H, g=None, exact=True):
        """``A = J^T H J``, ``J = dz_n/dx_n``: ``z`` is linear in ``x`` (no second-derivative term; ``g``,
        ``exact`` unused).

        ``J^T`` is ``input_backward``. ``J`` depends on ``W`` only, the same for every example, and each
        output depends on ``K = kh kw C_in`` of the ``n_in`` inputs. When ``n_in <= 8 K`` it is formed once,
        ``(n_out, n_in)``, from ``J^T`` applied to the ``n_out`` unit vectors, and ``A_n = J^T H_n J`` is two
        dense matrix products (``n_out n_in (n_out + n_in)`` multiply-adds an example); otherwise
        ``J^T`` is applied to the columns of ``H`` and then of ``J^T H`` (``base.congruence``; ``K n_out
        (n_out + n_in)``, but as many small sparse products). Both are exact; the switch was 2-4x
        faster measured on CPU at the sizes of a small CNN.

        Args:
            theta: ``{"W", "b"}``.
            cache: the ``ConvCache``.
            H: ``d2C/dz_n^2: (N, n_out, n_out)`` over the flattened ``(Ho, Wo, C_out)``, row-major.
            g: not used.
            exact: not used.

        Returns:
            ``A = d2C/dx_n^2: (N, n_in, n_in)`` over the flattened ``(H, W, C_in)``; memory: ``H`` and
            ``A`` themselves plus one ``(N, n_in, n_out)`` intermediate ``J^T H`` (and ``J``).
        """

        def jt(delta):
            return self.input_backward(theta, cache, delta)  # any batch size: only x's shape is used

        out = self._out_shape(cache.x.shape[1:])
        n_in = math.prod(cache.x.shape[1:])
        if n_in <= 8 * cache.P.shape[-1]:
            return shared_congruence(jt, H, out)
        return congruence(jt, H, out)

    def reference(self, theta, x):
        """``forward``'s output through ``jax.lax.conv_general_dilated`` (NHWC, HWIO), an independent
        definition for ``fb.check_layer``.

        Args:
            theta: ``{"W", "b"}``.
            x: ``(N, H, W, C_in)``.

        Returns:
            ``z: (N, Ho, Wo, C_out)``.
        """
        z = jax.lax.conv_general_dilated(
            x,
            jnp.transpose(theta["W"], (1, 2, 3, 0)),  # (kh, kw, C_in, C_out): HWIO
            window_strides=self.stride,
            padding=self.padding,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=jax.lax.Precision.HIGHEST,
        )
        return z + theta["b"]

    def per_example_grads(self, theta, cache, delta):
        """``dW_n = delta_n^T P_n`` and ``db_n = sum_s delta_ns``, summed over the positions of example ``n``.

        Args:
            theta: ``{"W", "b"}`` (only ``W``'s shape is used).
            cache: the ``ConvCache``.
            delta: ``(N, Ho, Wo, C_out)``, each example's ``dl_n/dz_n``.

        Returns:
            ``{"W": (N, C_out, kh, kw, C_in), "b": (N, C_out)}``.
        """
        n = delta.shape[0]
        D = delta.reshape(n, -1, self.out_channels)  # (N, S, C_out)
        P = cache.P.reshape(n, D.shape[1], -1)  # (N, S, kh kw C_in)
        dW = jnp.einsum("nso,nsk->nok", D, P)
        return {"W": dW.reshape((n,) + theta["W"].shape), "b": jnp.sum(D, axis=1)}

    def _split(self, cache, H):
        """``P: (N, S, K)`` and ``H: (N, S, C_out, S, C_out)``, ``S = Ho Wo``, ``K = kh kw C_in``."""
        n = H.shape[0]
        P = cache.P.reshape(n, -1, cache.P.shape[-1])
        s = P.shape[1]
        return P, H.reshape(n, s, self.out_channels, s, self.out_channels)

    def per_example_hessian_diag(self, theta, cache, H, g=None, exact=True):
        """``d2l_n/dW_ok^2 = sum_(s, s') P_ns,k H_n[(s, o), (s', o)] P_ns',k`` and
        ``d2l_n/db_o^2 = sum_(s, s') H_n[(s, o), (s', o)]`` (exact: ``z`` is linear in ``W, b``).

        Args:
            theta: ``{"W", "b"}`` (only ``W``'s shape is used).
            cache: the ``ConvCache``.
            H: ``(N, n_out, n_out)``, ``n_out = Ho Wo C_out`` row-major.
            g: not used.
            exact: not used.

        Returns:
            ``{"W": (N, C_out, kh, kw, C_in), "b": (N, C_out)}``; memory beyond ``H``: ``(N, S, S, C_out)``
            and ``(N, S, C_out, K)``.
        """
        P, H5 = self._split(cache, H)
        Hd = jnp.diagonal(H5, axis1=2, axis2=4)  # the (o, o) entries of each (s, s') block: (N, S, S, C_out)
        HdP = jnp.einsum("nsto,ntk->nsok", Hd, P)
        dW = jnp.einsum("nsk,nsok->nok", P, HdP)
        n = H.shape[0]
        return {"W": dW.reshape((n,) + theta["W"].shape), "b": jnp.einsum("nsto->no", Hd)}

    def hessian_diag(self, theta, cache, H, g=None, exact=True):
        """The exact diagonal of ``d2C/dtheta^2``: ``per_example_hessian_diag`` summed over the batch.

        Args:
            theta: ``{"W", "b"}`` (only ``W``'s shape is used).
            cache: the ``ConvCache``.
            H: ``(N, n_out, n_out)`` (carrying the cost's ``1/N``).
            g: not used.
            exact: not used.

        Returns:
            ``{"W": (C_out, kh, kw, C_in), "b": (C_out,)}``.
        """
        P, H5 = self._split(cache, H)
        Hd = jnp.diagonal(H5, axis1=2, axis2=4)  # (N, S, S, C_out)
        HdP = jnp.einsum("nsto,ntk->nsok", Hd, P)
        dW = jnp.einsum("nsk,nsok->ok", P, HdP)
        return {"W": dW.reshape(theta["W"].shape), "b": jnp.einsum("nsto->o", Hd)}

    def hessian_block(self, theta, cache, H, g=None, exact=True):
        """``sum_n sum_(s, s') Pbar_ns (x) H_n[(s, .), (s', .)] (x) Pbar_ns'``, ``Pbar = [P, 1]``: the
        ``(P_l, P_l)`` block, ``P_l = C_out (kh kw C_in + 1)``, ordered ``W`` row-major, then ``b``
        (``ravel_pytree``'s order of ``{"W", "b"}``).

        Args:
            theta: not used.
            cache: the ``ConvCache``.
            H: ``(N, n_out, n_out)``.
            g: not used.
            exact: not used.

        Returns:
            The ``(P_l, P_l)`` block; memory beyond ``H``: ``(N, S, C_out, C_out, K + 1)``.
        """
        P, H5 = self._split(cache, H)
        n, s, k = P.shape
        o = self.out_channels
        Pbar = with_ones(P)  # (N, S, K + 1)
        HP = jnp.einsum("nsotp,ntq->nsopq", H5, Pbar)  # (N, S, C_out, C_out, K + 1)
        G = jnp.einsum("nsk,nsopq->okpq", Pbar, HP)  # (C_out, K + 1, C_out, K + 1)
        m = o * k
        WW = G[:, :k, :, :k].reshape(m, m)
        Wb = G[:, :k, :, k].reshape(m, o)
        bb = G[:, k, :, k]
        return jnp.block([[WW, Wb], [Wb.T, bb]])

    def jacobian_gram(self, theta, cache, G):
        """``sum_p J_nk,p J_mj,p`` over ``W, b``, through the rows
        ``J_nk = [delta_nk^T P_n, sum_s delta_nk,s]`` (``per_example_grads`` of each seed):
        ``N K S C_out (kh kw C_in + 1)`` multiply-adds to form them, ``(N K)^2 C_out (kh kw C_in + 1)``
        for their Gram matrix.

        Args:
            theta: not used.
            cache: the ``ConvCache``.
            G: ``(K, N, Ho, Wo, C_out)``, the deltas of ``K`` unit-seeded backward passes.

        Returns:
            ``(N, K, N, K)``.
        """
        k, n = G.shape[:2]
        D = G.reshape(k, n, -1, self.out_channels)  # (K, N, S, C_out)
        P = cache.P.reshape(n, D.shape[2], -1)  # (N, S, kh kw C_in)
        hi = jax.lax.Precision.HIGHEST
        rows_W = jnp.einsum("kpso,psq->pkoq", D, P, precision=hi).reshape(n * k, -1)
        rows_b = jnp.moveaxis(jnp.sum(D, axis=2), 0, 1).reshape(n * k, -1)
        rows = jnp.concatenate([rows_W, rows_b], axis=1)  # (N K, P_l), rows (n, k)
        return jnp.matmul(rows, rows.T, precision=hi).reshape(n, k, n, k)

    def kfac_factors(self, theta, cache, G):
        """KFC's factors (Grosse & Martens 2016): ``A = (1/N) sum_(n, s) Pbar_ns Pbar_ns^T`` over the
        ``S = Ho Wo`` patches of every example, ``Pbar = [P, 1]``, and ``G = (1/(N S)) sum_(k, n, s)
        g_kns g_kns^T``: the positions summed in ``A`` and averaged in ``G``, so that ``kron(G, A)`` is
        the block under their assumptions of spatially homogeneous, uncorrelated output gradients.

        Args:
            theta: not used.
            cache: the ``ConvCache``.
            G: ``(K, N, Ho, Wo, C_out)``, ``K`` columns of per-example output gradients.

        Returns:
            ``KFactors(A: (kh kw C_in + 1,) * 2, G: (C_out, C_out))``.
        """
        n = cache.P.shape[0]
        abar = with_ones(cache.P.reshape(-1, cache.P.shape[-1]))  # (N S, kh kw C_in + 1)
        return kron_factors(abar, G.reshape(-1, self.out_channels), n, abar.shape[0] // n)
