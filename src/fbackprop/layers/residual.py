"""``Residual``: a skip connection around a block, ``y = x + block(x)`` (He et al. 2016).

The block's output must have the input's shape. With ``J = d block(x)/dx`` per example:

    backward:        dC/dx = g + J^T g                       (the sum rule: two paths from x to y)
    R-operator:      R{y} = R{x} + R{block(x)},   R{dC/dx} = R{g} + R{J^T g}
    second order:    A = (I + J)^T H (I + J) + sum_k g_k d2 block_k/dx2
                       = H + J^T H + H J + block.backward2(H, g)

where ``J^T H`` is the block's backward applied to each column of ``H`` and ``H J = (J^T H)^T``
(``H`` is symmetric). The block's parameters see the same ``g`` and ``H`` as ``y`` (``y`` depends on
them only through ``block(x)``), so every readout is the block's.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from .base import apply_to_columns, input_jt
from .serial import Serial


@dataclass(frozen=True, init=False)
class Residual:
    """``y = x + block(x)`` for ``block = Serial(*layers)``; its params are the block's tuple.

    Attributes:
        block: the ``Serial`` of the layers.

    Examples:
        >>> layer = fb.layers.Residual(fb.layers.Dense(3), fb.layers.Activation("tanh"))
        >>> theta, out_shape = layer.init(jax.random.key(0), (3,), jnp.float64)
        >>> len(theta), out_shape
        (1, (3,))
    """

    block: Serial

    def __init__(self, *layers):
        if not layers:
            raise ValueError("Residual needs at least one layer: Residual(layer, ...) computes x + block(x)")
        object.__setattr__(self, "block", Serial(*layers))

    def __repr__(self) -> str:
        return f"Residual({', '.join(map(repr, self.block.layers))})"

    @property
    def has_params(self) -> bool:
        """Whether the block has parameters."""
        return self.block.has_params

    def init(self, key, in_shape, dtype):
        """The block's ``init``; its output shape must be the input's.

        Args:
            key: a ``jax.random`` key.
            in_shape: one example's shape.
            dtype: the parameters' dtype.

        Returns:
            ``(theta, in_shape)``: ``theta`` the block's tuple.
        """
        theta, out_shape = self.block.init(key, in_shape, dtype)
        if tuple(out_shape) != tuple(in_shape):
            raise ValueError(
                f"Residual's block must keep the shape of its input, {tuple(in_shape)}, to add it back; "
                f"its layers {list(self.block.layers)} give {tuple(out_shape)}"
            )
        return theta, tuple(in_shape)

    def forward(self, theta, x):
        """``y = x + block(x)``.

        Args:
            theta: the block's params.
            x: ``(N, *shape)``.

        Returns:
            ``(y, the block's cache)``.
        """
        f, cache = self.block.forward(theta, x)
        return x + f, cache

    def backward(self, theta, cache, g):
        """``dC/dx = g + J^T g``.

        Args:
            theta: the block's params.
            cache: the block's cache.
            g: ``dC/dy``.

        Returns:
            ``(dC/dx, dC/dtheta)``.
        """
        g_block, dtheta = self.block.backward(theta, cache, g)
        return g + g_block, dtheta

    def forward_r(self, theta, v, cache, r_x):
        """``R{y} = R{x} + R{block(x)}``.

        Args:
            theta: the block's params.
            v: the direction for them.
            cache: the block's cache.
            r_x: ``R{x}`` or ``None``.

        Returns:
            ``(R{y}, the block's R-cache)``.
        """
        r_f, r_cache = self.block.forward_r(theta, v, cache, r_x)
        return (r_f if r_x is None else r_x + r_f), r_cache

    def backward_r(self, theta, v, cache, r_cache, g, r_g):
        """``R{dC/dx} = R{g} + R{J^T g}``.

        Args:
            theta: the block's params.
            v: the direction.
            cache: the block's cache.
            r_cache: the block's R-cache.
            g: ``dC/dy``.
            r_g: ``R{dC/dy}``.

        Returns:
            ``(R{dC/dx}, R{dC/dtheta})``.
        """
        r_block, r_dtheta = self.block.backward_r(theta, v, cache, r_cache, g, r_g)
        return r_g + r_block, r_dtheta

    def backward2(self, theta, cache, H, g, exact=True):
        """``A = H + J^T H + H J + block.backward2(H, g)``.

        Args:
            theta: the block's params.
            cache: the block's cache.
            H: ``(N, n, n)``.
            g: ``dC/dy``.
            exact: keep the block's second-derivative terms (default True).

        Returns:
            ``A: (N, n, n)``.
        """
        JtH = apply_to_columns(input_jt(self.block, theta, cache), H, g.shape[1:])
        return H + JtH + jnp.swapaxes(JtH, 1, 2) + self.block.backward2(theta, cache, H, g, exact)

    def per_example_grads(self, theta, cache, g):
        """The block's (see the module docstring).

        Args:
            theta: the block's params.
            cache: the block's cache.
            g: ``dl_n/dy_n``.

        Returns:
            Shaped like ``theta``, leading ``N``.
        """
        return self.block.per_example_grads(theta, cache, g)

    def hessian_diag(self, theta, cache, H, g, exact=True):
        """The block's.

        Args:
            theta: the block's params.
            cache: the block's cache.
            H: ``(N, n, n)``.
            g: ``dC/dy``.
            exact: Hessian (True) or GGN.

        Returns:
            Shaped like ``theta``.
        """
        return self.block.hessian_diag(theta, cache, H, g, exact)

    def per_example_hessian_diag(self, theta, cache, H, g, exact=True):
        """The block's.

        Args:
            theta: the block's params.
            cache: the block's cache.
            H: ``(N, n, n)``.
            g: ``dl_n/dy_n``.
            exact: Hessian (True) or GGN.

        Returns:
            Shaped like ``theta``, leading ``N``.
        """
        return self.block.per_example_hessian_diag(theta, cache, H, g, exact)

    def hessian_block(self, theta, cache, H, g, exact=True):
        """The block's (one block per layer with parameters in it).

        Args:
            theta: the block's params.
            cache: the block's cache.
            H: ``(N, n, n)``.
            g: ``dC/dy``.
            exact: Hessian (True) or GGN.

        Returns:
            A tuple of blocks.
        """
        return self.block.hessian_block(theta, cache, H, g, exact)

    def jacobian_gram(self, theta, cache, G):
        """The block's.

        Args:
            theta: the block's params.
            cache: the block's cache.
            G: ``(K, N, *shape)``.

        Returns:
            ``(N, K, N, K)``.
        """
        return self.block.jacobian_gram(theta, cache, G)

    def kfac_factors(self, theta, cache, G):
        """The block's (one ``KFactors`` per layer with parameters in it).

        Args:
            theta: the block's params.
            cache: the block's cache.
            G: ``(K, N, *shape)``, per-example output gradients.

        Returns:
            A tuple shaped like ``theta``.
        """
        return self.block.kfac_factors(theta, cache, G)
